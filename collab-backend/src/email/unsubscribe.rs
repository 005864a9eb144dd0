//! Signed unsubscribe links: `…/api/v1/email/unsubscribe?u=<user>&c=<category>&v=<key
//! version>&s=<signature>`, the signature an HMAC-SHA256 over the user id, the category
//! and the key version under that version's server secret. Verifying is constant-time
//! (`Mac::verify_slice`); changing any part — another user, another category, a key
//! version nobody holds — fails.
//!
//! Categories: a notification kind (`mention`, `task.assigned`, …) turns that kind's
//! emails off; `digest` turns email off altogether (email mode `off`).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::options::UnsubscribeKey;

/// The category of digest emails.
pub const DIGEST: &str = "digest";

/// What a valid link unsubscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Whose email.
    pub user_id: Uuid,
    /// A notification kind, or [`DIGEST`].
    pub category: String,
}

fn mac(key: &UnsubscribeKey, user_id: Uuid, category: &str) -> Hmac<Sha256> {
    // Any key length is valid for HMAC; `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    // Length-prefixed fields: no two (user, category, version) triples share a message.
    for field in [
        user_id.to_string().as_bytes(),
        category.as_bytes(),
        key.version.to_string().as_bytes(),
    ] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac
}

/// The query string (`u=…&c=…&v=…&s=…`) of the link for `user_id` and `category`,
/// signed with the first key.
pub fn query(keys: &[UnsubscribeKey], user_id: Uuid, category: &str) -> String {
    let Some(key) = keys.first() else {
        return String::new();
    };
    let signature = hex::encode(mac(key, user_id, category).finalize().into_bytes());
    format!("u={user_id}&c={category}&v={}&s={signature}", key.version)
}

/// The link's parameters, as received.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct LinkParams {
    /// The user id.
    pub u: Option<String>,
    /// The category.
    pub c: Option<String>,
    /// The key version.
    pub v: Option<String>,
    /// The hex signature.
    pub s: Option<String>,
}

/// What the link `params` unsubscribes, when its signature verifies under the key it
/// names and the category is known (`known` lists the notification kinds).
pub fn verify(keys: &[UnsubscribeKey], params: &LinkParams, known: &[&str]) -> Option<Unsubscribe> {
    let user_id = Uuid::parse_str(params.u.as_deref()?).ok()?;
    let category = params.c.as_deref()?;
    if category != DIGEST && !known.contains(&category) {
        return None;
    }
    let version: u32 = params.v.as_deref()?.parse().ok()?;
    let signature = hex::decode(params.s.as_deref()?).ok()?;
    let key = keys.iter().find(|k| k.version == version)?;
    mac(key, user_id, category)
        .verify_slice(&signature)
        .ok()
        .map(|()| Unsubscribe {
            user_id,
            category: category.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> LinkParams {
        let mut p = LinkParams::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = Some(v.to_owned());
            match k {
                "u" => p.u = v,
                "c" => p.c = v,
                "v" => p.v = v,
                "s" => p.s = v,
                _ => {}
            }
        }
        p
    }

    fn key(version: u32, secret: &str) -> UnsubscribeKey {
        UnsubscribeKey {
            version,
            secret: secret.as_bytes().to_vec(),
        }
    }

    #[test]
    fn signed_links_verify_and_tampered_ones_do_not() {
        let keys = [
            key(2, "new secret, 16+ bytes"),
            key(1, "old secret, 16+ bytes"),
        ];
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let link = query(&keys, a, "mention");
        let good = verify(&keys, &params(&link), &["mention", "task.assigned"]);
        assert_eq!(
            good,
            Some(Unsubscribe {
                user_id: a,
                category: "mention".into()
            })
        );
        let kinds = ["mention", "task.assigned"];
        let other_user = link.replace(&a.to_string(), &b.to_string());
        assert_eq!(verify(&keys, &params(&other_user), &kinds), None);
        let other_kind = link.replace("c=mention", "c=task.assigned");
        assert_eq!(verify(&keys, &params(&other_kind), &kinds), None);
        let other_version = link.replace("v=2", "v=1");
        assert_eq!(verify(&keys, &params(&other_version), &kinds), None);
        // Signed by the old key: still valid while it is listed, not after.
        let old = query(&keys[1..], a, "mention");
        assert!(verify(&keys, &params(&old), &kinds).is_some());
        assert_eq!(verify(&keys[..1], &params(&old), &kinds), None);
        let mut flipped = link.clone();
        let last = flipped.pop().map(|c| if c == '0' { '1' } else { '0' });
        flipped.extend(last);
        assert_eq!(verify(&keys, &params(&flipped), &kinds), None);
        assert_eq!(
            verify(&keys, &params("u=x&c=mention&v=2&s=00"), &kinds),
            None
        );
        assert_eq!(verify(&keys, &LinkParams::default(), &kinds), None);
    }
}
