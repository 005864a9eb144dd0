//! Finding the tools and starting the processes under test: the bench upstream, nginx
//! (from the committed `nginx/nginx.conf` template) and AI Stack (from the committed
//! `aistack-bench*.yaml` configs), each pinned with `taskset`, each polled until it
//! serves the upstream's `ok`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::children::{ChildId, Children};
use crate::probe::{self, Reply};

/// Where the committed configs live (this crate's directory).
pub fn bench_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Executables the benchmark runs.
#[derive(Debug)]
pub struct Tools {
    pub aistack: PathBuf,
    pub upstream: PathBuf,
    pub pingora_bare: PathBuf,
    pub nginx: PathBuf,
    pub wrk: PathBuf,
    pub taskset: PathBuf,
    /// `nice -n N` in front of every benchmark process (`--nice`), if not 0.
    pub nice: Option<(PathBuf, i32)>,
}

impl Tools {
    /// `aistack` and `upstream` default to siblings of the running executable
    /// (`target/release/`); the others come from `PATH` (and `/usr/sbin` for nginx).
    pub fn find(aistack: Option<PathBuf>, nice: i32) -> Result<Self> {
        let exe = std::env::current_exe().context("cannot locate the running executable")?;
        let dir = exe.parent().context("executable has no directory")?;
        let aistack = aistack.unwrap_or_else(|| dir.join("aistack"));
        if !aistack.is_file() {
            bail!(
                "{} not found; build it first: cargo build --release -p aistack-gateway -p aistack-benches",
                aistack.display()
            );
        }
        let sibling = |name: &str| {
            let path = dir.join(name);
            if !path.is_file() {
                bail!(
                    "{} not found; build it: cargo build --release -p aistack-benches",
                    path.display()
                );
            }
            Ok(path)
        };
        Ok(Self {
            aistack,
            upstream: sibling("upstream")?,
            pingora_bare: sibling("pingora-bare")?,
            nginx: which("nginx")
                .context("nginx not found (Debian/Ubuntu: apt-get install -y nginx-light)")?,
            wrk: which("wrk").context("wrk not found (Debian/Ubuntu: apt-get install -y wrk)")?,
            taskset: which("taskset").context("taskset not found (it is in util-linux)")?,
            nice: match nice {
                0 => None,
                n => Some((
                    which("nice").context("nice not found (it is in coreutils)")?,
                    n,
                )),
            },
        })
    }

    /// `[nice -n N] taskset -c CPU program`: the program (and every thread and child it
    /// makes) runs on CPU, at the `--nice` priority.
    pub fn pinned(&self, cpu: usize, program: &Path) -> Command {
        let mut cmd = match &self.nice {
            Some((nice, n)) => {
                let mut cmd = Command::new(nice);
                cmd.arg("-n").arg(n.to_string()).arg(&self.taskset);
                cmd
            }
            None => Command::new(&self.taskset),
        };
        cmd.arg("-c").arg(cpu.to_string()).arg(program);
        cmd
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `n` distinct free loopback ports: all bound at once (so none repeats), then released.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot bind a loopback port")?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?)
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A proxy under test, serving on `addr`.
#[derive(Debug)]
pub struct Contender {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub child: ChildId,
    /// Where its access log lines go (with `--access-log`); pingora-bare has none.
    pub access_log: Option<PathBuf>,
    /// The API key it admits (made through its admin API), if its route needs one.
    pub api_key: Option<String>,
}

/// Starts the bench upstream on `cpu` and waits until it answers.
pub async fn start_upstream(
    tools: &Tools,
    children: &mut Children,
    tmp: &Path,
    cpu: usize,
    addr: SocketAddr,
) -> Result<ChildId> {
    let mut cmd = tools.pinned(cpu, &tools.upstream);
    cmd.arg(addr.port().to_string());
    let id = children.spawn("upstream", cmd, &tmp.join("upstream.log"), "TERM")?;
    probe::wait_ready(
        "upstream",
        addr,
        Duration::from_secs(10),
        || children.ensure_running(id),
        probe::upstream_ok,
    )
    .await?;
    Ok(id)
}

/// Renders the committed nginx template: ports in, access log `off` or a file.
pub fn render_nginx_conf(
    template: &str,
    proxy: SocketAddr,
    upstream: SocketAddr,
    access_log: bool,
) -> Result<String> {
    let conf = template
        .replace("@PROXY_ADDR@", &proxy.to_string())
        .replace("@UPSTREAM_ADDR@", &upstream.to_string())
        .replace(
            "@ACCESS_LOG@",
            if access_log {
                "access.log combined"
            } else {
                "off"
            },
        );
    if let Some(at) = conf.find('@') {
        let line = conf[at..].lines().next().unwrap_or_default();
        bail!("nginx.conf template has an unknown placeholder: {line}");
    }
    Ok(conf)
}

/// Writes nginx.conf into `tmp/nginx/` (its prefix: pid, logs and temp paths stay
/// there) and starts nginx in the foreground on `cpu`.
pub async fn start_nginx(
    tools: &Tools,
    children: &mut Children,
    tmp: &Path,
    cpu: usize,
    addr: SocketAddr,
    upstream: SocketAddr,
    access_log: bool,
) -> Result<Contender> {
    let template_path = bench_dir().join("nginx/nginx.conf");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read {}", template_path.display()))?;
    let prefix = tmp.join("nginx");
    std::fs::create_dir(&prefix)?;
    // Running as root, nginx's worker runs as `nobody` and must traverse the prefix.
    world_traversable(tmp)?;
    world_traversable(&prefix)?;
    std::fs::write(
        prefix.join("nginx.conf"),
        render_nginx_conf(&template, addr, upstream, access_log)?,
    )?;
    let mut cmd = tools.pinned(cpu, &tools.nginx);
    let mut prefix_arg = prefix.clone().into_os_string();
    prefix_arg.push("/");
    cmd.arg("-p")
        .arg(prefix_arg)
        .args(["-c", "nginx.conf", "-e"])
        .arg(prefix.join("error.log"));
    cmd.args(["-g", "daemon off;"]);
    let child = children.spawn("nginx", cmd, &tmp.join("nginx.out"), "TERM")?;
    let ready = probe::wait_ready(
        "nginx",
        addr,
        Duration::from_secs(20),
        || children.ensure_running(child),
        probe::upstream_ok,
    );
    ready.await.map_err(|e| {
        e.context(format!(
            "nginx error log:\n{}",
            crate::children::log_tail(&prefix.join("error.log"))
        ))
    })?;
    Ok(Contender {
        name: "nginx",
        addr,
        child,
        access_log: Some(prefix.join("access.log")),
        api_key: None,
    })
}

/// Starts the minimal Pingora proxy (`pingora-bare`) on `cpu`.
pub async fn start_pingora_bare(
    tools: &Tools,
    children: &mut Children,
    tmp: &Path,
    cpu: usize,
    addr: SocketAddr,
    upstream: SocketAddr,
) -> Result<Contender> {
    let mut cmd = tools.pinned(cpu, &tools.pingora_bare);
    cmd.arg(addr.to_string()).arg(upstream.to_string());
    let log = tmp.join("pingora-bare.log");
    let child = children.spawn("pingora-bare", cmd, &log, "INT")?;
    let alive = || children.ensure_running(child);
    probe::wait_ready(
        "pingora-bare",
        addr,
        Duration::from_secs(20),
        alive,
        probe::upstream_ok,
    )
    .await?;
    Ok(Contender {
        name: "pingora-bare",
        addr,
        child,
        access_log: None,
        api_key: None,
    })
}

fn world_traversable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", dir.display()))
}

/// One AI Stack contender: which committed config, and what its replies must show.
#[derive(Debug, Clone, Copy)]
pub struct AistackSpec {
    pub name: &'static str,
    /// Names its directory in the temporary directory (several specs share a config).
    pub id: &'static str,
    /// File name in this crate's directory.
    pub config: &'static str,
    /// The `.wasm` the config loads through `${BENCH_FILTER_WASM}`, if it loads one.
    pub filter_wasm: Option<&'static str>,
    /// What a reply through the route must be (proves the filter runs).
    pub expect: Expect,
}

/// What the readiness probe requires of an AI Stack contender's reply, beyond 200.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// The upstream's `ok`, untouched.
    Ok,
    /// The upstream's `ok` and this response header (a filter added it).
    Header(&'static str),
    /// Exactly this body (a filter rewrote it).
    Body(&'static [u8]),
    /// `401` without an API key (key-auth is on the route); the benchmark then makes a
    /// consumer and a key through the admin API, and with the key the reply is the
    /// upstream's `ok` with `ratelimit-limit` (rate-limit is on the route).
    KeyAuth,
}

impl Expect {
    fn check(self, reply: &Reply) -> Result<()> {
        match self {
            Expect::Ok => probe::upstream_ok(reply),
            Expect::Header(h) => {
                probe::upstream_ok(reply)?;
                if reply.header(h).is_none() {
                    bail!("reply lacks `{h}`: is the filter on the route?")
                }
                Ok(())
            }
            Expect::Body(body) => probe::status_ok_with_body(reply, body),
            Expect::KeyAuth => match reply.status {
                401 => Ok(()),
                other => bail!("expected 401 without an API key, got {other}"),
            },
        }
    }
}

/// Starts `aistack gateway` with `spec.config` on `cpu`; ports reach the config
/// through its `${BENCH_*}` variables.
#[allow(clippy::too_many_arguments)]
pub async fn start_aistack(
    tools: &Tools,
    children: &mut Children,
    tmp: &Path,
    cpu: usize,
    spec: AistackSpec,
    addr: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
    access_log: bool,
) -> Result<Contender> {
    let dir = tmp.join(spec.id);
    std::fs::create_dir(&dir)?;
    let mut cmd = tools.pinned(cpu, &tools.aistack);
    cmd.arg("gateway")
        .arg("--config")
        .arg(bench_dir().join(spec.config));
    cmd.arg("--data-dir").arg(dir.join("data"));
    cmd.env("BENCH_PROXY_ADDR", addr.to_string())
        .env("BENCH_ADMIN_ADDR", admin.to_string())
        .env("BENCH_UPSTREAM_ADDR", upstream.to_string())
        .env("BENCH_ACCESS_LOG", access_log.to_string())
        // The committed config alone decides: no database, Redis or log overrides.
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("AISTACK_LOG");
    if let Some(wasm) = spec.filter_wasm {
        cmd.env("BENCH_FILTER_WASM", wasm);
    }
    let log = dir.join("aistack.log");
    let child = children.spawn(spec.name, cmd, &log, "INT")?;
    probe::wait_ready(
        spec.name,
        addr,
        Duration::from_secs(90),
        || children.ensure_running(child),
        |reply| spec.expect.check(reply),
    )
    .await?;
    let api_key = match spec.expect {
        Expect::KeyAuth => Some(make_api_key(addr, admin).await?),
        _ => None,
    };
    Ok(Contender {
        name: spec.name,
        addr,
        child,
        access_log: Some(log),
        api_key,
    })
}

/// Makes the consumer `bench` and an API key for it through the admin API on `admin`,
/// and checks that the route on `addr` admits it.
async fn make_api_key(addr: SocketAddr, admin: SocketAddr) -> Result<String> {
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("http://{admin}{path}"))
            .json(&body)
            .send()
    };
    let consumer = post("/consumers", serde_json::json!({ "name": "bench" })).await?;
    if !consumer.status().is_success() {
        bail!("POST /consumers: {}", consumer.status());
    }
    let made = post("/consumers/bench/keys", serde_json::json!({})).await?;
    if !made.status().is_success() {
        bail!("POST /consumers/bench/keys: {}", made.status());
    }
    let made: serde_json::Value = made.json().await?;
    let key = made["key"]
        .as_str()
        .with_context(|| format!("no `key` in {made}"))?
        .to_owned();
    let reply = http
        .get(format!("http://{addr}/"))
        .header("x-api-key", &key)
        .send()
        .await?;
    let (status, limited) = (
        reply.status(),
        reply.headers().contains_key("ratelimit-limit"),
    );
    let body = reply.bytes().await?;
    if status != 200 || &body[..] != b"ok" || !limited {
        bail!("with its API key the route answered {status} {body:?} (ratelimit-limit: {limited})");
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_nginx_template_renders() {
        let template =
            std::fs::read_to_string(bench_dir().join("nginx/nginx.conf")).expect("template");
        let conf =
            render_nginx_conf(&template, loopback(1001), loopback(1002), false).expect("renders");
        assert!(conf.contains("listen 127.0.0.1:1001;"));
        assert!(conf.contains("server 127.0.0.1:1002;"));
        assert!(conf.contains("access_log off;"));
        assert!(conf.contains("keepalive 64;") && conf.contains("proxy_http_version 1.1;"));
        let logged = render_nginx_conf(&template, loopback(1), loopback(2), true).expect("renders");
        assert!(logged.contains("access_log access.log combined;"));
        assert!(render_nginx_conf("x @NEW@", loopback(1), loopback(2), true).is_err());
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(6).expect("ports");
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }
}
