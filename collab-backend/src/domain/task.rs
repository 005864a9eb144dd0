//! Task fields and their rules.

use chrono::NaiveDate;

use super::ValidationError;

/// Task priorities, lowest first.
pub const PRIORITIES: &[&str] = &["low", "medium", "high", "urgent"];
/// Priority of a task created without one.
pub const DEFAULT_PRIORITY: &str = "medium";
/// Most users one task can be assigned to.
pub const MAX_ASSIGNEES: usize = 20;
/// Largest estimate, in minutes (about two years of working time).
pub const MAX_ESTIMATE_MINUTES: i64 = 1_000_000;

/// A title: trimmed, 1..=500 characters.
pub fn title(value: &str) -> Result<String, ValidationError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 500 {
        return Err(ValidationError::new("title", "must be 1..=500 characters"));
    }
    Ok(value.to_owned())
}

/// A description: at most 20,000 characters (may be empty).
pub fn description(value: &str) -> Result<String, ValidationError> {
    if value.chars().count() > 20_000 {
        return Err(ValidationError::new(
            "description",
            "must be at most 20000 characters",
        ));
    }
    Ok(value.to_owned())
}

/// One of [`PRIORITIES`].
pub fn priority(value: &str) -> Result<String, ValidationError> {
    if PRIORITIES.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(ValidationError::new(
            "priority",
            "must be one of low, medium, high, urgent",
        ))
    }
}

/// A percentage 0..=100.
pub fn progress(value: i64) -> Result<i64, ValidationError> {
    if (0..=100).contains(&value) {
        Ok(value)
    } else {
        Err(ValidationError::new(
            "progress",
            "must be an integer from 0 to 100",
        ))
    }
}

/// Minutes, 0..=[`MAX_ESTIMATE_MINUTES`].
pub fn estimate(value: i64) -> Result<i64, ValidationError> {
    if (0..=MAX_ESTIMATE_MINUTES).contains(&value) {
        Ok(value)
    } else {
        Err(ValidationError::new(
            "estimate_minutes",
            format!("must be from 0 to {MAX_ESTIMATE_MINUTES}"),
        ))
    }
}

/// A calendar date `YYYY-MM-DD`, returned in that canonical form (so text order is date
/// order).
pub fn due_date(field: &'static str, value: &str) -> Result<String, ValidationError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|d| d.format("%Y-%m-%d").to_string() == value)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .ok_or_else(|| ValidationError::new(field, "must be a date YYYY-MM-DD"))
}

/// `status` must be one of the workspace's `statuses`.
pub fn status(value: &str, statuses: &[String]) -> Result<String, ValidationError> {
    if statuses.iter().any(|s| s == value) {
        Ok(value.to_owned())
    } else {
        Err(ValidationError::new(
            "status",
            format!(
                "must be one of the workspace's statuses: {}",
                statuses.join(", ")
            ),
        ))
    }
}

/// Whether `status` is the workflow's last ("done") status.
pub fn is_done(status: &str, statuses: &[String]) -> bool {
    statuses.last().is_some_and(|last| last == status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bounds() {
        assert_eq!(progress(0), Ok(0));
        assert_eq!(progress(100), Ok(100));
        for bad in [-1, 101, i64::MAX] {
            assert_eq!(progress(bad).map_err(|e| e.field), Err("progress"));
        }
    }

    #[test]
    fn dates_are_canonical() {
        assert_eq!(
            due_date("due_date", "2025-02-28").as_deref(),
            Ok("2025-02-28")
        );
        for bad in [
            "2025-2-28",
            "2025-02-30",
            "28.02.2025",
            "",
            "2025-02-28T00:00:00Z",
        ] {
            assert!(due_date("due_date", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn done_is_the_last_status() {
        let statuses = vec!["todo".to_owned(), "done".to_owned()];
        assert!(is_done("done", &statuses));
        assert!(!is_done("todo", &statuses));
        assert!(status("doing", &statuses).is_err());
    }
}
