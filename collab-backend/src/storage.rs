//! File contents on the local filesystem, under the storage root
//! ([`BackendOptions::storage_root`](crate::BackendOptions)).
//!
//! Objects are named by generated ids (`objects/<2 hex>/<32 hex>`), never by an
//! uploaded name, so no name can reach outside the root. An upload streams into
//! `tmp/<id>.part` while its SHA-256 is computed and its first bytes are kept for
//! sniffing; it is then `fsync`ed, renamed into place and its directory `fsync`ed, and
//! only then does the caller write the metadata row. So an acknowledged upload survives
//! a crash; a crash before that leaves at most an unreferenced object or a `.part` file
//! (removed at the next start, see [`sweep_partial`]). Objects are never rewritten: a
//! restored version names the object of the version it restores.

use std::io;
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use uuid::Uuid;

/// Bytes kept from the start of an upload to sniff its content type.
const SNIFF_BYTES: usize = 8192;

/// How much more of a too-large body is read (and dropped) before answering 413, so a
/// client still sending a modest overshoot reads the answer instead of a reset.
const DRAIN_BYTES: u64 = 256 * 1024;

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The object's generated id.
    pub object_id: Uuid,
    /// Its length in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of its bytes.
    pub sha256: String,
    /// Sniffed from the bytes (never the client's word).
    pub content_type: String,
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The body went past the limit; nothing was kept.
    #[error("upload larger than {0} bytes")]
    TooLarge(u64),
    /// Reading the request body failed (the client went away or sent garbage).
    #[error("reading the upload failed")]
    Body(#[source] axum::Error),
    /// The filesystem failed.
    #[error("storing the upload failed")]
    Io(#[from] io::Error),
}

/// The local object store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

/// Removes a partial upload unless it was kept (also when the request is dropped midway).
struct PartGuard(Option<PathBuf>);

impl Drop for PartGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Storage {
    /// A store under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn object_path(&self, id: Uuid) -> PathBuf {
        let name = id.simple().to_string();
        self.root.join("objects").join(&name[..2]).join(name)
    }

    /// Streams `body` into a new object of at most `max` bytes, durable when this
    /// returns.
    ///
    /// # Errors
    /// [`WriteError::TooLarge`] past `max`, [`WriteError::Body`] when the body fails,
    /// [`WriteError::Io`] when the filesystem does; nothing is left behind in each case.
    pub async fn write(&self, body: Body, max: u64) -> Result<Stored, WriteError> {
        let object_id = Uuid::new_v4();
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let part = tmp_dir.join(format!("{}.part", object_id.simple()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .await?;
        let mut guard = PartGuard(Some(part.clone()));
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let mut size: u64 = 0;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk.map_err(WriteError::Body)?;
            size += chunk.len() as u64;
            if size > max {
                drain(&mut stream, DRAIN_BYTES).await;
                return Err(WriteError::TooLarge(max));
            }
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        let target = self.object_path(object_id);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::rename(&part, &target).await?;
        guard.0 = None;
        sync_dir(&dir).await?;
        Ok(Stored {
            object_id,
            size,
            sha256: hex::encode(hasher.finalize()),
            content_type: sniff(&head),
        })
    }

    /// Whether object `id` holds exactly `size` bytes hashing to `sha256`; reads it
    /// through once (never whole into memory).
    ///
    /// # Errors
    /// An I/O error, including a missing object.
    pub async fn verify(&self, id: Uuid, size: u64, sha256: &str) -> io::Result<bool> {
        let mut file = tokio::fs::File::open(self.object_path(id)).await?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 64 * 1024];
        let mut seen: u64 = 0;
        loop {
            let n = file.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            seen += n as u64;
            hasher.update(&buffer[..n]);
        }
        Ok(seen == size && hex::encode(hasher.finalize()) == sha256)
    }

    /// A body streaming bytes `start..=end` of object `id`.
    ///
    /// # Errors
    /// An I/O error opening or seeking the object.
    pub async fn read_range(&self, id: Uuid, start: u64, end: u64) -> io::Result<Body> {
        let mut file = tokio::fs::File::open(self.object_path(id)).await?;
        file.seek(io::SeekFrom::Start(start)).await?;
        let limited = file.take(end + 1 - start);
        Ok(Body::from_stream(tokio_util::io::ReaderStream::new(
            limited,
        )))
    }

    /// Removes object `id`; a missing object is not an error.
    ///
    /// # Errors
    /// Any other I/O error.
    pub async fn remove(&self, id: Uuid) -> io::Result<()> {
        match tokio::fs::remove_file(self.object_path(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Removes `.part` files a crash left in `root/tmp` (uploads never acknowledged).
pub async fn sweep_partial(root: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(root.join("tmp")).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry.path().extension().is_some_and(|e| e == "part") {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

/// Reads and drops up to `limit` more bytes of a rejected body.
async fn drain(
    mut stream: impl futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
    limit: u64,
) {
    let mut dropped: u64 = 0;
    while dropped < limit {
        match stream.next().await {
            Some(Ok(chunk)) => dropped += chunk.len() as u64,
            _ => break,
        }
    }
}

/// Makes a rename inside `dir` durable.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

/// The content type of bytes starting with `head`: a known signature (the `infer`
/// crate), else UTF-8 text without NULs, else `application/octet-stream`.
pub fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut inside a multi-byte character at the end of the sniffed prefix.
        Err(e) => e.error_len().is_none() && head.len() >= SNIFF_BYTES,
    };
    if !head.is_empty() && text && !head.contains(&0) {
        "text/plain; charset=utf-8".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn sniffs_from_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff("héllo".as_bytes()), "text/plain; charset=utf-8");
        assert_eq!(sniff(b"a\0b"), "application/octet-stream");
        assert_eq!(sniff(b"\xff\xfe\xfd"), "application/octet-stream");
        assert_eq!(sniff(b""), "application/octet-stream");
    }
}
