//! [`BackendOptions`]: what the backend needs beyond its database.

use std::path::PathBuf;
use std::time::Duration;

use crate::Db;
use crate::email::EmailOptions;

/// Default largest upload: 100 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;
/// Default session lifetime: 12 hours.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Default WebSocket ping interval: 30 s.
pub const DEFAULT_WS_HEARTBEAT: Duration = Duration::from_secs(30);
/// Default interval of the notification dispatcher's sweep: 5 s.
pub const DEFAULT_DISPATCH_SWEEP: Duration = Duration::from_secs(5);
/// Default interval of the due-date scan: 1 minute.
pub const DEFAULT_DUE_SOON_SCAN: Duration = Duration::from_secs(60);
/// Default lead time of `task.due_soon` reminders: 24 hours.
pub const DEFAULT_DUE_SOON_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Settings of one backend instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendOptions {
    /// Where uploaded file contents live (objects named by generated ids).
    pub storage_root: PathBuf,
    /// Trust `X-Consumer-Id` (a backend user id) as the caller's identity. Only set this
    /// when the backend is reachable solely through the gateway, which strips
    /// client-sent `X-Consumer-*` headers on every route. Default false.
    pub trust_gateway_headers: bool,
    /// Largest accepted upload in bytes; larger bodies get 413. Default 100 MiB.
    pub max_upload_bytes: u64,
    /// How long a sign-in session token lives. Default 12 h.
    pub session_ttl: Duration,
    /// How often notification WebSockets are pinged; a client silent for three
    /// intervals is disconnected. Default 30 s.
    pub ws_heartbeat: Duration,
    /// How often the notification dispatcher looks for pending events even when no
    /// write on this node woke it (events written by other nodes, retries). Default 5 s.
    pub dispatch_sweep: Duration,
    /// How often open tasks are scanned for due dates within [`Self::due_soon_window`].
    /// Default 1 minute.
    pub due_soon_scan: Duration,
    /// A task is due at the end of its due date (UTC); from this long before that, its
    /// assignees get one `task.due_soon` notification. Default 24 h.
    pub due_soon_window: Duration,
    /// Email delivery; `None` (the default) sends no email.
    pub email: Option<EmailOptions>,
}

impl BackendOptions {
    /// Defaults with files under `storage_root`.
    pub fn new(storage_root: impl Into<PathBuf>) -> Self {
        Self {
            storage_root: storage_root.into(),
            trust_gateway_headers: false,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            session_ttl: DEFAULT_SESSION_TTL,
            ws_heartbeat: DEFAULT_WS_HEARTBEAT,
            dispatch_sweep: DEFAULT_DISPATCH_SWEEP,
            due_soon_scan: DEFAULT_DUE_SOON_SCAN,
            due_soon_window: DEFAULT_DUE_SOON_WINDOW,
            email: None,
        }
    }

    /// Options from the environment, for callers that pass none:
    /// - `AISTACK_COLLAB_STORAGE_DIR`: the storage root; default `files/` beside the
    ///   SQLite database file, or `data/files` (relative to the working directory) for
    ///   PostgreSQL and in-memory databases;
    /// - `AISTACK_COLLAB_TRUST_GATEWAY=1|true`: see [`Self::trust_gateway_headers`];
    /// - `AISTACK_COLLAB_MAX_UPLOAD_BYTES`: see [`Self::max_upload_bytes`] (ignored
    ///   when not a number);
    /// - email: see [`EmailOptions::from_env`] (`AISTACK_SMTP_HOST` turns it on; a
    ///   malformed setting is logged and leaves email off).
    pub fn from_env(db: &Db) -> Self {
        let root = std::env::var_os("AISTACK_COLLAB_STORAGE_DIR")
            .map(PathBuf::from)
            .or_else(|| db.sqlite_dir().map(|dir| dir.join("files")))
            .unwrap_or_else(|| PathBuf::from("data/files"));
        let mut options = Self::new(root);
        options.trust_gateway_headers = std::env::var("AISTACK_COLLAB_TRUST_GATEWAY")
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        if let Some(max) = std::env::var("AISTACK_COLLAB_MAX_UPLOAD_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            options.max_upload_bytes = max;
        }
        match EmailOptions::from_env() {
            Ok(email) => options.email = email,
            Err(e) => tracing::error!("email is off: {e}"),
        }
        options
    }
}
