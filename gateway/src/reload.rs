//! Config reload: read the file again, validate and build a whole new
//! snapshot, swap it in. A refused config leaves the old snapshot serving.
//! Triggered by SIGHUP, by `POST /config/reload` on the admin API, and by a
//! change to the config file or a plugin's `.wasm` file ([`watch`]).

pub mod watch;

use std::path::PathBuf;
use std::sync::Mutex;

use crate::config::{self, ConfigErrors};
use crate::observability::Metrics;
use crate::snapshot::{Snapshot, SnapshotHandle};
use crate::upstream::HealthRegistry;
use crate::wasm::WasmRuntime;

/// Everything a reload needs. Reloads are serialized.
pub struct Reloader {
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub wasm: WasmRuntime,
    pub snapshots: SnapshotHandle,
    pub metrics: Metrics,
    /// Target health, kept across reloads for upstreams that stay.
    pub health: HealthRegistry,
    lock: Mutex<()>,
}

impl Reloader {
    pub fn new(
        config_path: PathBuf,
        data_dir: PathBuf,
        wasm: WasmRuntime,
        snapshots: SnapshotHandle,
        metrics: Metrics,
        health: HealthRegistry,
    ) -> Self {
        Self {
            config_path,
            data_dir,
            wasm,
            snapshots,
            metrics,
            health,
            lock: Mutex::new(()),
        }
    }

    /// Reloads now (blocking: reads files, compiles plugins). Returns the new
    /// generation, or the errors that refused the config.
    pub fn reload(&self, trigger: &str) -> Result<u64, ConfigErrors> {
        let _serial = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let file = self.config_path.display().to_string();
        let env = |name: &str| std::env::var(name).ok();
        let result = config::load_file(&self.config_path, &self.data_dir, &env).and_then(|cfg| {
            let old = self.snapshots.load();
            warn_on_restart_only_changes(&old.config, &cfg);
            for w in config::tls::warnings(&cfg) {
                tracing::warn!(trigger, "{w}");
            }
            let mut next = Snapshot::build(
                cfg,
                &self.wasm,
                &self.health,
                self.snapshots.next_generation(),
                &file,
            )?;
            next.keep_retry_budgets(&old);
            Ok(next)
        });
        match result {
            Ok(snapshot) => {
                let generation = snapshot.generation;
                let hash = snapshot.config.hash.clone();
                self.snapshots.swap(snapshot);
                self.forget_removed_targets();
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(trigger, generation, hash = %hash, "config reloaded");
                Ok(generation)
            }
            Err(errors) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                for e in &errors.0 {
                    tracing::error!(trigger, "config reload refused: {e}");
                }
                Err(errors)
            }
        }
    }
}

impl Reloader {
    /// Health state of targets the new snapshot no longer has is dropped
    /// (requests still on the old snapshot keep their own reference).
    fn forget_removed_targets(&self) {
        let snap = self.snapshots.load();
        let keep: std::collections::HashSet<(&str, std::net::SocketAddr)> = snap
            .upstreams
            .iter()
            .flat_map(|u| u.endpoints().into_iter().map(move |e| (&*u.name, e.addr)))
            .collect();
        self.health.retain(|u, a| keep.contains(&(u, a)));
    }

    /// The files whose change triggers a reload: the config, the plugins and the TLS
    /// certificates, keys and CAs it names.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let snap = self.snapshots.load();
        std::iter::once(self.config_path.clone())
            .chain(snap.config.plugin_files.values().cloned())
            .chain(snap.config.tls_files())
            .collect()
    }
}

/// Listeners, admin, backend, database, thread and plugin-limit settings apply at start
/// only.
fn warn_on_restart_only_changes(old: &config::GatewayConfig, new: &config::GatewayConfig) {
    let shape = |c: &config::GatewayConfig| -> Vec<_> {
        c.listeners.iter().map(|l| l.restart_shape()).collect()
    };
    if shape(old) != shape(new) {
        // Certificates, keys, client CAs and `min_version` apply on reload (see `tls`).
        tracing::warn!(
            "listener changes (addresses, TLS on or off, `tls.http2`) take effect in a new \
             process: `aistack gateway --upgrade` (or `up --upgrade`) starts one without \
             refusing connections"
        );
    }
    if old.admin.address != new.admin.address || old.backend.address != new.backend.address {
        tracing::warn!("admin/backend address changes take effect after a restart");
    }
    let (a, b) = (&old.admin, &new.admin);
    if a.token != b.token || a.read_only_token != b.read_only_token {
        // The admin API keeps the digests of the tokens it started with.
        tracing::warn!("admin token changes take effect after a restart");
    }
    let (a, b) = (&old.backend, &new.backend);
    if a.email != b.email
        || a.due_soon_window != b.due_soon_window
        || a.due_soon_scan != b.due_soon_scan
    {
        tracing::warn!("backend.email and backend.due_soon changes take effect after a restart");
    }
    if old.database_url != new.database_url || old.server.threads != new.server.threads {
        tracing::warn!("database and thread settings take effect after a restart");
    }
    if old.server.keepalive_requests != new.server.keepalive_requests {
        tracing::warn!("server.keepalive_requests takes effect after a restart");
    }
    if old.server.client_header_timeout != new.server.client_header_timeout {
        tracing::warn!("server.client_header_timeout takes effect after a restart");
    }
    if old.server.plugins.restart_needed(&new.server.plugins) {
        // They size the one plugin runtime of the process (its pool, its deadlines).
        tracing::warn!("plugin limit changes (server.plugins) take effect after a restart");
    }
}
