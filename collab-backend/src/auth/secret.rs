//! Opaque bearer tokens: 32 random bytes, hex-encoded behind a prefix that says the
//! kind (`aist_s_` session, `aist_p_` personal). Only their SHA-256 is stored, so a
//! database leak reveals no usable token; lookups go by hash, so no constant-time
//! comparison is needed.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of session tokens (issued by sign-in, expiring).
pub const SESSION_PREFIX: &str = "aist_s_";
/// Prefix of personal API tokens (created by the user, optional expiry).
pub const PERSONAL_PREFIX: &str = "aist_p_";

/// A fresh token with `prefix`.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of `token`: lowercase hex SHA-256.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate(SESSION_PREFIX);
        let b = generate(SESSION_PREFIX);
        assert_ne!(a, b);
        assert_eq!(a.len(), SESSION_PREFIX.len() + 64);
        assert_eq!(hash(&a).len(), 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }
}
