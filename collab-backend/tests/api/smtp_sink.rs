//! A real SMTP server on loopback for the email tests: speaks enough RFC 5321 for a
//! client (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT), keeps
//! every message it accepted, and can be told how to answer the end of DATA (a 4xx or
//! 5xx reply, in order) or to stall a connection after the greeting's EHLO (a server
//! that never answers, for crash tests).
//!
//! Shared by the collaboration backend's tests and the gateway's end-to-end tests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `MAIL FROM` address.
    pub from: String,
    /// The `RCPT TO` addresses, in order.
    pub recipients: Vec<String>,
    /// The message as sent after DATA (dot-unstuffed, CRLF line ends).
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    accepted: Vec<Received>,
    /// Replies to the next ends of DATA; `250` when empty.
    data_replies: VecDeque<String>,
    /// Every end of DATA seen, accepted or not.
    data_attempts: usize,
    /// Connections that stall after EHLO while set.
    stall: bool,
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
    /// Listens on a port-0 loopback socket.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP sink");
        let address = listener.local_addr().expect("sink address");
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(Notify::new());
        let (s, c) = (Arc::clone(&state), Arc::clone(&changed));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, Arc::clone(&s), Arc::clone(&c)));
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

    /// New connections stall after EHLO (`true`) or work (`false`).
    pub fn stall(&self, on: bool) {
        self.state().stall = on;
    }

    /// The messages accepted so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.state().accepted.clone()
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

    /// Waits for `count` accepted messages in all.
    pub async fn wait_for(&self, count: usize, deadline: Duration) -> Vec<Received> {
        self.wait_until(deadline, &format!("{count} accepted messages"), |a, _| {
            a.len() >= count
        })
        .await
    }
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>, changed: Arc<Notify>) {
    let lock = || {
        state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if write
        .write_all(b"220 sink.test ESMTP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    let (mut from, mut recipients) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" | "HELO" => {
                if lock().stall {
                    // Never answer: the client waits until it gives up or dies.
                    std::future::pending::<()>().await;
                }
                "250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8".to_owned()
            }
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
                if write
                    .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let Some(data) = read_data(&mut reader).await else {
                    return;
                };
                let reply = {
                    let mut state = lock();
                    state.data_attempts += 1;
                    let reply = state
                        .data_replies
                        .pop_front()
                        .unwrap_or_else(|| "250 2.0.0 queued".to_owned());
                    if reply.starts_with('2') {
                        state.accepted.push(Received {
                            from: from.clone(),
                            recipients: recipients.clone(),
                            data,
                        });
                    }
                    reply
                };
                changed.notify_waiters();
                reply
            }
            "RSET" => {
                recipients.clear();
                "250 2.0.0 ok".to_owned()
            }
            "NOOP" => "250 2.0.0 ok".to_owned(),
            "QUIT" => {
                let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                return;
            }
            _ => "502 5.5.2 command not recognized".to_owned(),
        };
        if write
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
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
async fn read_data(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Vec<u8>> {
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
