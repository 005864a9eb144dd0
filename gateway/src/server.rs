//! Process wiring: load the config, bind the ports (or take them over from the
//! running process: [`handover`]), build the first snapshot, start the side runtime
//! (admin API, collaboration backend, SIGHUP reload: `side.rs`), then run Pingora until
//! it is told to stop.

mod fd;
pub mod handover;
mod procfs;
mod side;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use pingora::server::Server;
use pingora::server::configuration::ServerConf;

use crate::admin::{self, AdminState};
use crate::config::{self, GatewayConfig};
use crate::keys::{self, KeyCache};
use crate::observability::{Metrics, logging};
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::snapshot::{Snapshot, SnapshotHandle};
use crate::upstream::HealthRegistry;
use crate::wasm::{RuntimeOptions, WasmRuntime};

/// What `run` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Gateway and collaboration backend.
    Up,
    Gateway,
    Collab,
}

impl Mode {
    fn gateway(self) -> bool {
        self != Mode::Collab
    }
}

/// `aistack validate FILE`: everything a reload would check, nothing started.
pub fn validate(file: &Path) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let data_dir = Path::new("data");
    let cfg = match config::load_file(file, data_dir, &env) {
        Ok(cfg) => cfg,
        Err(errors) => return fail_config(&errors),
    };
    // One thread: the same limits, a smaller pool (nothing serves requests).
    let options = match wasm_options(&cfg, 1, None, &keys::new_cache()) {
        Ok(options) => options,
        Err(e) => return fail(&e),
    };
    let wasm = match WasmRuntime::new(options) {
        Ok(w) => w,
        Err(e) => return fail(&format!("cannot start the WebAssembly runtime: {e}")),
    };
    let health = HealthRegistry::new();
    match Snapshot::build(cfg, &wasm, &health, 1, &file.display().to_string()) {
        Ok(s) => {
            for w in config::tls::warnings(&s.config) {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} routes, {} upstreams, config hash {})",
                file.display(),
                s.routes.len(),
                s.upstreams.len(),
                s.config.hash
            );
            ExitCode::SUCCESS
        }
        Err(errors) => fail_config(&errors),
    }
}

/// Starts the product in `mode` and blocks until it stops. With `upgrade`, takes the
/// listening sockets over from the aistack serving from `data_dir` (see [`handover`]).
pub fn run(mode: Mode, config_path: &Path, data_dir: &Path, upgrade: bool) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    if upgrade && !mode.gateway() {
        return fail(
            "--upgrade is for `aistack gateway` and `aistack up` (the processes Pingora runs)",
        );
    }
    let cfg = match config::load_file(config_path, data_dir, &env) {
        Ok(cfg) => cfg,
        Err(errors) => return fail_config(&errors),
    };
    logging::init(&cfg.server.log_level);
    for w in config::tls::warnings(&cfg) {
        tracing::warn!("{w}");
    }
    raise_open_file_limit();
    if let Err(e) = std::fs::create_dir_all(data_dir) {
        return fail(&format!(
            "cannot create data directory {}: {e}",
            data_dir.display()
        ));
    }
    let upgrade_lock = match upgrade.then(|| handover::UpgradeLock::take(data_dir)) {
        None => None,
        Some(Ok(lock)) => Some(lock),
        Some(Err(msg)) => return fail(&msg),
    };
    let predecessor = match upgrade.then(|| handover::Predecessor::find(data_dir)) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(msg)) => return fail(&msg),
    };
    let serve_backend = mode != Mode::Gateway && cfg.backend.enabled;
    let bound = match handover::wanted(&cfg, mode.gateway(), serve_backend)
        .and_then(|wanted| handover::bind(wanted, predecessor.as_ref()))
    {
        Ok(b) => b,
        Err(msg) => return fail(&msg),
    };
    let metrics = Metrics::new();
    let file = config_path.display().to_string();
    // Filled by the side runtime once the key store's database is open.
    let key_cache = keys::new_cache();
    let wasm_opts = match wasm_options(&cfg, cfg.server.threads, Some(&metrics), &key_cache) {
        Ok(options) => options,
        Err(e) => return fail(&e),
    };
    let wasm = match WasmRuntime::new(wasm_opts) {
        Ok(w) => w,
        Err(e) => return fail(&format!("cannot start the WebAssembly runtime: {e}")),
    };
    let health = HealthRegistry::new();
    let snapshot = match Snapshot::build(cfg.clone(), &wasm, &health, 1, &file) {
        Ok(s) => s,
        Err(errors) => return fail_config(&errors),
    };
    let snapshots = SnapshotHandle::new(snapshot);
    let reloader = Arc::new(Reloader::new(
        config_path.to_path_buf(),
        data_dir.to_path_buf(),
        wasm,
        snapshots.clone(),
        metrics.clone(),
        health,
    ));
    let admin_state = AdminState {
        snapshots: snapshots.clone(),
        metrics: metrics.clone(),
        reloader: Some(Arc::clone(&reloader)),
        tokens: admin::Tokens::new(
            cfg.admin.token.as_deref(),
            cfg.admin.read_only_token.as_deref(),
        ),
        keys: None,
    };
    let database = side::Database {
        url: cfg.database_url.clone(),
        key_cache,
        backend: cfg.backend.clone(),
    };
    let mut side = match side::start(mode, &cfg, admin_state, reloader, database, serve_backend) {
        Ok(side) => side,
        Err(msg) => return fail(&msg),
    };
    // Everything that can refuse the config has run: only now is the running process
    // told to hand over.
    let (table, sockets) = match open_sockets(mode, bound, predecessor.as_ref(), data_dir) {
        Ok(opened) => opened,
        Err(msg) => return fail(&msg),
    };
    if let Err(msg) = side.serve(sockets.admin, sockets.backend) {
        return fail(&msg);
    }
    match table {
        Some(table) => {
            // Named in the pid file, this process may get a next upgrade's SIGQUIT before
            // Pingora listens for it (once running): until then one is ignored, not fatal.
            if let Err(msg) = side.absorb_sigquit() {
                return fail(&msg);
            }
            if let Err(msg) = handover::write_pid_file(data_dir) {
                return fail(&msg);
            }
            let running = Running { upgrade_lock };
            run_pingora(&cfg, data_dir, snapshots, metrics, table, &side, running);
            handover::remove_pid_file(data_dir);
        }
        None => {
            drop(upgrade_lock);
            side.wait_for_stop_signal()
        }
    }
    side.shutdown(cfg.server.grace_period);
    ExitCode::SUCCESS
}

/// The sockets to serve from: bound at start, plus (upgrading) those taken over from
/// `old`; the gateway's in the table Pingora serves and hands over from.
fn open_sockets(
    mode: Mode,
    bound: handover::Bound,
    old: Option<&handover::Predecessor>,
    data_dir: &Path,
) -> Result<(Option<handover::SocketTable>, handover::Sockets), String> {
    let mut sockets = match old {
        Some(old) => bound.take_over(old, data_dir)?,
        None => bound.into_sockets()?,
    };
    if !mode.gateway() {
        return Ok((None, sockets));
    }
    let others: Vec<&std::net::TcpListener> =
        sockets.admin.iter().chain(sockets.backend.iter()).collect();
    let table = handover::SocketTable::new(std::mem::take(&mut sockets.proxy), &others)
        .map_err(|e| format!("cannot use the listening sockets: {e}"))?;
    Ok((Some(table), sockets))
}

/// The plugin runtime's options: the config's limits (`server.plugins`), a pool for
/// `worker_threads`, the gateway's metrics (plugin metrics, and the faults no request
/// answers for, counted in `aistack_plugin_errors_total` beside the proxy's), and the
/// foreign functions: the built-ins, `aistack.key_lookup` over the key store's cache,
/// plus the Redis-backed ones when there is a Redis URL (read at start: a reload does not
/// change them).
fn wasm_options(
    cfg: &GatewayConfig,
    worker_threads: usize,
    metrics: Option<&Metrics>,
    key_cache: &KeyCache,
) -> Result<RuntimeOptions, String> {
    let limits = &cfg.server.plugins;
    let mut foreign_functions = crate::wasm::ForeignFunctions::default();
    keys::lookup::register(&mut foreign_functions, key_cache.clone());
    if let Some(url) = &cfg.redis_url {
        let redis = crate::cluster::Redis::new(url, &cfg.redis_key_prefix, cfg.redis_timeout)?;
        crate::cluster::register(&mut foreign_functions, &redis);
    }
    Ok(RuntimeOptions {
        worker_threads,
        max_plugins: limits.max_plugins,
        call_deadline: limits.call_deadline,
        memory_limit_bytes: limits.memory_limit,
        metrics_registry: metrics.map(|m| m.registry().clone()),
        fault_counter: metrics.map(|m| m.plugin_errors.clone()),
        foreign_functions,
    })
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn fail_config(errors: &config::ConfigErrors) -> ExitCode {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    ExitCode::FAILURE
}

fn raise_open_file_limit() {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < hard
    {
        let _ = rlimit::Resource::NOFILE.set(hard.min(1 << 20), hard);
    }
}

/// Runs the proxy on the sockets of `table` until SIGTERM (graceful), SIGINT (fast) or
/// SIGQUIT (hand the sockets to a successor, then graceful).
/// What is let go once Pingora runs (and so handles SIGQUIT): the `--upgrade` lock, so a
/// next upgrade can only signal a process that is ready to hand over.
struct Running {
    upgrade_lock: Option<handover::UpgradeLock>,
}

fn run_pingora(
    cfg: &GatewayConfig,
    data_dir: &Path,
    snapshots: SnapshotHandle,
    metrics: Metrics,
    table: handover::SocketTable,
    side: &side::SideRuntime,
    running: Running,
) {
    let grace = cfg.server.grace_period.as_secs().max(1);
    let conf = ServerConf {
        threads: cfg.server.threads,
        // A request must stay on one thread: each thread has its own plugin VMs.
        work_stealing: false,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace),
        upgrade_sock: data_dir
            .join(handover::UPGRADE_SOCKET)
            .display()
            .to_string(),
        // Written by us (Pingora writes it only when it daemonizes).
        pid_file: data_dir.join(handover::PID_FILE).display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gateway = Gateway {
        snapshots: snapshots.clone(),
        metrics,
        access_log: cfg.server.access_log,
        draining: Arc::clone(&draining),
    };
    // h2c: HTTP/2 with prior knowledge on plaintext listeners (gRPC clients use it);
    // HTTP/1.1 on the same port is unaffected.
    let mut server_options = pingora::apps::HttpServerOptions::default();
    server_options.h2c = true;
    // Pingora counts reuses: N requests per connection are N - 1 reuses.
    server_options.keepalive_request_limit =
        cfg.server.keepalive_requests.map(|n| n.saturating_sub(1));
    server_options.h2_idle_timeout = Some(cfg.server.keepalive_timeout);
    let mut http = pingora::proxy::http_proxy(&server.configuration, gateway);
    http.server_options = Some(server_options);
    let app = crate::connections::Connections::new(
        http,
        cfg.server.client_header_timeout,
        snapshots.clone(),
    );
    let mut proxy = pingora::services::listening::Service::new("aistack proxy".to_owned(), app);
    for l in &cfg.listeners {
        let address = l.address.to_string();
        match &l.tls {
            None => proxy.add_tcp(&address),
            Some(tls) => {
                match crate::tls::listener_settings(l.address, Arc::clone(tls), snapshots.clone()) {
                    Ok(settings) => proxy.add_tls_with_settings(&address, None, settings),
                    Err(e) => {
                        eprintln!("error: cannot set up TLS on {address}: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }
    }
    // The proxy finds its sockets in Pingora's table, put there first.
    let sockets = server.add_service(table);
    server.add_service(proxy).add_dependency(&sockets);
    side.follow(
        server.watch_execution_phase(),
        draining,
        running.upgrade_lock,
    );
    server.bootstrap();
    let listeners: Vec<String> = cfg
        .listeners
        .iter()
        .map(|l| match l.tls {
            Some(_) => format!("https://{}", l.address),
            None => format!("http://{}", l.address),
        })
        .collect();
    tracing::info!(
        listeners = ?listeners,
        admin = %cfg.admin.address,
        threads = cfg.server.threads,
        "aistack gateway started"
    );
    server.run(pingora::server::RunArgs::default());
}
