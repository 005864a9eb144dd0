//! Organizations: the tenant every other resource will belong to.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ValidationError;

/// Longest name, in characters (not bytes).
pub const NAME_MAX_CHARS: usize = 200;
/// Longest slug, in bytes (slugs are ASCII).
pub const SLUG_MAX_LEN: usize = 63;

/// A stored organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// UUID v7: time-ordered, so id order is creation order.
    pub id: Uuid,
    /// Display name, 1..=200 characters, trimmed.
    pub name: String,
    /// URL-safe unique handle, `^[a-z0-9][a-z0-9-]{0,62}$`.
    pub slug: String,
    /// When it was created (microsecond precision).
    pub created_at: DateTime<Utc>,
}

/// A validated request to create an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrganization {
    name: String,
    slug: String,
}

impl NewOrganization {
    /// Validates `name` (trimmed; 1..=200 characters, not blank) and `slug` (or derives
    /// one from the name when absent).
    ///
    /// # Errors
    /// A [`ValidationError`] naming `name` or `slug`.
    pub fn parse(name: &str, slug: Option<&str>) -> Result<Self, ValidationError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ValidationError::new("name", "must not be blank"));
        }
        if name.chars().count() > NAME_MAX_CHARS {
            let message = format!("must be at most {NAME_MAX_CHARS} characters");
            return Err(ValidationError::new("name", message));
        }
        let slug = match slug {
            Some(slug) if is_valid_slug(slug) => slug.to_owned(),
            Some(_) => {
                let message = "must match ^[a-z0-9][a-z0-9-]{0,62}$ (lowercase letters, \
                               digits and hyphens, starting with a letter or digit)";
                return Err(ValidationError::new("slug", message));
            }
            None => derive_slug(name).ok_or_else(|| {
                let message = "cannot be derived from the name (no ASCII letters or digits); \
                               provide one";
                ValidationError::new("slug", message)
            })?,
        };
        Ok(Self {
            name: name.to_owned(),
            slug,
        })
    }

    /// The validated, trimmed name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The validated or derived slug.
    pub fn slug(&self) -> &str {
        &self.slug
    }
}

/// `^[a-z0-9][a-z0-9-]{0,62}$`.
pub fn is_valid_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    matches!(bytes.first(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.len() <= SLUG_MAX_LEN
        && bytes.iter().all(allowed)
}

/// Lowercases `name`, turns every run of other characters into one hyphen, trims
/// hyphens and cuts to 63 bytes. `None` when nothing usable is left ("!!!", "团队").
pub fn derive_slug(name: &str) -> Option<String> {
    let mut slug = String::with_capacity(name.len().min(SLUG_MAX_LEN));
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= SLUG_MAX_LEN {
            break;
        }
    }
    slug.truncate(SLUG_MAX_LEN);
    let slug = slug.trim_end_matches('-');
    (!slug.is_empty()).then(|| slug.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rules() {
        for ok in ["a", "0", "acme", "acme-corp", "a-", &"a".repeat(63)] {
            assert!(is_valid_slug(ok), "{ok:?} should be valid");
        }
        for bad in [
            "",
            "-a",
            "Acme",
            "acme corp",
            "acme_corp",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_slug(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(derive_slug("Acme Corp").as_deref(), Some("acme-corp"));
        assert_eq!(
            derive_slug("  --Hello,   World!! ").as_deref(),
            Some("hello-world")
        );
        assert_eq!(derive_slug("Café 2").as_deref(), Some("caf-2"));
        assert_eq!(derive_slug("!!!"), None);
        assert_eq!(derive_slug("团队"), None);
        let long = derive_slug(&"ab ".repeat(100)).unwrap_or_default();
        assert!(
            long.len() <= SLUG_MAX_LEN && is_valid_slug(&long),
            "{long:?}"
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        let ok = NewOrganization::parse("  Acme  ", None);
        assert_eq!(ok.as_ref().map(NewOrganization::name), Ok("Acme"));
        assert_eq!(ok.as_ref().map(NewOrganization::slug), Ok("acme"));
        assert!(NewOrganization::parse(&"é".repeat(NAME_MAX_CHARS), None).is_err()); // no slug
        assert!(NewOrganization::parse(&"é".repeat(NAME_MAX_CHARS), Some("e")).is_ok());
        let too_long = NewOrganization::parse(&"a".repeat(NAME_MAX_CHARS + 1), None);
        assert_eq!(too_long.map_err(|e| e.field), Err("name"));
        assert_eq!(
            NewOrganization::parse(" \t\n", None).map_err(|e| e.field),
            Err("name")
        );
        assert_eq!(
            NewOrganization::parse("A", Some("B")).map_err(|e| e.field),
            Err("slug")
        );
    }
}
