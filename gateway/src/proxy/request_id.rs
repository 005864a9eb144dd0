//! The request id: accepted from the client's `X-Request-Id` when it is sane,
//! otherwise generated. Assigned before routing so every response and log line
//! carries it; filters read it as the `request.id` property.

use http::HeaderValue;

/// Longest client-supplied id accepted.
pub const MAX_LEN: usize = 128;

/// The client's id if it is 1..=128 visible ASCII characters, else a new one.
pub fn accept_or_generate(client: Option<&HeaderValue>) -> String {
    if let Some(v) = client {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| c.is_ascii_graphic()) {
            // Checked ASCII above, so this cannot fail.
            if let Ok(s) = v.to_str() {
                return s.to_owned();
            }
        }
    }
    generate()
}

/// A random UUID (v4), hyphenated.
pub fn generate() -> String {
    let bytes: [u8; 16] = rand::random();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_client_ids_and_replaces_others() {
        let ok = HeaderValue::from_static("abc-123");
        assert_eq!(accept_or_generate(Some(&ok)), "abc-123");
        let long = HeaderValue::from_str(&"x".repeat(MAX_LEN + 1)).expect("header");
        assert_eq!(accept_or_generate(Some(&long)).len(), 36);
        let spaced = HeaderValue::from_static("a b");
        assert_ne!(accept_or_generate(Some(&spaced)), "a b");
        assert_ne!(generate(), generate());
    }
}
