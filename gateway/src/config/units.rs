//! Quantities as users write them: durations (`500ms`, `2s`, `1m 30s`) and byte sizes
//! (`64MiB`, `512KiB`, or a plain number of bytes). [`HumanDuration`] and [`ByteSize`]
//! deserialize inside `Spanned<…>`, so that validation can name where a value stands.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// `"2s"`, `"150ms"`, `"1m 30s"` → `Duration`, with a message saying what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration `{text}` ({e}); expected e.g. `500ms`, `2s`, `1m`"))
}

/// A duration written as text (see [`parse_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(HumanDuration)
            .map_err(de::Error::custom)
    }
}

/// The binary units a size may carry, case-insensitively.
const UNITS: [(&str, u64); 4] = [
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
];

/// `"64MiB"`, `"512 KiB"`, `"1GiB"`, `"65536"` (bytes) → bytes. Units are binary and
/// spelled out (`MB` is refused rather than guessed).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier = match unit.as_str() {
        "" => Some(1),
        unit => UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m),
    };
    let expected = "expected a number of bytes or one with B, KiB, MiB or GiB, e.g. `64MiB`";
    let (Ok(number), Some(multiplier)) = (number.parse::<u64>(), multiplier) else {
        return Err(format!("invalid size `{text}`; {expected}"));
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// A size in bytes, written as a number or as text (see [`parse_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as `64MiB`, `512KiB` or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size `{v}`: it is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("0"), Ok(0), "a range is validation's business");
        for bad in ["", "MiB", "64MB", "64 M", "-1MiB", "1.5MiB", "64MiBs"] {
            let error = parse_size(bad).expect_err(bad);
            assert!(error.starts_with("invalid size"), "{bad}: {error}");
        }
        assert_eq!(
            parse_size("99999999999999999GiB"),
            Err("size `99999999999999999GiB` is too large".to_owned())
        );
    }

    #[test]
    fn durations_name_what_is_expected() {
        assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
        let error = parse_duration("fast").expect_err("not a duration");
        assert!(error.contains("expected e.g. `500ms`"), "{error}");
    }
}
