//! The side runtime: a tokio runtime on its own threads for everything that is not the
//! proxy (admin API, collaboration backend, SIGHUP reload, file watch, health checks,
//! key store). Started in two steps: [`start`] does everything that can fail (databases,
//! signal handlers) before an upgrade touches the running process; [`SideRuntime::serve`]
//! then serves the admin API and the backend on the sockets bound or taken over.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pingora::server::ExecutionPhase;

use super::Mode;
use crate::admin::{self, AdminState};
use crate::config::{self, GatewayConfig};
use crate::keys::{KeyCache, KeyStore};
use crate::reload::Reloader;
use crate::upstream;

/// How long start-up waits for the key store's first load.
const KEY_STORE_FIRST_LOAD: Duration = Duration::from_secs(3);

pub(super) struct SideRuntime {
    runtime: tokio::runtime::Runtime,
    /// Everything stops (after the proxy has).
    stop: tokio::sync::watch::Sender<bool>,
    /// Set once this process has handed its sockets to a successor: the admin API and the
    /// backend stop accepting (see [`UntilHandedOver`]), so `/status` answers for the new
    /// process.
    handed_over: tokio::sync::watch::Sender<bool>,
    admin_state: Option<AdminState>,
    backend: Option<(aistack_collab::Db, aistack_collab::BackendOptions)>,
    /// The admin API's and the backend's serve tasks, awaited at the stop so requests in
    /// flight finish (dropping the runtime would cut them).
    serving: Vec<tokio::task::JoinHandle<()>>,
}

/// The database the gateway's key store and the collaboration backend share.
pub(super) struct Database {
    pub url: String,
    /// The cache the key store fills (the plugin runtime already reads it).
    pub key_cache: KeyCache,
    /// The backend's settings from the config.
    pub backend: config::model::BackendSettings,
}

/// Starts the runtime and the background work of `mode`; opens the backend's database
/// when `serve_backend`.
pub(super) fn start(
    mode: Mode,
    cfg: &GatewayConfig,
    admin_state: AdminState,
    reloader: Arc<Reloader>,
    database: Database,
    serve_backend: bool,
) -> Result<SideRuntime, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aistack-side")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the side runtime: {e}"))?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (handed_over, _) = tokio::sync::watch::channel(false);
    let watch = cfg.server.watch.then_some(cfg.server.watch_interval);
    let (admin_state, backend) = runtime.block_on(prepare(
        mode,
        admin_state,
        reloader,
        database,
        watch,
        serve_backend,
        stop_rx,
    ))?;
    Ok(SideRuntime {
        runtime,
        stop,
        handed_over,
        admin_state: mode.gateway().then_some(admin_state),
        backend,
        serving: Vec::new(),
    })
}

type Prepared = (
    AdminState,
    Option<(aistack_collab::Db, aistack_collab::BackendOptions)>,
);

async fn prepare(
    mode: Mode,
    mut admin_state: AdminState,
    reloader: Arc<Reloader>,
    database: Database,
    watch: Option<Duration>,
    serve_backend: bool,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Prepared, String> {
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
        tokio::spawn(upstream::dns::run_dns_refresh(
            snapshots,
            reloader.health.clone(),
            upstream::dns::system_resolver(),
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
    let backend = if serve_backend {
        let db = aistack_collab::Db::connect(&database_url)
            .await
            .map_err(|e| format!("cannot open the database: {e}"))?;
        let options = backend_options(&db, database.backend);
        Some((db, options))
    } else {
        None
    };
    Ok((admin_state, backend))
}

impl SideRuntime {
    /// Serves the admin API and the backend on their sockets (those `start` prepared for).
    pub(super) fn serve(
        &mut self,
        admin: Option<TcpListener>,
        backend: Option<TcpListener>,
    ) -> Result<(), String> {
        if let (Some(listener), Some(state)) = (admin, self.admin_state.take()) {
            let listener = self.until_handed_over(listener)?;
            let app = admin::router(state);
            let stop = self.stop.subscribe();
            let task = self.runtime.spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(wait_stop(stop))
                    .await
                {
                    tracing::error!("admin API stopped: {e}");
                }
            });
            self.serving.push(task);
        }
        if let (Some(listener), Some((db, options))) = (backend, self.backend.take()) {
            let listener = self.until_handed_over(listener)?;
            let stop = self.stop.subscribe();
            let task = self.runtime.spawn(async move {
                let served =
                    aistack_collab::serve_with(listener, db.clone(), options, wait_stop(stop))
                        .await;
                if let Err(e) = served {
                    tracing::error!("collaboration backend stopped: {e}");
                }
                db.close().await;
            });
            self.serving.push(task);
        }
        Ok(())
    }

    /// Follows Pingora's phases: once the listening sockets went to a successor (SIGQUIT),
    /// the admin API and the backend stop accepting here (the successor accepts on the same
    /// sockets); from
    /// then on, and from SIGTERM, the proxy is `draining` (see [`crate::proxy::Gateway`]).
    ///
    /// `upgrade_lock` (held by an `--upgrade`) is let go once Pingora runs.
    pub(super) fn follow(
        &self,
        mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
        draining: Arc<AtomicBool>,
        upgrade_lock: Option<super::handover::UpgradeLock>,
    ) {
        let handed_over = self.handed_over.clone();
        let mut upgrade_lock = upgrade_lock;
        self.runtime.spawn(async move {
            while let Ok(phase) = phases.recv().await {
                match phase {
                    ExecutionPhase::Running => drop(upgrade_lock.take()),
                    ExecutionPhase::GracefulUpgradeTransferringFds => {
                        tracing::info!("SIGQUIT: sending the listening sockets to the new process");
                    }
                    ExecutionPhase::GracefulUpgradeCloseTimeout => {
                        tracing::info!(
                            "listening sockets handed over: the admin API and the backend are the new process's now; draining"
                        );
                        draining.store(true, Ordering::Relaxed);
                        handed_over.send_replace(true);
                    }
                    ExecutionPhase::GracefulTerminate => draining.store(true, Ordering::Relaxed),
                    _ => {}
                }
            }
        });
    }

    /// From here on a SIGQUIT does not end the process (its default action) but is
    /// dropped, until Pingora listens for it. tokio's handler, once installed, stays for
    /// the life of the process; a signal that arrived before Pingora's listener is not
    /// delivered to it.
    pub(super) fn absorb_sigquit(&self) -> Result<(), String> {
        let _runtime = self.runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::quit())
            .map(drop)
            .map_err(|e| format!("cannot handle SIGQUIT: {e}"))
    }

    pub(super) fn wait_for_stop_signal(&self) {
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

    /// Stops accepting, lets the admin API's and the backend's requests in flight finish
    /// (up to `grace`), then stops everything.
    pub(super) fn shutdown(self, grace: Duration) {
        self.stop.send_replace(true);
        let serving = join_all(self.serving);
        if self
            .runtime
            .block_on(async { tokio::time::timeout(grace, serving).await })
            .is_err()
        {
            tracing::warn!(
                "connections to the admin API or the backend still open after {grace:?}: closed"
            );
        }
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
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

impl SideRuntime {
    fn until_handed_over(&self, listener: TcpListener) -> Result<UntilHandedOver, String> {
        let _guard = self.runtime.enter();
        let inner = listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
            .map_err(|e| format!("cannot use listener: {e}"))?;
        Ok(UntilHandedOver {
            inner,
            handed_over: self.handed_over.subscribe(),
        })
    }
}

/// A listener that stops accepting, without closing, once the sockets were handed over:
/// new connections wait in the accept queue the successor shares, and those accepted here
/// are served until the stop. (Ending axum's serve at the hand-over instead would close
/// connections accepted an instant before whose request it had not read yet.)
struct UntilHandedOver {
    inner: tokio::net::TcpListener,
    handed_over: tokio::sync::watch::Receiver<bool>,
}

impl axum::serve::Listener for UntilHandedOver {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if *self.handed_over.borrow() {
                std::future::pending::<()>().await;
            }
            tokio::select! {
                // Cancel-safe: a connection not taken here stays queued.
                accepted = self.inner.accept() => match accepted {
                    Ok(connection) => return connection,
                    // As axum's own listener: per-connection errors are skipped, others
                    // (out of file descriptors) retried after a pause.
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused) => {}
                    Err(e) => {
                        tracing::error!("accept: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                changed = self.handed_over.changed() => {
                    // No sender: the side runtime is stopping; accept nothing more.
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
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
