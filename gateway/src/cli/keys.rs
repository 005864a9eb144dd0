//! `aistack consumers …` and `aistack keys …`: the admin API's consumer and key endpoints
//! (`admin/keys.rs`) from the command line. They talk to a running gateway's admin API
//! rather than opening the database: one code path (the same validation, the same cache
//! refresh on the node that made the change), and it works against a remote gateway as
//! well as the local one. The admin address and token come from the config file (as the
//! gateway reads it, `${ENV}` included), or `--admin-url` and `AISTACK_ADMIN_TOKEN`.
//!
//! Output: the API's JSON answer, pretty-printed, on stdout; an error's message on stderr
//! and exit status 1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

/// Where the admin API is and how to authenticate.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Config file to read `admin.address` and `admin.token` from (skipped if missing).
    #[arg(long, short, default_value = "config/aistack.yaml", global = true)]
    pub config: PathBuf,
    /// The admin API, `http://HOST:PORT` (overrides the config's `admin.address`).
    #[arg(long, global = true)]
    pub admin_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConsumersArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: ConsumersCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConsumersCommand {
    /// Create a consumer.
    Create {
        /// Unique name (A-Z a-z 0-9 . _ - @ :).
        name: String,
        /// A tag (repeat for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The consumer's group.
        #[arg(long)]
        group: Option<String>,
    },
    /// List consumers.
    List,
    /// Show a consumer (by id or name).
    Get { consumer: String },
    /// Delete a consumer and all its keys.
    Delete { consumer: String },
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for a consumer; the key is printed this once.
    Create {
        /// The consumer (id or name).
        consumer: String,
        /// A scope (repeat for more).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Expire after this long ("90s", "12h", "30d").
        #[arg(long, conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Expire at this time (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List a consumer's keys (never their secrets).
    List { consumer: String },
    /// Show a key.
    Get { id: String },
    /// Revoke a key now.
    Revoke { id: String },
    /// Replace a key; the old one keeps working for the grace period.
    Rotate {
        id: String,
        /// How long the old key stays valid ("1h").
        #[arg(long)]
        grace: Option<String>,
    },
}

/// `aistack consumers …`.
pub fn consumers(args: &ConsumersArgs) -> ExitCode {
    let call = match &args.command {
        ConsumersCommand::Create { name, tags, group } => Call::post(
            "/consumers".to_owned(),
            serde_json::json!({"name": name, "tags": tags, "group": group}),
        ),
        ConsumersCommand::List => Call::get("/consumers".to_owned()),
        ConsumersCommand::Get { consumer } => Call::get(format!("/consumers/{}", seg(consumer))),
        ConsumersCommand::Delete { consumer } => Call {
            method: "DELETE",
            path: format!("/consumers/{}", seg(consumer)),
            body: None,
        },
    };
    run(&args.admin, &call)
}

/// `aistack keys …`.
pub fn keys(args: &KeysArgs) -> ExitCode {
    let call = match &args.command {
        KeysCommand::Create {
            consumer,
            scopes,
            expires_in,
            expires_at,
        } => {
            let mut body = serde_json::json!({ "scopes": scopes });
            if let Some(v) = expires_in {
                body["expires_in"] = v.as_str().into();
            }
            if let Some(v) = expires_at {
                body["expires_at"] = v.as_str().into();
            }
            Call::post(format!("/consumers/{}/keys", seg(consumer)), body)
        }
        KeysCommand::List { consumer } => Call::get(format!("/consumers/{}/keys", seg(consumer))),
        KeysCommand::Get { id } => Call::get(format!("/keys/{}", seg(id))),
        KeysCommand::Revoke { id } => {
            Call::post(format!("/keys/{}/revoke", seg(id)), serde_json::json!({}))
        }
        KeysCommand::Rotate { id, grace } => {
            let body = match grace {
                Some(g) => serde_json::json!({ "grace": g }),
                None => serde_json::json!({}),
            };
            Call::post(format!("/keys/{}/rotate", seg(id)), body)
        }
    };
    run(&args.admin, &call)
}

struct Call {
    method: &'static str,
    path: String,
    body: Option<serde_json::Value>,
}

impl Call {
    fn get(path: String) -> Call {
        Call {
            method: "GET",
            path,
            body: None,
        }
    }

    fn post(path: String, body: serde_json::Value) -> Call {
        Call {
            method: "POST",
            path,
            body: Some(body),
        }
    }
}

/// A path segment: names and ids are restricted to URL-safe characters by the API; any
/// other byte is percent-encoded so it cannot change the path.
fn seg(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~@:".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn run(admin: &AdminArgs, call: &Call) -> ExitCode {
    let target = match target(admin) {
        Ok(t) => t,
        Err(msg) => return fail(&msg),
    };
    match send(&target, call) {
        Ok((status, body)) => {
            let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            if (200..300).contains(&status) {
                if let Some(v) = parsed {
                    // A reader that went away (`| head`) is not an error of ours;
                    // `println!` would panic on the broken pipe.
                    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
                    let mut out = std::io::stdout().lock();
                    if let Err(e) = writeln!(out, "{text}")
                        && e.kind() != std::io::ErrorKind::BrokenPipe
                    {
                        return fail(&format!("cannot write the answer: {e}"));
                    }
                }
                ExitCode::SUCCESS
            } else {
                let message = parsed
                    .as_ref()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                fail(&format!("the admin API answered {status}: {message}"))
            }
        }
        Err(msg) => fail(&msg),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

struct Target {
    addr: SocketAddr,
    host: String,
    token: Option<String>,
}

/// The admin address and token: `--admin-url`, else the config's `admin.address`, else
/// `127.0.0.1:9080`; `AISTACK_ADMIN_TOKEN`, else the config's `admin.token` (unless it
/// is given as a `sha256:` digest).
fn target(admin: &AdminArgs) -> Result<Target, String> {
    let env = |name: &str| std::env::var(name).ok();
    let cfg = if admin.config.is_file() {
        match crate::config::load_file(&admin.config, Path::new("data"), &env) {
            Ok(cfg) => Some(cfg),
            Err(errors) => {
                let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                return Err(list.join("\nerror: "));
            }
        }
    } else {
        None
    };
    // A token configured as its digest cannot be sent: it must come from the environment.
    let token = env("AISTACK_ADMIN_TOKEN").or_else(|| {
        cfg.as_ref()?
            .admin
            .token
            .clone()
            .filter(|t| !t.starts_with(crate::admin::DIGEST_PREFIX))
    });
    let host = match &admin.admin_url {
        Some(url) => {
            let rest = url.strip_prefix("http://").ok_or_else(|| {
                format!("--admin-url {url:?}: expected http://HOST:PORT (the admin API has no TLS)")
            })?;
            rest.trim_end_matches('/').to_owned()
        }
        None => {
            let mut addr = cfg
                .as_ref()
                .map_or_else(|| ([127, 0, 0, 1], 9080).into(), |c| c.admin.address);
            if addr.ip().is_unspecified() {
                addr.set_ip([127, 0, 0, 1].into());
            }
            addr.to_string()
        }
    };
    let addr = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve the admin address {host:?}"))?;
    Ok(Target { addr, host, token })
}

/// One HTTP/1.0 exchange (so the answer is never chunked and ends with the connection).
fn send(target: &Target, call: &Call) -> Result<(u16, Vec<u8>), String> {
    let unreachable = |e: std::io::Error| {
        format!(
            "cannot reach the admin API at {} ({e}); is the gateway running?",
            target.addr
        )
    };
    let timeout = Duration::from_secs(30);
    let mut stream = TcpStream::connect_timeout(&target.addr, timeout).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    let body = call
        .body
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut request = format!(
        "{} {} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        call.method,
        call.path,
        target.host,
        body.len()
    );
    if call.body.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = &target.token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(unreachable)?;
    parse_response(&answer).ok_or_else(|| "the admin API's answer is not HTTP".to_owned())
}

fn parse_response(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, answer[end + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_and_segments_parse() {
        let answer = b"HTTP/1.0 201 Created\r\ncontent-type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(parse_response(answer), Some((201, b"{\"a\":1}".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("alice@x.io"), "alice@x.io");
    }
}
