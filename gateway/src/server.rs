//! Process wiring: load the config, probe the ports, build the first snapshot,
//! start the side runtime (admin API, collaboration backend, SIGHUP reload),
//! then run Pingora until it is told to stop.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use pingora::server::Server;
use pingora::server::configuration::ServerConf;

use crate::admin::{self, AdminState};
use crate::config::{self, GatewayConfig};
use crate::keys::{self, KeyCache, KeyStore};
use crate::observability::{Metrics, logging};
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::snapshot::{Snapshot, SnapshotHandle};
use crate::upstream::{self, HealthRegistry};
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

/// Starts the product in `mode` and blocks until it stops.
pub fn run(mode: Mode, config_path: &Path, data_dir: &Path) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
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
    let ports = match probe_ports(mode, &cfg) {
        Ok(p) => p,
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
    let side = match start_side_runtime(mode, &cfg, ports, admin_state, reloader, key_cache) {
        Ok(side) => side,
        Err(msg) => return fail(&msg),
    };
    if mode.gateway() {
        run_pingora(&cfg, data_dir, snapshots, metrics);
    } else {
        side.wait_for_stop_signal();
    }
    side.shutdown();
    ExitCode::SUCCESS
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

/// Listeners bound before Pingora starts, so a busy port is one clear line
/// (Pingora would retry for ~30 s and then panic).
struct BoundPorts {
    admin: Option<TcpListener>,
    backend: Option<TcpListener>,
}

fn probe_ports(mode: Mode, cfg: &GatewayConfig) -> Result<BoundPorts, String> {
    let bind = |addr: SocketAddr, what: &str| {
        TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
    };
    let mut ports = BoundPorts {
        admin: None,
        backend: None,
    };
    if mode.gateway() {
        for (i, l) in cfg.listeners.iter().enumerate() {
            // Released at once: Pingora binds it again.
            drop(bind(l.address, &format!("listeners[{i}]"))?);
        }
        ports.admin = Some(bind(cfg.admin.address, "admin.address")?);
    }
    if mode != Mode::Gateway && cfg.backend.enabled {
        ports.backend = Some(bind(cfg.backend.address, "backend.address")?);
    }
    Ok(ports)
}

fn raise_open_file_limit() {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < hard
    {
        let _ = rlimit::Resource::NOFILE.set(hard.min(1 << 20), hard);
    }
}

/// A tokio runtime on its own threads for everything that is not the proxy.
struct SideRuntime {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
}

impl SideRuntime {
    fn wait_for_stop_signal(&self) {
        self.runtime.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            tracing::info!("stopping");
        });
    }

    fn shutdown(self) {
        let _ = self.stop.send(true);
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

fn start_side_runtime(
    mode: Mode,
    cfg: &GatewayConfig,
    ports: BoundPorts,
    admin_state: AdminState,
    reloader: Arc<Reloader>,
    key_cache: KeyCache,
) -> Result<SideRuntime, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aistack-side")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the side runtime: {e}"))?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let database = Database {
        url: cfg.database_url.clone(),
        key_cache,
        backend: cfg.backend.clone(),
    };
    let watch = cfg.server.watch.then_some(cfg.server.watch_interval);
    runtime.spawn(async move {
        let result =
            start_services(mode, ports, admin_state, reloader, database, watch, stop_rx).await;
        let _ = ready_tx.send(result);
    });
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(SideRuntime { runtime, stop }),
        Ok(Err(msg)) => Err(msg),
        Err(_) => Err("the side runtime stopped during start-up".to_owned()),
    }
}

/// How long start-up waits for the key store's first load.
const KEY_STORE_FIRST_LOAD: Duration = Duration::from_secs(3);

/// The database the gateway's key store and the collaboration backend share.
struct Database {
    url: String,
    /// The cache the key store fills (the plugin runtime already reads it).
    key_cache: KeyCache,
    /// The backend's settings from the config.
    backend: config::model::BackendSettings,
}

async fn start_services(
    mode: Mode,
    ports: BoundPorts,
    mut admin_state: AdminState,
    reloader: Arc<Reloader>,
    database: Database,
    watch: Option<Duration>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let database_url = database.url;
    if mode.gateway() {
        spawn_sighup_reload(Arc::clone(&reloader))?;
        if let Some(interval) = watch {
            tokio::spawn(crate::reload::watch::run(
                Arc::clone(&reloader),
                interval,
                stop.clone(),
            ));
        }
        let snapshots = reloader.snapshots.clone();
        tokio::spawn(upstream::checks::run_health_checks(
            snapshots.clone(),
            stop.clone(),
        ));
        tokio::spawn(upstream::checks::run_dns_refresh(
            snapshots,
            reloader.health.clone(),
            stop.clone(),
        ));
        let store = KeyStore::new(&database_url, database.key_cache)
            .map_err(|e| format!("cannot open the key store: {e}"))?;
        // Keys loaded before the proxy serves, unless the database is down: then the
        // gateway starts anyway (key-auth answers 503) and the poll keeps trying.
        match tokio::time::timeout(KEY_STORE_FIRST_LOAD, store.refresh()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(
                "key store: cannot load the keys, retrying every second (key-auth answers 503 until then): {e}"
            ),
            Err(_) => tracing::error!(
                "key store: the database did not answer within {KEY_STORE_FIRST_LOAD:?}, retrying every second (key-auth answers 503 until then)"
            ),
        }
        tokio::spawn(store.clone().poll(stop.clone()));
        admin_state.keys = Some(store);
    }
    if let Some(listener) = ports.admin {
        let listener = to_tokio(listener)?;
        let app = admin::router(admin_state);
        let stop = stop.clone();
        tokio::spawn(async move {
            let shutdown = wait_stop(stop);
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!("admin API stopped: {e}");
            }
        });
    }
    if let Some(listener) = ports.backend {
        let listener = to_tokio(listener)?;
        let db = aistack_collab::Db::connect(&database_url)
            .await
            .map_err(|e| format!("cannot open the database: {e}"))?;
        let options = backend_options(&db, database.backend);
        tokio::spawn(async move {
            let served =
                aistack_collab::serve_with(listener, db.clone(), options, wait_stop(stop)).await;
            if let Err(e) = served {
                tracing::error!("collaboration backend stopped: {e}");
            }
            db.close().await;
        });
    }
    Ok(())
}

/// The backend's options: the environment's (see [`aistack_collab::BackendOptions::from_env`]),
/// with the config's due-date reminders and its email settings, which the environment's
/// email variables override one by one.
fn backend_options(
    db: &aistack_collab::Db,
    settings: config::model::BackendSettings,
) -> aistack_collab::BackendOptions {
    let mut options = aistack_collab::BackendOptions::from_env(db);
    options.due_soon_window = settings.due_soon_window;
    options.due_soon_scan = settings.due_soon_scan;
    if settings.email.is_some() {
        match aistack_collab::email::EmailOptions::from_env_over(settings.email) {
            Ok(email) => options.email = email,
            Err(e) => {
                tracing::error!("email is off: {e}");
                options.email = None;
            }
        }
    }
    options
}

fn to_tokio(listener: TcpListener) -> Result<tokio::net::TcpListener, String> {
    listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(|e| format!("cannot use listener: {e}"))
}

async fn wait_stop(mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Pingora does not handle SIGHUP (its default action kills the process):
/// take it over before Pingora starts and reload the config on it.
fn spawn_sighup_reload(reloader: Arc<Reloader>) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let r = Arc::clone(&reloader);
            let _ = tokio::task::spawn_blocking(move || r.reload("SIGHUP")).await;
        }
    });
    Ok(())
}

/// Runs the proxy until SIGTERM (graceful) or SIGINT (fast).
fn run_pingora(cfg: &GatewayConfig, data_dir: &Path, snapshots: SnapshotHandle, metrics: Metrics) {
    let grace = cfg.server.grace_period.as_secs().max(1);
    let conf = ServerConf {
        threads: cfg.server.threads,
        // A request must stay on one thread: each thread has its own plugin VMs.
        work_stealing: false,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace),
        upgrade_sock: data_dir.join("upgrade.sock").display().to_string(),
        pid_file: data_dir.join("aistack.pid").display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let gateway = Gateway {
        snapshots: snapshots.clone(),
        metrics,
        access_log: cfg.server.access_log,
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
    server.add_service(proxy);
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
