//! Reload on file change: polls the config file and the plugin `.wasm` files
//! it names (`server.watch_interval`), and once a change has settled (no
//! further change for [`SETTLE`], so an editor writing in several steps causes
//! one reload) reloads. Polling needs no dependency and works on every file
//! system, including bind mounts and network shares where inotify is silent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Reloader;

/// How long the files must stay unchanged before a reload starts.
pub const SETTLE: Duration = Duration::from_millis(250);

/// What is compared between polls: the config's content (its hash) and each
/// plugin file's size and modification time.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint(Vec<(PathBuf, Option<Stamp>)>);

#[derive(Debug, PartialEq, Eq)]
enum Stamp {
    Content([u8; 32]),
    Meta(u64, Option<SystemTime>),
}

fn fingerprint(files: &[PathBuf], config: &Path) -> Fingerprint {
    Fingerprint(
        files
            .iter()
            .map(|f| {
                let stamp = if f == config {
                    std::fs::read(f)
                        .ok()
                        .map(|bytes| Stamp::Content(crate::admin::sha256(&bytes)))
                } else {
                    std::fs::metadata(f)
                        .ok()
                        .map(|m| Stamp::Meta(m.len(), m.modified().ok()))
                };
                (f.clone(), stamp)
            })
            .collect(),
    )
}

/// Watches until `stop` turns true.
pub async fn run(
    reloader: Arc<Reloader>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let config = reloader.config_path.clone();
    let mut last = fingerprint(&reloader.watched_files(), &config);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let mut seen = fingerprint(&reloader.watched_files(), &config);
        if seen == last {
            continue;
        }
        loop {
            tokio::time::sleep(SETTLE).await;
            let again = fingerprint(&reloader.watched_files(), &config);
            if again == seen {
                break;
            }
            seen = again;
        }
        let r = Arc::clone(&reloader);
        let _ = tokio::task::spawn_blocking(move || r.reload("file change")).await;
        // Compare the next poll with what was reloaded (a change made during
        // the reload is caught), unless the reload changed which files are watched.
        let files = reloader.watched_files();
        let same_files = files.iter().eq(seen.0.iter().map(|(f, _)| f));
        last = if same_files {
            seen
        } else {
            fingerprint(&files, &config)
        };
    }
}
