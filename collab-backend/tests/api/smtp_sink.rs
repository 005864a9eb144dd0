//! A real SMTP server on loopback for the email tests: speaks enough RFC 5321 for a
//! client (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT), keeps
//! every message it accepted, and can be told how to answer the end of DATA (a 4xx or
//! 5xx reply, in order) or to stall a connection after the greeting's EHLO (a server
//! that never answers, for crash tests).
//!
//! For the sender's pace it records when each DATA ended and each message was accepted,
//! and how many DATA transfers (from the `DATA` command to its final reply) were open at
//! once at most; [`SmtpSink::hold_data`] makes it a slow server, so that transfers in
//! flight together overlap visibly.
//!
//! Started with [`SinkTls::StartTls`] it advertises `STARTTLS` (RFC 3207) and upgrades
//! the connection with the given rustls config; with [`SinkTls::Implicit`] it speaks
//! TLS from the first byte (port 465 style). Every command is recorded with whether it
//! came encrypted, so a test can tell that nothing went in plain text.
//!
//! Shared by the collaboration backend's tests and the gateway's end-to-end tests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How the sink secures its connections.
#[derive(Clone, Default)]
pub enum SinkTls {
    /// Plain text, STARTTLS not offered.
    #[default]
    None,
    /// Plain text until the client's `STARTTLS`, offered in the EHLO reply.
    StartTls(Arc<rustls::ServerConfig>),
    /// TLS from the first byte.
    Implicit(Arc<rustls::ServerConfig>),
}

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `MAIL FROM` address.
    pub from: String,
    /// The `RCPT TO` addresses, in order.
    pub recipients: Vec<String>,
    /// The message as sent after DATA (dot-unstuffed, CRLF line ends).
    pub data: Vec<u8>,
    /// Whether it came over TLS.
    pub encrypted: bool,
    /// When the sink accepted it (read its end of DATA).
    pub accepted_at: Instant,
}

/// How the sink holds its reply to the end of DATA (see [`SmtpSink::hold_data`]).
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    /// Transfers wait at their end of DATA until this many wait together, then all go
    /// on; one that waits `at_most` goes on alone.
    pub together: usize,
    /// The longest wait for company.
    pub at_most: Duration,
    /// And no reply comes sooner than this after the end of DATA.
    pub at_least: Duration,
}

/// One command line the sink read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The verb, upper-cased (`EHLO`, `STARTTLS`, `MAIL`, …).
    pub verb: String,
    /// Whether it came over TLS.
    pub encrypted: bool,
}

#[derive(Debug, Default)]
struct State {
    accepted: Vec<Received>,
    /// Replies to the next ends of DATA; `250` when empty.
    data_replies: VecDeque<String>,
    /// Every end of DATA seen, accepted or not.
    data_attempts: usize,
    /// When each end of DATA was read, in the order of their replies.
    data_ends: Vec<Instant>,
    /// DATA transfers open now, and the most open at once so far.
    open: usize,
    max_open: usize,
    /// How ends of DATA are held, if they are.
    hold: Option<Hold>,
    /// Transfers waiting for company now, and how many groups went on so far (a waiter
    /// whose group went on is no longer counted, even if it has not woken yet).
    waiting: usize,
    groups: u64,
    /// Connections that stall after EHLO while set.
    stall: bool,
    /// Every command read, in order, across connections.
    commands: Vec<Command>,
    /// TLS handshakes that failed (e.g. the client refused the certificate).
    failed_handshakes: usize,
}

/// The running sink; stops when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Listens on a port-0 loopback socket, in plain text.
    pub async fn start() -> Self {
        Self::start_with(SinkTls::None).await
    }

    /// Listens on a port-0 loopback socket, securing connections as `tls` says.
    pub async fn start_with(tls: SinkTls) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP sink");
        let address = listener.local_addr().expect("sink address");
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(Notify::new());
        let (s, c) = (Arc::clone(&state), Arc::clone(&changed));
        // Shared by the connections only: a group of held transfers spans several.
        let released = Arc::new(Notify::new());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Shared {
                    state: Arc::clone(&s),
                    changed: Arc::clone(&c),
                    released: Arc::clone(&released),
                };
                tokio::spawn(session(stream, tls.clone(), shared));
            }
        });
        Self {
            address,
            state,
            changed,
            task,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers the next ends of DATA with `replies` (e.g. `451 4.3.0 try later`), then 250.
    pub fn reply_to_data(&self, replies: &[&str]) {
        self.state()
            .data_replies
            .extend(replies.iter().map(|r| (*r).to_owned()));
    }

    /// From now on, every end of DATA is held as `hold` says before its reply: a slow
    /// server, with which transfers in flight together overlap (`at_least`), and
    /// transfers that may run together do (`together`).
    pub fn hold_data(&self, hold: Hold) {
        self.state().hold = Some(hold);
    }

    /// The most DATA transfers that were open at once so far.
    pub fn max_open(&self) -> usize {
        self.state().max_open
    }

    /// When each end of DATA was read (accepted or refused), in the order of their
    /// replies.
    pub fn data_ends(&self) -> Vec<Instant> {
        self.state().data_ends.clone()
    }

    /// New connections stall after EHLO (`true`) or work (`false`).
    pub fn stall(&self, on: bool) {
        self.state().stall = on;
    }

    /// The messages accepted so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.state().accepted.clone()
    }

    /// Every command read so far, in order.
    pub fn commands(&self) -> Vec<Command> {
        self.state().commands.clone()
    }

    /// How many TLS handshakes failed.
    pub fn failed_handshakes(&self) -> usize {
        self.state().failed_handshakes
    }

    /// How many ends of DATA were seen (accepted or refused).
    pub fn data_attempts(&self) -> usize {
        self.state().data_attempts
    }

    /// Waits until `predicate` holds for the sink's state (accepted messages, DATA
    /// attempts), or panics after `deadline`.
    pub async fn wait_until(
        &self,
        deadline: Duration,
        what: &str,
        predicate: impl Fn(&[Received], usize) -> bool,
    ) -> Vec<Received> {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                {
                    let state = self.state();
                    if predicate(&state.accepted, state.data_attempts) {
                        return state.accepted.clone();
                    }
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .unwrap_or_else(|_| panic!("SMTP sink: {what} did not happen within {deadline:?}"))
    }

    /// Waits for `count` failed TLS handshakes in all.
    pub async fn wait_failed_handshakes(&self, count: usize, deadline: Duration) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.state().failed_handshakes >= count {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .unwrap_or_else(|_| {
                panic!("SMTP sink: {count} failed handshakes did not happen within {deadline:?}")
            });
    }

    /// Waits for `count` accepted messages in all.
    pub async fn wait_for(&self, count: usize, deadline: Duration) -> Vec<Received> {
        self.wait_until(deadline, &format!("{count} accepted messages"), |a, _| {
            a.len() >= count
        })
        .await
    }
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    /// Wakes the transfers held for company when their group is complete.
    released: Arc<Notify>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn handshake_failed(&self) {
        self.lock().failed_handshakes += 1;
        self.changed.notify_waiters();
    }

    /// Counts a DATA transfer open until the value is dropped.
    fn open_transfer(&self) -> OpenTransfer<'_> {
        let mut state = self.lock();
        state.open += 1;
        state.max_open = state.max_open.max(state.open);
        OpenTransfer(self)
    }

    /// Holds an end of DATA read at `ended` as [`State::hold`] says.
    async fn hold(&self, ended: Instant) {
        // Made before the group is counted, so the wake-up of a group completed by
        // another transfer right after cannot be missed.
        let released = self.released.notified();
        let (hold, group) = {
            let mut state = self.lock();
            let Some(hold) = state.hold else {
                return;
            };
            state.waiting += 1;
            if state.waiting >= hold.together {
                state.waiting = 0;
                state.groups += 1;
                self.released.notify_waiters();
                (hold, None)
            } else {
                (hold, Some(state.groups))
            }
        };
        if let Some(group) = group
            && tokio::time::timeout(hold.at_most, released).await.is_err()
        {
            let mut state = self.lock();
            if state.groups == group {
                state.waiting -= 1;
            }
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(ended + hold.at_least)).await;
    }
}

/// A DATA transfer counted as open; closed when dropped (before its reply is written, so
/// that a client never starts its next transfer before this one is counted closed).
struct OpenTransfer<'a>(&'a Shared);

impl Drop for OpenTransfer<'_> {
    fn drop(&mut self) {
        self.0.lock().open -= 1;
    }
}

async fn session(stream: TcpStream, tls: SinkTls, shared: Shared) {
    match tls {
        SinkTls::None => drop(converse(stream, Mode::PLAIN, &shared).await),
        SinkTls::StartTls(config) => {
            let Some(plain) = converse(stream, Mode::OFFER_STARTTLS, &shared).await else {
                return;
            };
            // No second greeting: the client goes on with EHLO (RFC 3207 §4.2).
            match tokio_rustls::TlsAcceptor::from(config).accept(plain).await {
                Ok(tls) => drop(converse(tls, Mode::UPGRADED, &shared).await),
                Err(_) => shared.handshake_failed(),
            }
        }
        SinkTls::Implicit(config) => {
            match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                Ok(tls) => drop(converse(tls, Mode::IMPLICIT, &shared).await),
                Err(_) => shared.handshake_failed(),
            }
        }
    }
}

/// How one stretch of a session runs.
#[derive(Clone, Copy)]
struct Mode {
    greet: bool,
    offer_starttls: bool,
    encrypted: bool,
}

impl Mode {
    const PLAIN: Mode = Mode {
        greet: true,
        offer_starttls: false,
        encrypted: false,
    };
    const OFFER_STARTTLS: Mode = Mode {
        greet: true,
        offer_starttls: true,
        encrypted: false,
    };
    const UPGRADED: Mode = Mode {
        greet: false,
        offer_starttls: false,
        encrypted: true,
    };
    const IMPLICIT: Mode = Mode {
        greet: true,
        offer_starttls: false,
        encrypted: true,
    };
}

/// Speaks SMTP on `stream` until the client quits or goes away (`None`), or accepts
/// its `STARTTLS` (the stream back, to be upgraded).
async fn converse<S>(stream: S, mode: Mode, shared: &Shared) -> Option<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = BufReader::new(stream);
    if mode.greet {
        say(&mut conn, b"220 sink.test ESMTP ready\r\n").await?;
    }
    let (mut from, mut recipients) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        shared.lock().commands.push(Command {
            verb: verb.clone(),
            encrypted: mode.encrypted,
        });
        let reply: String = match verb.as_str() {
            "EHLO" | "HELO" => {
                if shared.lock().stall {
                    // Never answer: the client waits until it gives up or dies.
                    std::future::pending::<()>().await;
                }
                let starttls = if mode.offer_starttls {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                format!("250-sink.test\r\n250-8BITMIME\r\n{starttls}250 SMTPUTF8")
            }
            "STARTTLS" if mode.offer_starttls => {
                say(&mut conn, b"220 2.0.0 ready to start TLS\r\n").await?;
                // Anything the client sent after STARTTLS is dropped with the buffer
                // (RFC 3207 §4.2: no plaintext may be carried into the TLS session).
                return Some(conn.into_inner());
            }
            "STARTTLS" => "502 5.5.1 STARTTLS not offered".to_owned(),
            "MAIL" => {
                from = address_in(&command);
                recipients.clear();
                "250 2.1.0 ok".to_owned()
            }
            "RCPT" => {
                recipients.push(address_in(&command));
                "250 2.1.5 ok".to_owned()
            }
            "DATA" => {
                let open = shared.open_transfer();
                say(&mut conn, b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let data = read_data(&mut conn).await?;
                let ended = Instant::now();
                shared.hold(ended).await;
                let reply = {
                    let mut state = shared.lock();
                    state.data_attempts += 1;
                    state.data_ends.push(ended);
                    let reply = state
                        .data_replies
                        .pop_front()
                        .unwrap_or_else(|| "250 2.0.0 queued".to_owned());
                    if reply.starts_with('2') {
                        state.accepted.push(Received {
                            from: from.clone(),
                            recipients: recipients.clone(),
                            data,
                            encrypted: mode.encrypted,
                            accepted_at: ended,
                        });
                    }
                    reply
                };
                drop(open);
                shared.changed.notify_waiters();
                reply
            }
            "RSET" => {
                recipients.clear();
                "250 2.0.0 ok".to_owned()
            }
            "NOOP" => "250 2.0.0 ok".to_owned(),
            "QUIT" => {
                let _ = say(&mut conn, b"221 2.0.0 bye\r\n").await;
                return None;
            }
            _ => "502 5.5.2 command not recognized".to_owned(),
        };
        say(&mut conn, format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// Writes `bytes` and flushes them (a TLS stream buffers until flushed).
async fn say<S: AsyncWrite + Unpin>(conn: &mut S, bytes: &[u8]) -> Option<()> {
    conn.write_all(bytes).await.ok()?;
    conn.flush().await.ok()
}

/// The address between `<` and `>` of a MAIL or RCPT command.
fn address_in(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}

/// Lines up to the lone `.`, with leading dots unstuffed (RFC 5321 4.5.2).
async fn read_data<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" || line == b".\n" {
            return Some(data);
        }
        let unstuffed = if line.starts_with(b"..") {
            &line[1..]
        } else {
            &line[..]
        };
        data.extend_from_slice(unstuffed);
    }
}
