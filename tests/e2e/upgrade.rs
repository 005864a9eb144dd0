//! Binary upgrade through the real binary: `aistack gateway --upgrade` takes the listening
//! sockets (proxy and admin API) over from the running gateway under load, binds the
//! listener its config adds, closes the one it drops, and the old process drains and
//! exits; not one request or connection fails. `up --upgrade` hands the backend's socket
//! over too; an upgrade turns TLS on for a listener a reload cannot change. And
//! `--upgrade` with nothing to take over from, or wanting a port someone else holds,
//! fails at once with one line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aistack_e2e::{Aistack, Ports, free_port, render, run_cli};
use serde_json::Value;

use crate::flaky::Flaky;

const CONFIG: &str = r#"
listeners:
{listeners}
admin:
  address: 127.0.0.1:{admin}
backend:
  enabled: false
server:
  threads: 2
  grace_period: 1s
upstreams:
  who:
    targets: [127.0.0.1:{upstream}]
routes:
  - name: who
    path: /
    upstream: who
"#;

/// Pingora's fixed wait between sending the sockets and closing its own (CLOSE_TIMEOUT).
const PINGORA_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// `server.grace_period` above.
const GRACE: Duration = Duration::from_secs(1);

fn config(ports: Ports, listeners: &[u16], upstream: &Flaky) -> String {
    let listeners: String = listeners
        .iter()
        .map(|p| format!("  - address: 127.0.0.1:{p}\n"))
        .collect();
    render(CONFIG, ports)
        .replace("{listeners}", listeners.trim_end())
        .replace("{upstream}", &upstream.port().to_string())
}

/// How a load client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One kept-alive connection, reused request after request.
    KeepAlive,
    /// A new connection for every request.
    Fresh,
    /// A new connection to the admin API's `/status` for every request.
    Admin,
}

/// One request of the load: when it ended and who answered (the upstream's name, or
/// the admin API's config hash).
struct Sample {
    kind: Kind,
    end: Instant,
    answer: Result<String, String>,
}

async fn one_request(client: &reqwest::Client, kind: Kind, gw: Ports) -> Result<String, String> {
    let url = match kind {
        Kind::Admin => format!("http://127.0.0.1:{}/status", gw.admin),
        _ => format!("http://127.0.0.1:{}/who", gw.proxy),
    };
    let r = client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("transport: {e:?}"))?;
    if r.status() != 200 {
        return Err(format!("status {}", r.status()));
    }
    let v: Value = r.json().await.map_err(|e| format!("body: {e}"))?;
    let answer = match kind {
        Kind::Admin => &v["config"]["hash"],
        _ => &v["upstream"],
    };
    Ok(answer.as_str().unwrap_or_default().to_owned())
}

/// A bounded loopback load until `stop`: each client one request at a time.
fn start_load(ports: Ports, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Vec<Sample>>> {
    let kinds = [
        Kind::KeepAlive,
        Kind::KeepAlive,
        Kind::Fresh,
        Kind::Fresh,
        Kind::Admin,
    ];
    kinds
        .into_iter()
        .map(|kind| {
            let stop = Arc::clone(stop);
            tokio::spawn(async move {
                let mut builder = reqwest::Client::builder();
                if kind != Kind::KeepAlive {
                    builder = builder.pool_max_idle_per_host(0);
                }
                let client = builder.build().expect("client");
                let mut samples = Vec::new();
                while !stop.load(Ordering::SeqCst) && samples.len() < 50_000 {
                    let answer = one_request(&client, kind, ports).await;
                    samples.push(Sample {
                        kind,
                        end: Instant::now(),
                        answer,
                    });
                }
                samples
            })
        })
        .collect()
}

async fn status_hash(gw: &Aistack) -> String {
    let v: Value = reqwest::get(gw.admin_url("/status"))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    v["config"]["hash"].as_str().unwrap_or_default().to_owned()
}

async fn who(port: u16) -> Result<String, String> {
    let ports = Ports {
        proxy: port,
        admin: 0,
        backend: 0,
    };
    one_request(&reqwest::Client::new(), Kind::KeepAlive, ports).await
}

/// Waits for `old` to exit on its own after its successor took over; how long it took.
async fn drained(old: &mut Aistack, since: Instant) -> Duration {
    // Pingora's close timeout, the grace period, then at most the grace period again for
    // the runtimes to stop; plenty more for a loaded machine.
    let bound = PINGORA_CLOSE_TIMEOUT + 2 * GRACE + Duration::from_secs(10);
    let status = old.wait_exit(bound).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the old process did not exit cleanly within {bound:?} ({status:?}):\n{}",
        old.output()
    );
    since.elapsed()
}

#[tokio::test]
async fn upgrade_under_load_refuses_nothing_and_moves_listeners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::free();
    let added = free_port();
    let (ua, ub, uc) = (
        Flaky::start("a").await,
        Flaky::start("b").await,
        Flaky::start("c").await,
    );
    // Requests are in flight at every moment of the hand-over, and must finish.
    ua.set_delay(Duration::from_millis(30));
    let mut a = Aistack::start(
        "gateway",
        &config(ports, &[ports.proxy], &ua),
        ports,
        dir.path(),
    )
    .await;
    let hash_a = status_hash(&a).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(ports, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // B: the same listener and a second one, another upstream (so its answers tell).
    let config_b = config(ports, &[ports.proxy, added], &ub);
    let mut b = Aistack::start_upgrade("gateway", "b.yaml", &config_b, ports, dir.path()).await;
    // B says it started once it has A's sockets, right after it sent A SIGQUIT.
    let took = drained(&mut a, Instant::now()).await;
    let a_gone = Instant::now();
    let a_out = a.output();
    assert!(
        a_out.contains("listening sockets handed over"),
        "A's output:\n{a_out}"
    );
    // The load goes on against B alone for a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut samples = Vec::new();
    for task in load {
        samples.extend(task.await.expect("load client"));
    }

    let failed: Vec<String> = samples
        .iter()
        .filter_map(|s| {
            s.answer
                .as_ref()
                .err()
                .map(|e| format!("{:?}: {e}", s.kind))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the upgrade, e.g. {:?}\nA:\n{a_out}\nB:\n{}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)],
        b.output()
    );
    let answers = |kind: Kind, answer: &str| {
        samples
            .iter()
            .filter(|s| s.kind == kind && s.answer.as_deref() == Ok(answer))
            .count()
    };
    let hash_b = status_hash(&b).await;
    assert_ne!(hash_a, hash_b, "the two configs differ");
    for kind in [Kind::KeepAlive, Kind::Fresh] {
        assert!(answers(kind, "a") > 0, "{kind:?}: A answered nothing");
        assert!(answers(kind, "b") > 0, "{kind:?}: B answered nothing");
    }
    assert!(answers(Kind::Admin, &hash_a) > 0 && answers(Kind::Admin, &hash_b) > 0);
    // Once A is gone, everything (old port, admin API) is B's.
    let late: Vec<&Sample> = samples.iter().filter(|s| s.end > a_gone).collect();
    assert!(late.len() > 10, "too little load after A exited");
    for s in late {
        let expected = if s.kind == Kind::Admin { &hash_b } else { "b" };
        assert_eq!(
            s.answer.as_deref(),
            Ok(expected),
            "{:?} after A exited",
            s.kind
        );
    }
    assert_eq!(who(added).await.as_deref(), Ok("b"), "the added listener");
    let pid_file = std::fs::read_to_string(dir.path().join("data/aistack.pid")).expect("pid file");
    assert_eq!(pid_file.trim(), b.pid().to_string());
    eprintln!(
        "upgrade: {} requests, 0 failed; A exited {took:?} after B took its sockets",
        samples.len()
    );

    // C drops the first listener (closed) and keeps the second: the sockets B received
    // (the admin API's among them) travel on once more.
    let config_c = config(ports, &[added], &uc);
    let c = Aistack::start_upgrade("gateway", "c.yaml", &config_c, ports, dir.path()).await;
    drained(&mut b, Instant::now()).await;
    assert_eq!(who(added).await.as_deref(), Ok("c"));
    let hash_c = status_hash(&c).await;
    assert_ne!(hash_c, hash_b, "the admin API answers for C");
    let dropped: SocketAddr = ([127, 0, 0, 1], ports.proxy).into();
    assert!(
        tokio::net::TcpStream::connect(dropped).await.is_err(),
        "the listener C's config dropped still accepts:\n{}",
        c.output()
    );
    drop(c);
}

#[tokio::test]
async fn upgrade_with_nothing_to_take_over_fails_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = Flaky::start("x").await;
    let ports = Ports::free();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, config(ports, &[ports.proxy], &upstream)).expect("write");
    let data = dir.path().join("data");
    let upgrade = || {
        let started = Instant::now();
        let (status, _, stderr) = run_cli(
            &[
                "gateway",
                "--upgrade",
                "--config",
                path.to_str().expect("utf8"),
                "--data-dir",
                data.to_str().expect("utf8"),
            ],
            dir.path(),
        );
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        (stderr, started.elapsed())
    };

    // No pid file: nothing runs from this data directory.
    let (stderr, took) = upgrade();
    assert!(
        stderr.contains("no running aistack to take over from") && stderr.contains("aistack.pid"),
        "{stderr}"
    );
    // Pingora alone would wait ~6 s for sockets and then exit.
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // A stale pid file naming a process that is gone.
    let mut gone = std::process::Command::new("true").spawn().expect("spawn");
    gone.wait().expect("reap");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("aistack.pid"), gone.id().to_string()).expect("pid file");
    let (stderr, _) = upgrade();
    assert!(stderr.contains("is not running"), "{stderr}");

    // A pid file naming a live process that is not aistack (this test): it is not sent
    // SIGQUIT (which would end this test).
    std::fs::write(data.join("aistack.pid"), std::process::id().to_string()).expect("pid file");
    let (stderr, _) = upgrade();
    assert!(stderr.contains("not aistack"), "{stderr}");

    // Another upgrade of the same data directory under way (it holds upgrade.lock):
    // refused at once, before anything else (two would fight over upgrade.sock).
    let held = std::fs::File::create(data.join("upgrade.lock")).expect("lock file");
    held.try_lock().expect("lock");
    let (stderr, took) = upgrade();
    assert!(stderr.contains("another upgrade"), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(held);

    // Nothing was bound or left behind: the same config starts normally.
    assert!(!data.join("upgrade.sock").exists());
    drop(
        Aistack::start(
            "gateway",
            &std::fs::read_to_string(&path).expect("read"),
            ports,
            dir.path(),
        )
        .await,
    );
}

#[tokio::test]
async fn upgrade_refuses_a_busy_port_naming_who_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = Flaky::start("a").await;
    let ports = Ports::free();
    let a = Aistack::start(
        "gateway",
        &config(ports, &[ports.proxy], &upstream),
        ports,
        dir.path(),
    )
    .await;
    let data = dir.path().join("data");
    let upgrade = |config: String| {
        let path = dir.path().join("next.yaml");
        std::fs::write(&path, config).expect("write");
        let (status, _, stderr) = run_cli(
            &[
                "gateway",
                "--upgrade",
                "--config",
                path.to_str().expect("utf8"),
                "--data-dir",
                data.to_str().expect("utf8"),
            ],
            dir.path(),
        );
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        stderr
    };

    // The proxy's port on the wildcard address, while A listens on 127.0.0.1 there: the
    // two cannot be bound at once, so an upgrade cannot make that move.
    let wildcard = config(ports, &[ports.proxy], &upstream).replace(
        &format!("127.0.0.1:{}\n", ports.proxy),
        &format!("0.0.0.0:{}\n", ports.proxy),
    );
    let stderr = upgrade(wildcard);
    assert!(
        stderr.contains(&format!("pid {}", a.pid()))
            && stderr.contains(&format!("listens on 127.0.0.1:{}", ports.proxy))
            && stderr.contains("shares the port"),
        "{stderr}"
    );

    // A port another program (this test) holds.
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = other.local_addr().expect("address").port();
    let stderr = upgrade(config(ports, &[ports.proxy, taken], &upstream));
    assert!(
        stderr.contains(&format!("pid {}", std::process::id()))
            && stderr.contains(&format!(
                "not by the aistack being replaced (pid {})",
                a.pid()
            )),
        "{stderr}"
    );
    drop(other);

    // A was not touched: it serves on, and is still the one named in the pid file.
    assert_eq!(who(ports.proxy).await.as_deref(), Ok("a"));
    let pid_file = std::fs::read_to_string(data.join("aistack.pid")).expect("pid file");
    assert_eq!(pid_file.trim(), a.pid().to_string());
}

/// Fresh-connection GETs of `url` until `stop`: (answered 200, failures).
fn hammer(url: String, stop: &Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let stop = Arc::clone(stop);
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let (mut ok, mut failed) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) && ok + failed.len() < 50_000 {
            match client
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => failed.push(format!("{url}: status {}", r.status())),
                Err(e) => failed.push(format!("{url}: {e:?}")),
            }
        }
        (ok, failed)
    })
}

#[tokio::test]
async fn up_upgrade_hands_the_backend_over_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::free();
    let config_a = render(aistack_e2e::UP_CONFIG, ports);
    let mut a = Aistack::start("up", &config_a, ports, dir.path()).await;
    let hash_a = status_hash(&a).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = [
        hammer(a.url("/api/v1/healthz"), &stop),
        hammer(
            format!("http://127.0.0.1:{}/api/v1/healthz", ports.backend),
            &stop,
        ),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same, and a second listener: another config hash.
    let added = free_port();
    let config_b = config_a.replacen(
        "listeners:\n",
        &format!("listeners:\n  - address: 127.0.0.1:{added}\n"),
        1,
    );
    let b = Aistack::start_upgrade("up", "b.yaml", &config_b, ports, dir.path()).await;
    drained(&mut a, Instant::now()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        let (ok, failed) = task.await.expect("load client");
        assert!(
            ok > 0 && failed.is_empty(),
            "{ok} answered, failed: {failed:?}\nB:\n{}",
            b.output()
        );
    }
    assert_ne!(status_hash(&b).await, hash_a, "the admin API answers for B");
    for url in [
        format!("http://127.0.0.1:{}/api/v1/healthz", ports.backend),
        format!("http://127.0.0.1:{added}/api/v1/healthz"),
    ] {
        let r = reqwest::get(&url).await.expect("request");
        assert_eq!(r.status(), 200, "{url}");
    }
}

#[tokio::test]
async fn upgrade_turns_tls_on_for_a_listener() {
    use crate::tls_support::{Ca, Client, request};
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("upgrade CA");
    ca.server(&["a.test"]).write(dir.path(), "a");
    let ports = Ports::free();
    let (ua, ub) = (Flaky::start("a").await, Flaky::start("b").await);
    let mut a = Aistack::start(
        "gateway",
        &config(ports, &[ports.proxy], &ua),
        ports,
        dir.path(),
    )
    .await;
    assert_eq!(who(ports.proxy).await.as_deref(), Ok("a"));

    // The same address, now with TLS: a reload cannot do that, an upgrade can.
    let plain = format!("  - address: 127.0.0.1:{}", ports.proxy);
    let tls = format!(
        "{plain}\n    tls:\n      certificates:\n        - cert: a.pem\n          key: a.key"
    );
    let config_b = config(ports, &[ports.proxy], &ub).replace(&plain, &tls);
    let b = Aistack::start_upgrade("gateway", "b.yaml", &config_b, ports, dir.path()).await;
    drained(&mut a, Instant::now()).await;
    let mut stream = Client::trusting(&ca)
        .connect(ports.proxy, "a.test")
        .await
        .unwrap_or_else(|e| panic!("TLS on the taken-over socket: {e}\n{}", b.output()));
    let (head, body) = request(&mut stream, "a.test", "/who")
        .await
        .expect("request");
    assert!(
        head.to_ascii_lowercase().starts_with("http/1.1 200"),
        "{head}"
    );
    assert!(body.contains(r#""upstream":"b""#), "{body}");
}
