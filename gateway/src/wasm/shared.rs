//! Process-wide state Proxy-Wasm filters share across worker threads and VMs: the shared
//! key-value data (with Envoy's compare-and-swap tokens) and the shared queues.
//!
//! Both are scoped by *vm_id*, which here is the plugin's name (the key under `plugins:`
//! in the config): every VM of a plugin, on every thread and every route, sees the same
//! data and queues; two different plugins never collide. Envoy scopes them by its
//! `vm_id` setting the same way.
//!
//! - Data: `get` returns the value and its *cas* token; `set` with a non-zero cas that is
//!   no longer the entry's answers `CasMismatch`; cas 0 sets unconditionally. Every set
//!   hands out a new process-wide token (never 0). Sharded read-write locks: a read takes
//!   one shard's read lock, never a global one.
//! - Queues: registered by (vm_id, name) from a root context and resolved by any VM. An
//!   enqueue wakes the *last* context that registered the queue (Envoy's rule) with
//!   `proxy_on_queue_ready`, on the thread that holds that VM: the registration remembers
//!   the thread's Tokio handle (Pingora's worker runtimes are single-threaded, so a task
//!   spawned through it runs on that thread), and the delivery looks the VM up in that
//!   thread's registry. A queue keeps at most [`MAX_QUEUE_ITEMS`]; past that the oldest
//!   item is dropped (logged), so that a stalled consumer cannot exhaust memory.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

/// Items a queue holds before the oldest is dropped.
pub(crate) const MAX_QUEUE_ITEMS: usize = 10_000;

const SHARDS: usize = 16;

type DataKey = (Arc<str>, Box<[u8]>);

/// A value and its cas token.
#[derive(Debug, Clone)]
struct Entry {
    value: Arc<[u8]>,
    cas: u32,
}

/// Why a shared-data write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetError {
    CasMismatch,
}

/// The shared key-value data, sharded by key.
pub(crate) struct SharedData {
    shards: Vec<RwLock<HashMap<DataKey, Entry>>>,
    next_cas: AtomicU32,
}

impl SharedData {
    fn new() -> Self {
        SharedData {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            next_cas: AtomicU32::new(1),
        }
    }

    fn shard(&self, vm_id: &str, key: &[u8]) -> &RwLock<HashMap<DataKey, Entry>> {
        let mut hasher = DefaultHasher::new();
        vm_id.hash(&mut hasher);
        key.hash(&mut hasher);
        &self.shards[(hasher.finish() as usize) % SHARDS]
    }

    fn next_cas(&self) -> u32 {
        loop {
            let cas = self.next_cas.fetch_add(1, Ordering::Relaxed);
            if cas != 0 {
                return cas;
            }
        }
    }

    /// The value under `key` and its cas token.
    pub(crate) fn get(&self, vm_id: &Arc<str>, key: &[u8]) -> Option<(Arc<[u8]>, u32)> {
        let shard = self
            .shard(vm_id, key)
            .read()
            .unwrap_or_else(|e| e.into_inner());
        // std maps cannot look a tuple key up by borrowed parts: build it (one small copy).
        let entry = shard.get(&(Arc::clone(vm_id), Box::from(key)))?;
        Some((Arc::clone(&entry.value), entry.cas))
    }

    /// Sets `key` to `value`. `cas` 0: unconditionally; otherwise only if it is still the
    /// entry's token (an absent entry accepts any cas, as in Envoy).
    pub(crate) fn set(
        &self,
        vm_id: &Arc<str>,
        key: &[u8],
        value: &[u8],
        cas: u32,
    ) -> Result<(), SetError> {
        let mut shard = self
            .shard(vm_id, key)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let new = Entry {
            value: Arc::from(value),
            cas: self.next_cas(),
        };
        match shard.get_mut(&(Arc::clone(vm_id), Box::from(key))) {
            Some(entry) if cas != 0 && entry.cas != cas => Err(SetError::CasMismatch),
            Some(entry) => {
                *entry = new;
                Ok(())
            }
            None => {
                shard.insert((Arc::clone(vm_id), Box::from(key)), new);
                Ok(())
            }
        }
    }
}

/// Who `proxy_on_queue_ready` goes to: a root context of one VM of one filter, on the
/// thread whose runtime `handle` drives.
#[derive(Debug, Clone)]
pub(crate) struct QueueOwner {
    pub(crate) filter_id: u64,
    pub(crate) root_context_id: u32,
    pub(crate) handle: Option<tokio::runtime::Handle>,
}

struct Queue {
    items: VecDeque<Vec<u8>>,
    owner: QueueOwner,
}

#[derive(Default)]
struct Queues {
    by_name: HashMap<(Arc<str>, Box<[u8]>), u32>,
    by_token: HashMap<u32, Queue>,
    next_token: u32,
}

/// Why a queue operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    NotFound,
    Empty,
}

/// Hands a queue-ready notification to the owner's thread.
pub(crate) type Notify = fn(QueueOwner, u32);

/// The shared queues. One mutex: queue operations are rare next to requests.
pub(crate) struct SharedQueues {
    inner: Mutex<Queues>,
}

impl SharedQueues {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or takes over) the queue `name` of `vm_id`; returns its token.
    pub(crate) fn register(&self, vm_id: &Arc<str>, name: &[u8], owner: QueueOwner) -> u32 {
        let mut queues = self.lock();
        let key = (Arc::clone(vm_id), Box::from(name));
        if let Some(&token) = queues.by_name.get(&key) {
            if let Some(queue) = queues.by_token.get_mut(&token) {
                queue.owner = owner;
            }
            return token;
        }
        queues.next_token = queues.next_token.wrapping_add(1).max(1);
        let token = queues.next_token;
        queues.by_name.insert(key, token);
        queues.by_token.insert(
            token,
            Queue {
                items: VecDeque::new(),
                owner,
            },
        );
        token
    }

    /// Moves the queues `tokens` owned by (`filter_id`, `root`) to the calling thread
    /// (a VM started on the config thread and adopted by a worker).
    pub(crate) fn rebind(&self, tokens: &[u32], filter_id: u64, root: u32) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut queues = self.lock();
        for token in tokens {
            if let Some(queue) = queues.by_token.get_mut(token) {
                let owner = &mut queue.owner;
                if owner.filter_id == filter_id && owner.root_context_id == root {
                    owner.handle = Some(handle.clone());
                }
            }
        }
    }

    pub(crate) fn resolve(&self, vm_id: &str, name: &[u8]) -> Option<u32> {
        let key = (Arc::from(vm_id), Box::from(name));
        self.lock().by_name.get(&key).copied()
    }

    /// Appends `item` and notifies the owner (through `notify`, outside the lock).
    pub(crate) fn enqueue(
        &self,
        token: u32,
        item: &[u8],
        notify: Notify,
    ) -> Result<(), QueueError> {
        let owner = {
            let mut queues = self.lock();
            let queue = queues
                .by_token
                .get_mut(&token)
                .ok_or(QueueError::NotFound)?;
            if queue.items.len() >= MAX_QUEUE_ITEMS {
                queue.items.pop_front();
                tracing::warn!(token, "a shared queue is full: its oldest item was dropped");
            }
            queue.items.push_back(item.to_vec());
            queue.owner.clone()
        };
        notify(owner, token);
        Ok(())
    }

    pub(crate) fn dequeue(&self, token: u32) -> Result<Vec<u8>, QueueError> {
        let mut queues = self.lock();
        let queue = queues
            .by_token
            .get_mut(&token)
            .ok_or(QueueError::NotFound)?;
        queue.items.pop_front().ok_or(QueueError::Empty)
    }
}

/// The process's shared data.
pub(crate) static DATA: LazyLock<SharedData> = LazyLock::new(SharedData::new);

/// The process's shared queues.
pub(crate) static QUEUES: LazyLock<SharedQueues> = LazyLock::new(|| SharedQueues {
    inner: Mutex::new(Queues::default()),
});

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn cas_tokens_guard_writes() {
        let data = SharedData::new();
        let id = vm("p");
        assert!(data.get(&id, b"k").is_none());
        assert_eq!(data.set(&id, b"k", b"1", 0), Ok(()));
        let (value, cas) = data.get(&id, b"k").expect("set");
        assert_eq!(&*value, b"1");
        assert_ne!(cas, 0);
        assert_eq!(data.set(&id, b"k", b"2", cas), Ok(()));
        assert_eq!(data.set(&id, b"k", b"3", cas), Err(SetError::CasMismatch));
        let (value, cas2) = data.get(&id, b"k").expect("set");
        assert_eq!(&*value, b"2");
        assert_ne!(cas2, cas);
        assert_eq!(
            data.set(&id, b"k", b"4", 0),
            Ok(()),
            "cas 0 is unconditional"
        );
        assert!(data.get(&vm("other"), b"k").is_none(), "scoped by vm_id");
    }

    #[test]
    fn concurrent_cas_increments_lose_nothing() {
        let data = Arc::new(SharedData::new());
        let id = vm("counter");
        // Seeded first: cas 0 (the key absent) is an unconditional write, and a thread
        // preempted between its read of "absent" and its write could reset the count.
        assert_eq!(data.set(&id, b"n", b"0", 0), Ok(()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (data, id) = (Arc::clone(&data), Arc::clone(&id));
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        loop {
                            let (n, cas) = data.get(&id, b"n").map_or((0u64, 0), |(v, cas)| {
                                (String::from_utf8_lossy(&v).parse().unwrap_or(0), cas)
                            });
                            let next = (n + 1).to_string();
                            if data.set(&id, b"n", next.as_bytes(), cas).is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let (v, _) = data.get(&id, b"n").expect("counted");
        let n: u64 = String::from_utf8_lossy(&v).parse().expect("number");
        assert_eq!(
            n, 2000,
            "every increment made through a cas token counts once"
        );
    }

    #[test]
    fn queues_register_resolve_and_drain_in_order() {
        let queues = SharedQueues {
            inner: Mutex::new(Queues::default()),
        };
        let owner = QueueOwner {
            filter_id: 1,
            root_context_id: 7,
            handle: None,
        };
        let id = vm("p");
        let token = queues.register(&id, b"q", owner.clone());
        assert_eq!(queues.register(&id, b"q", owner), token, "same queue");
        assert_eq!(queues.resolve("p", b"q"), Some(token));
        assert_eq!(queues.resolve("p", b"x"), None);
        fn ignore(_: QueueOwner, _: u32) {}
        assert_eq!(queues.enqueue(token, b"a", ignore), Ok(()));
        assert_eq!(queues.enqueue(token, b"b", ignore), Ok(()));
        assert_eq!(queues.dequeue(token).as_deref(), Ok(&b"a"[..]));
        assert_eq!(queues.dequeue(token).as_deref(), Ok(&b"b"[..]));
        assert_eq!(queues.dequeue(token), Err(QueueError::Empty));
        assert_eq!(queues.dequeue(token + 1), Err(QueueError::NotFound));
        assert_eq!(
            queues.enqueue(token + 1, b"a", ignore),
            Err(QueueError::NotFound)
        );
    }
}
