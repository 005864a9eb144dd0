//! `ws-fanout`: how long one event takes to reach many notification WebSockets through
//! the gateway.
//!
//! It starts the real `aistack up` (gateway on a free port, the collaboration backend
//! behind it, SQLite in a temporary data directory), makes an organization with one team
//! of `--clients` members, connects every member's notification WebSocket
//! (`/api/v1/ws`) **through the gateway's proxy port**, and then, `--rounds` times, posts
//! one comment mentioning the team (`@fanout`): one event whose notifications reach every
//! member. For each client it measures the time from just before the comment's `POST`
//! to the arrival of its `notification` message, and reports percentiles per round and
//! over all rounds. Nothing is asserted: the figures go into benches/README.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use futures_util::stream::{self, TryStreamExt};
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::children::Children;
use crate::contenders::{free_ports, loopback};

/// Command-line arguments of `ws-fanout`.
#[derive(Debug, Parser)]
#[command(about = "One event pushed to many notification WebSockets through the gateway")]
pub struct Args {
    /// Connected WebSocket clients (one user each, all members of the mentioned team).
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Events (comments mentioning the team), one after the other.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// The `aistack` binary (default: beside this executable).
    #[arg(long)]
    pub aistack: Option<PathBuf>,
    /// Concurrent requests while creating users and connecting sockets.
    #[arg(long, default_value_t = 16)]
    pub setup_concurrency: usize,
}

/// How long one round waits for every client's notification.
const ROUND_DEADLINE: Duration = Duration::from_secs(30);

const PASSWORD: &str = "fanout-password-1";

/// Runs the benchmark and prints its report.
pub async fn run(args: Args) -> Result<()> {
    if args.clients == 0 || args.rounds == 0 {
        bail!("--clients and --rounds must be at least 1");
    }
    raise_fd_limit(args.clients);
    let aistack = match args.aistack.clone() {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("executable has no directory")?
            .join("aistack"),
    };
    if !aistack.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release -p aistack-gateway -p aistack-benches",
            aistack.display()
        );
    }
    let tmp = tempfile::tempdir()?;
    let ports = free_ports(3)?;
    let (proxy, admin, backend) = (loopback(ports[0]), loopback(ports[1]), loopback(ports[2]));
    let config = tmp.path().join("aistack.yaml");
    std::fs::write(&config, render_config(proxy, admin, backend))?;
    let mut children = Children::default();
    let mut cmd = Command::new(&aistack);
    cmd.arg("up")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"));
    let id = children.spawn("aistack", cmd, &tmp.path().join("aistack.log"), "INT")?;

    let result = measure(&args, proxy, &mut children, id).await;
    result.map_err(|e| {
        let log = children.log(id);
        anyhow::anyhow!(
            "{e:#}\nend of the gateway's log ({}):\n{}",
            log.display(),
            crate::children::log_tail(log)
        )
    })
}

/// Sets up the users, connects the sockets and runs the rounds against the started
/// `aistack up` (child `id`).
async fn measure(
    args: &Args,
    proxy: std::net::SocketAddr,
    children: &mut Children,
    id: crate::children::ChildId,
) -> Result<()> {
    let base = format!("http://{proxy}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.setup_concurrency)
        .build()?;
    wait_healthy(&http, &base, &mut || children.ensure_running(id)).await?;

    eprintln!("setting up an organization and {} users…", args.clients);
    let setup = Instant::now();
    let api = Api {
        http: http.clone(),
        base: base.clone(),
    };
    let world = World::create(&api).await?;
    let tokens: Vec<String> = stream::iter(0..args.clients)
        .map(|i| world.member(&api, i))
        .buffer_unordered(args.setup_concurrency)
        .try_collect()
        .await?;
    eprintln!("  {:.1?}", setup.elapsed());

    eprintln!(
        "connecting {} WebSockets through the gateway…",
        args.clients
    );
    let connect = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let tokens = Arc::new(tokens);
    let reopened = AtomicUsize::new(0);
    let readers: Vec<_> = stream::iter(0..args.clients)
        .map(|i| {
            let tokens = Arc::clone(&tokens);
            let tx = tx.clone();
            let reopened = &reopened;
            async move { connect_client(proxy, &tokens[i], i, tx, reopened).await }
        })
        .buffer_unordered(args.setup_concurrency)
        .try_collect()
        .await?;
    drop(tx);
    eprintln!("  {:.1?}", connect.elapsed());
    let reopened = reopened.into_inner();
    if reopened > 0 {
        eprintln!(
            "  {reopened} socket(s) closed by the gateway right after their 101 were opened again (cloudflare/pingora#946)"
        );
    }

    let mut all = Vec::with_capacity(args.clients * args.rounds);
    println!(
        "ws-fanout: {} clients through the gateway, {} rounds (one @team mention each)",
        args.clients, args.rounds
    );
    println!("round      p50      p90      p99      max   received  post→ack");
    for round in 0..args.rounds {
        let started = Instant::now();
        api.post(
            &world.owner,
            &format!("/api/v1/tasks/{}/comments", world.task),
            json!({ "body": format!("round {round}: @fanout please look") }),
        )
        .await?;
        let acked = started.elapsed();
        let mut latencies = Vec::with_capacity(args.clients);
        let mut seen = vec![false; args.clients];
        let deadline = tokio::time::Instant::now() + ROUND_DEADLINE;
        while latencies.len() < args.clients {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((client, at))) => {
                    if std::mem::replace(&mut seen[client], true) {
                        bail!("client {client} got two notifications in round {round}");
                    }
                    latencies.push(at.saturating_duration_since(started));
                }
                Ok(None) => bail!("every WebSocket reader stopped"),
                Err(_) => break,
            }
        }
        children.ensure_running(id)?;
        let received = latencies.len();
        latencies.sort_unstable();
        print_row(
            &format!("{}", round + 1),
            &latencies,
            received,
            args.clients,
            Some(acked),
        );
        all.extend(latencies);
        if received < args.clients {
            bail!(
                "round {}: only {received} of {} clients got the notification within {ROUND_DEADLINE:?}",
                round + 1,
                args.clients
            );
        }
    }
    all.sort_unstable();
    print_row("all", &all, all.len(), args.clients * args.rounds, None);
    for reader in readers {
        reader.abort();
    }
    Ok(())
}

fn render_config(
    proxy: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    backend: std::net::SocketAddr,
) -> String {
    format!(
        "listeners:\n  - address: {proxy}\n\
         admin:\n  address: {admin}\n\
         backend:\n  enabled: true\n  address: {backend}\n\
         server:\n  access_log: false\n  log_level: warn\n  grace_period: 1s\n\
         upstreams:\n  backend:\n    targets: [{backend}]\n    read_timeout: 120s\n\
         routes:\n  - name: api\n    path: /api/v1\n    upstream: backend\n"
    )
}

async fn wait_healthy(
    http: &reqwest::Client,
    base: &str,
    alive: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no attempt yet");
    while Instant::now() < deadline {
        alive()?;
        match http.get(format!("{base}/api/v1/healthz")).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the gateway and backend were not healthy within 60 s: {last}")
}

/// The JSON API through the gateway.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// POSTs `body`; a 503 (SQLite busy under the set-up's concurrent writes) is retried
    /// a few times: the set-up is not what is measured.
    async fn post(&self, token: &str, path: &str, body: Value) -> Result<Value> {
        let mut attempt = 0;
        loop {
            let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
            let response = request.send().await?;
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(answer);
            }
            attempt += 1;
            if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempt == 5 {
                bail!("POST {path}: {status} {answer}");
            }
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
    }

    async fn sign_in(&self, username: &str) -> Result<String> {
        let body = self
            .post(
                "",
                "/api/v1/auth/sign-in",
                json!({ "username": username, "password": PASSWORD }),
            )
            .await?;
        Ok(text(&body, "token")?.to_owned())
    }
}

fn text<'a>(body: &'a Value, field: &str) -> Result<&'a str> {
    body[field]
        .as_str()
        .with_context(|| format!("no `{field}` in {body}"))
}

/// The organization, its owner, the team every client belongs to, and the task the
/// comments go on.
struct World {
    org: String,
    owner: String,
    team: String,
    task: String,
}

impl World {
    async fn create(api: &Api) -> Result<Self> {
        let org = api
            .post(
                "",
                "/api/v1/organizations",
                json!({ "name": "Fanout", "slug": "fanout-org" }),
            )
            .await?;
        let org = text(&org, "id")?.to_owned();
        api.post(
            "",
            "/api/v1/auth/register",
            json!({ "organization_id": org, "username": "owner", "password": PASSWORD }),
        )
        .await?;
        let owner = api.sign_in("owner").await?;
        let team = api
            .post(
                &owner,
                &format!("/api/v1/organizations/{org}/teams"),
                json!({ "name": "Fanout", "slug": "fanout" }),
            )
            .await?;
        let team = text(&team, "id")?.to_owned();
        let workspace = api
            .post(
                &owner,
                &format!("/api/v1/teams/{team}/workspaces"),
                json!({ "name": "Main" }),
            )
            .await?;
        let workspace = text(&workspace, "id")?;
        let task = api
            .post(
                &owner,
                &format!("/api/v1/workspaces/{workspace}/tasks"),
                json!({ "title": "fan-out" }),
            )
            .await?;
        let task = text(&task, "id")?.to_owned();
        Ok(Self {
            org,
            owner,
            team,
            task,
        })
    }

    /// Creates member `i` of the team and signs them in.
    async fn member(&self, api: &Api, i: usize) -> Result<String> {
        let username = format!("member-{i}");
        let user = api
            .post(
                &self.owner,
                &format!("/api/v1/organizations/{}/users", self.org),
                json!({ "username": username, "password": PASSWORD }),
            )
            .await?;
        let user_id = text(&user, "id")?;
        api.post(
            &self.owner,
            &format!("/api/v1/teams/{}/members", self.team),
            json!({ "user_id": user_id }),
        )
        .await?;
        api.sign_in(&username).await
    }
}

/// Connects client `i`'s socket, waits for the unread count it starts with (so it is
/// subscribed), and leaves a task that reports each notification's arrival time.
///
/// A socket that the gateway closes right after its `101`, before the first message, is
/// opened again once and counted in `reopened`: Pingora 0.9 can end an HTTP/1 upgrade
/// when the upstream's `101` is read before the upgrade request's empty body
/// (cloudflare/pingora#946). A real client reconnects (with `?after=`, losing nothing);
/// the benchmark does the same and reports how often it happened.
async fn connect_client(
    proxy: std::net::SocketAddr,
    token: &str,
    i: usize,
    tx: mpsc::UnboundedSender<(usize, Instant)>,
    reopened: &AtomicUsize,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut ws = match open(proxy, token).await {
        Err(e) if closed_after_upgrade(&e) => {
            reopened.fetch_add(1, Ordering::Relaxed);
            open(proxy, token).await?
        }
        other => other?,
    };
    Ok(tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            let at = Instant::now();
            if let Message::Text(text) = message {
                let is_notification =
                    serde_json::from_str::<Value>(&text).is_ok_and(|v| v["type"] == "notification");
                if is_notification && tx.send((i, at)).is_err() {
                    return;
                }
            }
        }
    }))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens one notification socket and waits for its first unread count.
async fn open(proxy: std::net::SocketAddr, token: &str) -> Result<Socket> {
    let mut request = format!("ws://{proxy}/api/v1/ws").into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .context("WebSocket upgrade timed out")??;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no unread count after connecting")?
            .context(CLOSED_BEFORE_FIRST)??;
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text)?;
            if value["type"] == "unread_count" {
                return Ok(ws);
            }
        }
    }
}

/// Whether opening failed because the socket ended after its upgrade, before any message.
fn closed_after_upgrade(error: &anyhow::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    let reset = error.downcast_ref::<WsError>().is_some_and(|e| {
        matches!(
            e,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
                | WsError::ConnectionClosed
        )
    });
    reset || error.to_string() == CLOSED_BEFORE_FIRST
}

/// The error of a socket that ended cleanly before its first message.
const CLOSED_BEFORE_FIRST: &str = "socket closed before its first message";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

fn print_row(
    label: &str,
    sorted: &[Duration],
    received: usize,
    expected: usize,
    acked: Option<Duration>,
) {
    println!(
        "{label:<6} {:>8} {:>8} {:>8} {:>8} {:>5}/{:<5} {}",
        ms(percentile(sorted, 50.0)),
        ms(percentile(sorted, 90.0)),
        ms(percentile(sorted, 99.0)),
        ms(sorted.last().copied().unwrap_or_default()),
        received,
        expected,
        acked.map(ms).unwrap_or_default(),
    );
}

/// Each client holds one socket, and the gateway and backend (one process) hold three
/// per client: raise this process's open-file limit well past `clients`.
fn raise_fd_limit(clients: usize) {
    let want = (clients as u64 + 256).max(4096);
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < want
    {
        let _ = rlimit::Resource::NOFILE.set(want.min(hard), hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
        let one = [Duration::from_millis(7)];
        assert_eq!(percentile(&one, 1.0), Duration::from_millis(7));
    }

    #[test]
    fn the_config_routes_the_api_to_the_embedded_backend() {
        let config = render_config(loopback(1), loopback(2), loopback(3));
        assert!(config.contains("targets: [127.0.0.1:3]"), "{config}");
        assert!(config.contains("path: /api/v1"), "{config}");
    }
}
