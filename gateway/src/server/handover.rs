//! The listening sockets, at start-up and across a binary upgrade
//! (`aistack gateway|up --upgrade`): Pingora's graceful upgrade, extended to the admin API
//! and the collaboration backend, which are our own listeners, not Pingora's.
//!
//! A running process (A) keeps every socket it listens on in Pingora's listener table: the
//! proxy's, and through [`SocketTable`] the admin API's and the backend's. The new process
//! (B), before it touches A, loads and checks its whole config and binds the addresses of
//! its config that are free (listeners A does not have); the busy ones it expects from A.
//! Then it listens on `upgrade.sock` in the data directory and sends A SIGQUIT: A sends its
//! table over that socket (SCM_RIGHTS), keeps accepting for Pingora's close timeout (5 s),
//! then stops accepting, lets in-flight requests finish within `server.grace_period`, and
//! exits. B serves every address of its config from the sockets it bound or received and
//! closes the received ones its config no longer names. A received socket is the same
//! kernel socket in both processes, with one accept queue, so no connection is refused.
//! Linux only (Pingora's fd transfer is).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pingora::server::{Fds, ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};

use super::{fd, procfs};
use crate::config::GatewayConfig;

/// The unix socket the listening sockets travel over, in the data directory.
pub const UPGRADE_SOCKET: &str = "upgrade.sock";

/// The file an `--upgrade` locks for its duration (see [`UpgradeLock`]).
const UPGRADE_LOCK: &str = "upgrade.lock";
/// The pid of the process serving from a data directory (gateway and `up` modes).
pub const PID_FILE: &str = "aistack.pid";

/// How long B waits for its upgrade socket to appear before it gives up signalling A.
const SOCKET_APPEARS: Duration = Duration::from_secs(5);
/// The longest path a unix socket address takes (`sun_path`, NUL included).
const MAX_SOCKET_PATH: usize = 108;

/// An address this process listens on, and the config key that names it.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub address: SocketAddr,
    pub role: Role,
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Proxy,
    Admin,
    Backend,
}

/// The addresses of `cfg` this process serves: the proxy listeners and the admin API
/// (`gateway`), the backend (`backend`). An address named twice is an error.
pub fn wanted(cfg: &GatewayConfig, gateway: bool, backend: bool) -> Result<Vec<Wanted>, String> {
    let mut all = Vec::new();
    if gateway {
        for (i, l) in cfg.listeners.iter().enumerate() {
            all.push(Wanted {
                address: l.address,
                role: Role::Proxy,
                key: format!("listeners[{i}]"),
            });
        }
        all.push(Wanted {
            address: cfg.admin.address,
            role: Role::Admin,
            key: "admin.address".to_owned(),
        });
    }
    if backend {
        all.push(Wanted {
            address: cfg.backend.address,
            role: Role::Backend,
            key: "backend.address".to_owned(),
        });
    }
    for (i, w) in all.iter().enumerate() {
        if let Some(prev) = all[..i].iter().find(|p| p.address == w.address) {
            return Err(format!(
                "cannot listen on {} ({}): {} listens there already",
                w.address, w.key, prev.key
            ));
        }
        // `0.0.0.0:P` and `127.0.0.1:P` cannot both be bound (nor `[::]:P` and `[::1]:P`).
        let overlaps = |p: &&Wanted| {
            p.address.port() == w.address.port()
                && p.address.is_ipv4() == w.address.is_ipv4()
                && (p.address.ip().is_unspecified() || w.address.ip().is_unspecified())
        };
        if let Some(prev) = all[..i].iter().find(overlaps) {
            return Err(format!(
                "cannot listen on {} ({}): {} ({}) is on the same port, and a wildcard and a specific address of one port cannot both be bound",
                w.address, w.key, prev.address, prev.key
            ));
        }
    }
    Ok(all)
}

/// Sockets bound at start-up, and (when upgrading) the addresses that were busy: the
/// process being replaced is expected to hand those over.
pub struct Bound {
    held: Vec<(Wanted, TcpListener)>,
    busy: Vec<Wanted>,
}

/// Binds every wanted address. A busy one is an error, one line (Pingora would retry for
/// ~30 s and then panic), unless `old` (the process an upgrade replaces) listens there:
/// then it is left to the take-over.
pub fn bind(wanted: Vec<Wanted>, old: Option<&Predecessor>) -> Result<Bound, String> {
    let mut bound = Bound {
        held: Vec::new(),
        busy: Vec::new(),
    };
    for w in wanted {
        match TcpListener::bind(w.address) {
            Ok(l) => bound.held.push((w, l)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let Some(old) = old else {
                    return Err(busy(&w, None));
                };
                match procfs::listens_on(old.pid, w.address) {
                    Ok(true) => bound.busy.push(w),
                    Ok(false) => return Err(busy(&w, Some(old.pid))),
                    Err(e) => {
                        return Err(format!(
                            "cannot listen on {} ({}): in use, and cannot tell whether by the aistack being replaced (pid {}): {e}",
                            w.address, w.key, old.pid
                        ));
                    }
                }
            }
            Err(e) => return Err(format!("cannot listen on {} ({}): {e}", w.address, w.key)),
        }
    }
    Ok(bound)
}

/// Why `w`'s address cannot be bound, naming who holds it where `/proc` tells; `old` is
/// the process an upgrade replaces, when it does not hold exactly that address.
fn busy(w: &Wanted, old: Option<i32>) -> String {
    let what = format!("cannot listen on {} ({})", w.address, w.key);
    let not_old = old.map_or(String::new(), |pid| {
        format!(", not by the aistack being replaced (pid {pid})")
    });
    let Ok(Some(holder)) = procfs::holder(w.address, old) else {
        return format!("{what}: address in use{not_old}");
    };
    let at = holder.address;
    match (holder.pid, holder.name.as_deref()) {
        (Some(pid), _) if Some(pid) == old => format!(
            "{what}: the aistack being replaced (pid {pid}) listens on {at}, which shares the port; \
             an upgrade cannot move a listener between a wildcard and a specific address of one port \
             (both cannot be bound at once): use another port, or restart"
        ),
        (Some(pid), Some("aistack")) if old.is_some() => format!(
            "{what}: in use by another aistack (pid {pid}, on {at}){not_old}, most likely one still \
             finishing after an earlier hand-over: it exits within about 5 s plus twice \
             server.grace_period of it; retry then"
        ),
        (Some(pid), name) => format!(
            "{what}: in use by {} (pid {pid}, on {at}){not_old}",
            name.unwrap_or("another program")
        ),
        (None, _) => format!(
            "{what}: in use by another program (on {at}; one whose sockets this user cannot see){not_old}"
        ),
    }
}

/// The sockets this process serves from.
pub struct Sockets {
    pub proxy: Vec<(SocketAddr, TcpListener)>,
    pub admin: Option<TcpListener>,
    pub backend: Option<TcpListener>,
}

impl Bound {
    /// The sockets, when every address was bound here (no upgrade).
    pub fn into_sockets(self) -> Result<Sockets, String> {
        if let Some(w) = self.busy.first() {
            return Err(format!(
                "cannot listen on {} ({}): address in use",
                w.address, w.key
            ));
        }
        Ok(sort(self.held))
    }

    /// Takes the busy addresses' sockets over from `old` (see the module doc), closes the
    /// received sockets no wanted address names, and returns all sockets.
    pub fn take_over(self, old: &Predecessor, data_dir: &Path) -> Result<Sockets, String> {
        let mut received = receive(old, data_dir)?;
        let mut held = self.held;
        for w in self.busy {
            let Some(listener) = received.remove(&w.address) else {
                // `bind` saw `old` listen there; it closed that socket before the hand-over.
                return Err(format!(
                    "cannot listen on {} ({}): the aistack being replaced (pid {}) did not send that socket, and it has been told to stop",
                    w.address, w.key, old.pid
                ));
            };
            held.push((w, listener));
        }
        for (address, listener) in received {
            tracing::info!(%address, "closed the listener the new config no longer has");
            drop(listener);
        }
        Ok(sort(held))
    }
}

fn sort(held: Vec<(Wanted, TcpListener)>) -> Sockets {
    let mut sockets = Sockets {
        proxy: Vec::new(),
        admin: None,
        backend: None,
    };
    for (w, l) in held {
        match w.role {
            Role::Proxy => sockets.proxy.push((w.address, l)),
            Role::Admin => sockets.admin = Some(l),
            Role::Backend => sockets.backend = Some(l),
        }
    }
    sockets
}

/// The process an upgrade replaces: the one the data directory's pid file names.
#[derive(Debug)]
pub struct Predecessor {
    pub pid: i32,
}

impl Predecessor {
    /// Reads the pid file and checks the process is there and is an aistack.
    pub fn find(data_dir: &Path) -> Result<Predecessor, String> {
        let path = data_dir.join(PID_FILE);
        let none = |why: String| format!("--upgrade: no running aistack to take over from ({why})");
        let text =
            std::fs::read_to_string(&path).map_err(|e| none(format!("{}: {e}", path.display())))?;
        let pid: i32 = text
            .trim()
            .parse()
            .map_err(|_| none(format!("{} does not hold a pid", path.display())))?;
        if pid <= 0 || pid as u32 == std::process::id() || !fd::process_exists(pid) {
            return Err(none(format!(
                "process {pid} named by {} is not running",
                path.display()
            )));
        }
        // A stale pid file may name a process that reused the pid: SIGQUIT would kill it.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.trim().starts_with("aistack") {
            return Err(none(format!(
                "process {pid} named by {} is `{}`, not aistack",
                path.display(),
                comm.trim()
            )));
        }
        Ok(Predecessor { pid })
    }
}

/// Held by an `--upgrade` from before it looks for the running process until it has
/// written its own pid: a second `--upgrade` of the same data directory meanwhile is
/// refused at once (two would fight over the upgrade socket and the running process).
#[derive(Debug)]
pub struct UpgradeLock {
    _file: std::fs::File,
}

impl UpgradeLock {
    /// Takes `upgrade.lock` in the data directory, or says why not in one line.
    pub fn take(data_dir: &Path) -> Result<UpgradeLock, String> {
        let path = data_dir.join(UPGRADE_LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("--upgrade: cannot open {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(UpgradeLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "--upgrade: another upgrade of {} is in progress",
                data_dir.display()
            )),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(format!("--upgrade: cannot lock {}: {e}", path.display()))
            }
        }
    }
}

/// Listens on the upgrade socket, signals `old` once it is there, and returns what `old`
/// sent, by address. Fails (one line) when nothing arrives within Pingora's wait (~6 s).
fn receive(old: &Predecessor, data_dir: &Path) -> Result<HashMap<SocketAddr, TcpListener>, String> {
    let path = data_dir.join(UPGRADE_SOCKET);
    let Some(path_str) = path.to_str().filter(|p| p.len() < MAX_SOCKET_PATH) else {
        return Err(format!(
            "--upgrade: the upgrade socket path {} is not UTF-8 or longer than {} bytes: use a shorter --data-dir",
            path.display(),
            MAX_SOCKET_PATH - 1
        ));
    };
    // A leftover socket file would make the signal below go out before we listen.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("--upgrade: cannot remove {}: {e}", path.display())),
    }
    let pid = old.pid;
    let watched = path.clone();
    let signaller = std::thread::spawn(move || signal_when_listening(&watched, pid));
    let mut fds = Fds::new();
    // Pingora's side: bind, listen, wait up to ~6 s for the old process to connect.
    let got = fds.get_from_sock(path_str);
    let signalled = signaller
        .join()
        .unwrap_or_else(|_| Err("the signalling thread panicked".to_owned()));
    if let Err(e) = got {
        let why = match signalled {
            Err(why) => why,
            Ok(()) => format!(
                "it was sent SIGQUIT but sent nothing over {}: {e}",
                path.display()
            ),
        };
        return Err(format!(
            "--upgrade: no listening sockets from aistack (pid {pid}): {why}"
        ));
    }
    let (keys, raw) = fds.serialize();
    let mut received = HashMap::new();
    for (key, raw) in keys.into_iter().zip(raw) {
        adopt(&mut received, &key, raw);
    }
    tracing::info!(
        pid,
        sockets = received.len(),
        "received the listening sockets"
    );
    Ok(received)
}

/// Owns one received descriptor: kept by address when it is a TCP listener bound where
/// its key says, closed otherwise.
fn adopt(received: &mut HashMap<SocketAddr, TcpListener>, key: &str, raw: RawFd) {
    let listener = fd::adopt_received(raw);
    match (key.parse::<SocketAddr>(), listener.local_addr()) {
        (Ok(named), Ok(actual)) if named == actual => {
            received.insert(named, listener);
        }
        _ => tracing::warn!(
            key,
            "closed a received socket that is not a TCP listener on its address"
        ),
    }
}

fn signal_when_listening(path: &Path, pid: i32) -> Result<(), String> {
    let deadline = Instant::now() + SOCKET_APPEARS;
    let is_socket = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false)
    };
    while !is_socket(path) {
        if Instant::now() > deadline {
            return Err(format!("{} did not appear", path.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Pingora's sender retries for ~5 s if it connects before we listen.
    fd::send_sigquit(pid).map_err(|e| format!("cannot send it SIGQUIT: {e}"))?;
    tracing::info!(
        pid,
        "sent SIGQUIT: the running aistack hands over its listeners"
    );
    Ok(())
}

/// Writes this process's pid into the data directory's pid file (replacing the pid of
/// the process it took over from).
pub fn write_pid_file(data_dir: &Path) -> Result<(), String> {
    let path = data_dir.join(PID_FILE);
    let tmp = data_dir.join(format!("{PID_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Removes the pid file if it still names this process (after an upgrade it names the
/// successor, which keeps it).
pub fn remove_pid_file(data_dir: &Path) {
    let path: PathBuf = data_dir.join(PID_FILE);
    let ours = std::fs::read_to_string(&path)
        .map(|t| t.trim() == std::process::id().to_string())
        .unwrap_or(false);
    if ours {
        let _ = std::fs::remove_file(&path);
    }
}

/// A Pingora service that puts the sockets this process holds into Pingora's listener
/// table before the proxy service starts (it depends on this one): the proxy finds its
/// sockets there instead of binding, and a later upgrade sends the whole table, the admin
/// API's and the backend's sockets included (duplicates: those keep being served here).
pub struct SocketTable {
    sockets: Vec<(String, RawFd)>,
}

impl SocketTable {
    pub fn new(
        proxy: Vec<(SocketAddr, TcpListener)>,
        others: &[&TcpListener],
    ) -> io::Result<SocketTable> {
        let mut sockets = Vec::new();
        for (address, l) in proxy {
            // Pingora adopts a table entry as it is, and its accept loop needs it
            // non-blocking (a socket bound here with std is blocking).
            l.set_nonblocking(true)?;
            sockets.push((address.to_string(), l.into_raw_fd()));
        }
        for l in others {
            sockets.push((l.local_addr()?.to_string(), l.try_clone()?.into_raw_fd()));
        }
        Ok(SocketTable { sockets })
    }
}

#[async_trait::async_trait]
impl ServiceWithDependents for SocketTable {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        _shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        if let Some(table) = fds {
            let mut table = table.lock();
            for (address, raw) in self.sockets.drain(..) {
                table.add(address, raw);
            }
        }
        ready.notify_ready();
    }

    fn name(&self) -> &str {
        "aistack sockets"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.sockets.iter().map(|(a, _)| a.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listeners: &str, admin: &str) -> GatewayConfig {
        let text = format!("listeners:\n{listeners}admin:\n  address: {admin}\n");
        crate::config::load_str(
            &text,
            "t.yaml",
            Path::new("."),
            Path::new("/tmp/data"),
            &|_| None,
        )
        .expect("valid")
    }

    #[test]
    fn addresses_that_cannot_both_be_bound_are_refused_naming_both_keys() {
        let cfg = config("  - address: 127.0.0.1:7001\n", "127.0.0.1:7001");
        let e = wanted(&cfg, true, false).expect_err("the same address twice");
        assert!(
            e.contains("admin.address") && e.contains("listeners[0]"),
            "{e}"
        );

        let cfg = config("  - address: 0.0.0.0:7001\n", "127.0.0.1:7001");
        let e = wanted(&cfg, true, false).expect_err("wildcard and specific, one port");
        assert!(e.contains("0.0.0.0:7001 (listeners[0])"), "{e}");
        assert!(e.contains("cannot both be bound"), "{e}");

        let cfg = config(
            "  - address: 0.0.0.0:7001\n  - address: '[::1]:7001'\n",
            "127.0.0.1:7002",
        );
        assert!(
            wanted(&cfg, true, false).is_ok(),
            "another family, another port"
        );
    }
}
