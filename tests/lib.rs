//! Test harness for the end-to-end tests: starts the real `aistack` binary on
//! free ports with a temporary data directory, waits for readiness, and gives
//! a small echo upstream that reports what it received.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod echo;
pub mod raw;

/// The Proxy-Wasm filters built for the tests by `build.rs`: the conformance filters of
/// `tests/filters/` and `examples/hello-filter`.
pub mod filters {
    use std::path::Path;

    include!(concat!(env!("OUT_DIR"), "/filters.rs"));

    /// The `.wasm` of the filter package `name` (e.g. `conf-headers`).
    ///
    /// # Panics
    /// When no such filter was built (a typo in a test).
    pub fn path(name: &str) -> &'static Path {
        FILTERS
            .iter()
            .find(|(built, _)| *built == name)
            .map(|(_, path)| Path::new(*path))
            .unwrap_or_else(|| panic!("no test filter `{name}`: see tests/filters/Cargo.toml"))
    }

    /// Copies the filter's `.wasm` into `dir` under the name cargo gave it
    /// (`hello_filter.wasm`) and returns that name, for a config's
    /// `plugins: {name: {path: …}}` entry relative to the config file.
    pub fn install(name: &str, dir: &Path) -> String {
        let built = path(name);
        let file = built
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{name}.wasm"));
        std::fs::copy(built, dir.join(&file)).expect("copy the filter");
        file
    }
}

/// The `aistack` binary built by `cargo build -p aistack-gateway` in the same
/// profile as this test (it sits two levels above the test executable).
pub fn aistack_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(format!("aistack{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build -p aistack-gateway --bin aistack` (./aistack test does)",
        bin.display()
    );
    bin
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Ports a gateway instance uses.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub proxy: u16,
    pub admin: u16,
    pub backend: u16,
}

impl Ports {
    /// Three distinct free ports: the sockets stay bound until all three are picked
    /// (picked one after the other, the kernel may hand the same port out twice).
    pub fn free() -> Self {
        let bind = || TcpListener::bind("127.0.0.1:0").expect("free port");
        let held = [bind(), bind(), bind()];
        let [proxy, admin, backend] = held.map(|l| l.local_addr().expect("local address").port());
        Self {
            proxy,
            admin,
            backend,
        }
    }
}

/// `aistack up` as a user runs it, on free ports: the gateway in front of the embedded
/// backend, `/api/v1` routed to it with the request-id filter (for [`render`]).
pub const UP_CONFIG: &str = r#"
listeners:
  - address: 127.0.0.1:{proxy}
admin:
  address: 127.0.0.1:{admin}
backend:
  address: 127.0.0.1:{backend}
server:
  threads: 2
  grace_period: 1s
upstreams:
  backend:
    targets: [127.0.0.1:{backend}]
routes:
  - name: api
    path: /api/v1
    upstream: backend
    plugins:
      - name: request-id
"#;

/// Replaces `{proxy}`, `{admin}`, `{backend}` in a config template.
pub fn render(template: &str, ports: Ports) -> String {
    template
        .replace("{proxy}", &ports.proxy.to_string())
        .replace("{admin}", &ports.admin.to_string())
        .replace("{backend}", &ports.backend.to_string())
}

/// A running `aistack` process. Killed on drop.
pub struct Aistack {
    child: Option<Child>,
    pub ports: Ports,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    output: Arc<Mutex<String>>,
}

impl Aistack {
    /// Writes `config` into `dir` and starts `aistack MODE` with it, waiting
    /// until the admin API (and the backend, in `up` mode) answer.
    pub async fn start(mode: &str, config: &str, ports: Ports, dir: &Path) -> Aistack {
        Self::start_with_env(mode, config, ports, dir, &[]).await
    }

    /// Like [`Aistack::start`], with extra environment variables for the
    /// process (for `${ENV}` in the config).
    pub async fn start_with_env(
        mode: &str,
        config: &str,
        ports: Ports,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Aistack {
        let mut gw = Self::spawn(&[mode], "aistack.yaml", config, ports, dir, env);
        gw.wait_ready(mode).await;
        gw
    }

    /// `aistack MODE --upgrade` with `config` (written as `config_name` in `dir`) and the
    /// data directory of the aistack started in `dir`, whose sockets it takes over;
    /// returns once it says it started (the admin API answers either way, so that is
    /// no sign). Panics if it exits first.
    pub async fn start_upgrade(
        mode: &str,
        config_name: &str,
        config: &str,
        ports: Ports,
        dir: &Path,
    ) -> Aistack {
        let mut gw = Self::spawn(&[mode, "--upgrade"], config_name, config, ports, dir, &[]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !gw.output().contains("aistack gateway started") {
            if let Some(status) = gw.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("aistack --upgrade exited ({status}):\n{}", gw.output());
            }
            assert!(
                Instant::now() < deadline,
                "aistack --upgrade not started after 60 s:\n{}",
                gw.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw
    }

    /// Starts `aistack ARGS… --config DIR/CONFIG_NAME --data-dir DIR/data`, not waiting.
    fn spawn(
        args: &[&str],
        config_name: &str,
        config: &str,
        ports: Ports,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Aistack {
        let config_path = dir.join(config_name);
        std::fs::write(&config_path, config).expect("write config");
        let data_dir = dir.join("data");
        let mut child = Command::new(aistack_bin())
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data_dir)
            .env("AISTACK_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn aistack");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Aistack {
            child: Some(child),
            ports,
            data_dir,
            config_path,
            output,
        }
    }

    /// Waits up to `within` for the process to exit by itself; its status, or `None`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_ready(&mut self, mode: &str) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut urls = Vec::new();
        if mode != "collab" {
            urls.push(format!("http://127.0.0.1:{}/status", self.ports.admin));
        }
        if mode != "gateway" {
            urls.push(format!(
                "http://127.0.0.1:{}/api/v1/healthz",
                self.ports.backend
            ));
        }
        for url in urls {
            loop {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!(
                        "aistack exited during start-up ({status}):\n{}",
                        self.output()
                    );
                }
                if let Ok(r) = client
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    // 401: the admin API is up and asks for its token.
                    && (r.status().is_success() || r.status() == 401)
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "aistack not ready at {url} after 60 s:\n{}",
                    self.output()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if mode != "collab" {
            // The proxy listener comes up with Pingora, after the admin API.
            wait_for_port(self.ports.proxy, deadline).await;
        }
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (up to 10 s) until the process has printed `needle`; the output so far
    /// either way. Log lines reach the pipe a little after the response that followed
    /// them, so assert on this rather than on [`output`](Self::output) right away.
    pub async fn wait_for_output(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let output = self.output();
            if output.contains(needle) || Instant::now() >= deadline {
                return output;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.admin)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `HUP`, …).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status();
        assert!(
            ok.map(|s| s.success()).unwrap_or(false),
            "kill -{name} failed"
        );
    }

    /// SIGKILL and reap: a crash, with no chance to flush or clean up.
    pub fn kill(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        child.wait().expect("reap the killed process")
    }

    /// SIGTERM and wait for the exit (graceful stop).
    pub async fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "aistack did not stop within 30 s after SIGTERM:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Aistack {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until something accepts connections on `port`.
pub async fn wait_for_port(port: u16, deadline: Instant) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `aistack ARGS…` to completion; returns (exit status, stdout, stderr).
pub fn run_cli(args: &[&str], cwd: &Path) -> (ExitStatus, String, String) {
    let out = Command::new(aistack_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run aistack");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
