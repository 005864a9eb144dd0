//! Timestamps as stored and served: RFC 3339, UTC, always six fractional digits
//! (`2025-06-01T12:00:00.123456Z`). A fixed width means text order is time order in
//! both dialects, and what `POST` returns is byte for byte what a later `GET` reads.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, truncated to the microsecond precision we store.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The stored and served text form.
pub fn format(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a stored timestamp.
pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_fixed_width() -> Result<(), chrono::ParseError> {
        let at = now();
        let text = format(at);
        assert_eq!(text.len(), "2025-06-01T12:00:00.123456Z".len());
        assert_eq!(parse(&text)?, at);
        Ok(())
    }
}
