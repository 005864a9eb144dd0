//! The shape of an API key: `ak_<id>_<secret>`. `<id>` (16 hex digits, random) is public:
//! it names the key in listings and URLs, and lets a lookup find the one stored entry to
//! compare against. `<secret>` is 32 random bytes as 64 hex digits. Only the SHA-256 digest
//! of the whole key is stored: a key carries 256 random bits, so a fast hash is right (a
//! slow password hash protects guessable secrets; nothing about these is guessable, and
//! the lookup runs on every request).

use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "ak_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A freshly generated key: its public id and the full key (shown once).
#[derive(Debug)]
pub struct NewKey {
    pub id: String,
    pub key: String,
}

/// Generates a key from the OS randomness.
pub fn generate() -> NewKey {
    let mut rng = rand::rng();
    let mut id = [0u8; ID_HEX / 2];
    let mut secret = [0u8; SECRET_HEX / 2];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex(&id);
    let key = format!("{PREFIX}{id}_{}", hex(&secret));
    NewKey { id, key }
}

/// The public id of something shaped like a key, without judging the secret.
pub fn id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_ok = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_ok(id, ID_HEX) && hex_ok(secret, SECRET_HEX)).then_some(id)
}

/// Whether `id` has the shape of a key id (16 lowercase hex digits).
pub fn is_id(id: &str) -> bool {
    id.len() == ID_HEX && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What is stored of a key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equal-length inputs compared in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert_eq!(id_of(&a.key), Some(a.id.as_str()));
        assert!(is_id(&a.id));
        assert_eq!(a.key.len(), 3 + 16 + 1 + 64);
        assert_eq!(id_of("ak_0123"), None);
        assert_eq!(id_of(&a.key.replace("ak_", "xk_")), None);
        assert_eq!(id_of(&format!("{}z", &a.key[..a.key.len() - 1])), None);
        assert!(constant_time_eq(&digest(&a.key), &digest(&a.key)));
        assert!(!constant_time_eq(&digest(&a.key), &digest(&b.key)));
    }
}
