//! Argon2id password hashing, always off the async runtime (`spawn_blocking`): one hash
//! takes tens of milliseconds of CPU.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::error::ApiError;

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 8;
/// Longest accepted password, in bytes (bounds the hashing work a request can ask for).
pub const MAX_LEN: usize = 1024;

/// Hashes `password` into a PHC string (`$argon2id$v=19$…`) with a fresh salt.
pub async fn hash(password: String) -> Result<String, ApiError> {
    let joined = tokio::task::spawn_blocking(move || hash_blocking(&password)).await;
    joined
        .map_err(|e| ApiError::Internal(Box::new(e)))?
        .map_err(|e| ApiError::Internal(e.to_string().into()))
}

/// Whether `password` matches the PHC string `stored`. With `stored` `None` (no such
/// user) a dummy hash is checked anyway, so the answer takes as long either way.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    let joined = tokio::task::spawn_blocking(move || {
        let dummy = dummy_hash();
        let phc = stored.as_deref().unwrap_or(dummy);
        let matches = PasswordHash::new(phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        matches && stored.is_some()
    })
    .await;
    joined.map_err(|e| ApiError::Internal(Box::new(e)))
}

fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let salt = SaltString::encode_b64(&bytes)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("not a real password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() -> Result<(), ApiError> {
        let first = hash("correct horse".to_owned()).await?;
        let second = hash("correct horse".to_owned()).await?;
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert_ne!(first, second, "salted");
        assert!(verify("correct horse".to_owned(), Some(first.clone())).await?);
        assert!(!verify("wrong horse".to_owned(), Some(first)).await?);
        assert!(!verify("correct horse".to_owned(), None).await?);
        Ok(())
    }
}
