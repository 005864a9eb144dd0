//! Files: what an uploaded name may become, and how a `Range` header is read.
//!
//! An uploaded name is only metadata (objects are named by generated ids), but it is
//! shown to people and sent back in `Content-Disposition`, so it is cleaned: anything up
//! to the last `/` or `\` is dropped (no path survives), control characters (NUL
//! included) are removed, surrounding whitespace is trimmed, and a name that is then
//! empty, `.` or `..` is rejected. Unicode is kept as sent.

use super::ValidationError;

/// Longest accepted name, in characters (after cleaning).
pub const MAX_NAME_CHARS: usize = 255;

/// The stored form of an uploaded file name (field `name`).
///
/// # Errors
/// A [`ValidationError`] on `name` when nothing usable is left, or it is too long.
pub fn name(raw: &str) -> Result<String, ValidationError> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return Err(ValidationError::new(
            "name",
            "must name a file (not empty, not a path, not . or ..)",
        ));
    }
    if cleaned.chars().count() > MAX_NAME_CHARS {
        return Err(ValidationError::new(
            "name",
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(cleaned.to_owned())
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range (absent, not `bytes=`, several ranges, malformed): send it all.
    Full,
    /// Bytes `start..=end` (inclusive, within the body).
    Part {
        /// First byte.
        start: u64,
        /// Last byte.
        end: u64,
    },
    /// A well-formed single range that selects nothing of this body: 416.
    Unsatisfiable,
}

/// Reads one `bytes=` range (RFC 9110 §14.1.2) against a body of `len` bytes. Lists of
/// ranges and anything malformed are ignored (the whole body is sent), which the RFC
/// allows.
pub fn range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => RangeRequest::Full,
        },
        (start, "") => match number(start) {
            Some(start) if start < len => RangeRequest::Part {
                start,
                end: len - 1,
            },
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(start), Some(end)) if start > end => RangeRequest::Full,
            (Some(start), Some(_)) if start >= len => RangeRequest::Unsatisfiable,
            (Some(start), Some(end)) => RangeRequest::Part {
                start,
                end: end.min(len - 1),
            },
            _ => RangeRequest::Full,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(name("../../etc/passwd").as_deref(), Ok("passwd"));
        assert_eq!(
            name("C:\\Users\\x\\report.pdf").as_deref(),
            Ok("report.pdf")
        );
        assert_eq!(name("a\0b\u{7}c.txt").as_deref(), Ok("abc.txt"));
        assert_eq!(name("  résumé 日本.txt ").as_deref(), Ok("résumé 日本.txt"));
        for bad in ["", "..", "../", "a/..", ".", "\0", " / ", "dir/"] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
        assert!(name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(name(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(range(None, 10), Full);
        assert_eq!(range(Some("bytes=0-3"), 10), Part { start: 0, end: 3 });
        assert_eq!(range(Some("bytes=4-"), 10), Part { start: 4, end: 9 });
        assert_eq!(range(Some("bytes=-3"), 10), Part { start: 7, end: 9 });
        assert_eq!(range(Some("bytes=-30"), 10), Part { start: 0, end: 9 });
        assert_eq!(range(Some("bytes=5-100"), 10), Part { start: 5, end: 9 });
        assert_eq!(range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=10-12"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=0-"), 0), Unsatisfiable);
        for ignored in [
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=x-1",
            "bytes=3-1",
            "bytes=-",
        ] {
            assert_eq!(range(Some(ignored), 10), Full, "{ignored}");
        }
    }

    proptest! {
        #[test]
        fn cleaned_names_are_never_paths(raw in "\\PC{0,300}|[./\\\\\0a]{0,20}") {
            if let Ok(n) = name(&raw) {
                prop_assert!(!n.contains('/') && !n.contains('\\'));
                prop_assert!(!n.chars().any(char::is_control));
                prop_assert!(n != "." && n != ".." && !n.is_empty());
            }
        }

        #[test]
        fn parts_stay_inside_the_body(header in "bytes=[0-9]{0,3}-[0-9]{0,3}", len in 0u64..500) {
            if let RangeRequest::Part { start, end } = range(Some(&header), len) {
                prop_assert!(start <= end && end < len);
            }
        }
    }
}
