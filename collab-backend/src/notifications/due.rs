//! The `task.due_soon` producer: a periodic scan that reminds the people responsible for
//! an open task that its due date is near.
//!
//! A due date is a calendar date, and a task is due at the **end** of it (UTC). A task is
//! due soon from `window` before that moment until it; each scan (every `interval`)
//! queues one `task.due_soon` event per recipient for each such task that is not done
//! (its status is not the workspace's last) and has no reminder for its due date yet.
//! The reminder row (`task_due_reminders`, primary key task and due date) is written in
//! the transaction that queues the events, so a task is reminded once per due date
//! across restarts and across nodes scanning one database; a task whose date moves is
//! reminded again for the new date. Overdue tasks are not reminded.
//!
//! Recipients: the task's assignees, or its creator when nobody is assigned; only those
//! who can still read the workspace. The event has no actor (`actor_id` null) and the
//! payload `{"task_id", "title", "due_at"}` (`due_at` the due date, `YYYY-MM-DD`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::hub::Hub;
use crate::Db;
use crate::authz;
use crate::domain::task::is_done;
use crate::outbox::{NewEvent, kind};
use crate::store::reminders::Unreminded;
use crate::store::{self, StoreError};

/// Tasks read per query.
const BATCH: u32 = 100;

/// Scans every `interval` until the task is aborted, waking the dispatcher when a scan
/// queued events.
pub(crate) async fn run(db: Db, hub: Hub, interval: Duration, window: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match scan(&db, Utc::now(), window).await {
            Ok(0) => {}
            Ok(_) => hub.wake(),
            Err(e) => tracing::warn!(error = %e, "due-date scan failed; will retry"),
        }
    }
}

/// The inclusive range of due dates (`YYYY-MM-DD`) that are due soon at `now`: from
/// today (a task due today is due at the end of it) to the last date whose end is at
/// most `window` away.
pub(crate) fn due_range(now: DateTime<Utc>, window: Duration) -> (String, String) {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let first = now.date_naive();
    let last = now
        .checked_add_signed(window)
        .and_then(|end| end.checked_sub_signed(chrono::Duration::days(1)))
        .map_or(chrono::NaiveDate::MAX, |end| end.date_naive());
    let format = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    // Years past 9999 would not sort as text: no due date is that late.
    let last = last.min(chrono::NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(last));
    (format(first), format(last))
}

/// One scan at `now`: returns how many tasks it reminded.
///
/// # Errors
/// A database failure (tasks reminded before it stay reminded).
pub(crate) async fn scan(
    db: &Db,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<usize, StoreError> {
    let (first, last) = due_range(now, window);
    if last < first {
        return Ok(0);
    }
    let mut reminded = 0;
    let mut after = None;
    loop {
        let tasks = store::reminders::unreminded(db, &first, &last, after, BATCH).await?;
        for task in &tasks {
            if remind(db, task).await? {
                reminded += 1;
            }
        }
        match tasks.last() {
            Some(task) if tasks.len() == BATCH as usize => after = Some(task.task_id),
            _ => return Ok(reminded),
        }
    }
}

/// Queues the reminder of one task; false when it is done, nobody can be told, or
/// another pass got there first.
async fn remind(db: &Db, task: &Unreminded) -> Result<bool, StoreError> {
    if is_done(&task.status, &task.statuses) {
        return Ok(false);
    }
    let candidates = if task.assignees.is_empty() {
        vec![task.created_by]
    } else {
        task.assignees.clone()
    };
    let mut recipients: Vec<Uuid> = Vec::new();
    for user in candidates {
        if authz::can_read_workspace(db, user, task.org_id, task.workspace_id).await? {
            recipients.push(user);
        }
    }
    if recipients.is_empty() {
        return Ok(false);
    }
    let mut tx = db.pool().begin().await?;
    if !store::reminders::claim(&mut tx, task.task_id, &task.due_date).await? {
        return Ok(false);
    }
    let payload = json!({
        "task_id": task.task_id,
        "title": task.title,
        "due_at": task.due_date,
    });
    for recipient_id in recipients {
        let event = NewEvent {
            org_id: task.org_id,
            workspace_id: task.workspace_id,
            kind: kind::TASK_DUE_SOON,
            recipient_id,
            actor_id: None,
            resource_type: "task",
            resource_id: task.task_id,
            payload: payload.clone(),
        };
        store::events::enqueue(&mut tx, std::slice::from_ref(&event)).await?;
    }
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn due_soon_means_the_end_of_the_due_date_is_within_the_window() {
        let day = Duration::from_secs(24 * 3600);
        // 24 h: only today's tasks (due at midnight ahead) are within a day.
        let r = due_range(at("2026-12-04T07:00:00Z"), day);
        assert_eq!(r, ("2026-12-04".to_owned(), "2026-12-04".to_owned()));
        // 48 h at 07:00: today and tomorrow; at 00:00 exactly, tomorrow's end is 48 h away.
        let r = due_range(at("2026-12-04T07:00:00Z"), 2 * day);
        assert_eq!(r, ("2026-12-04".to_owned(), "2026-12-05".to_owned()));
        let r = due_range(at("2026-12-04T00:00:00Z"), 2 * day);
        assert_eq!(r, ("2026-12-04".to_owned(), "2026-12-05".to_owned()));
        // Under a day: nothing until the due date starts, then today.
        let r = due_range(at("2026-12-04T07:00:00Z"), Duration::from_secs(3600));
        assert_eq!(r, ("2026-12-04".to_owned(), "2026-12-03".to_owned()));
        assert!(r.1 < r.0);
        // Absurd windows saturate rather than panic.
        let r = due_range(at("2026-12-04T07:00:00Z"), Duration::MAX);
        assert_eq!(r, ("2026-12-04".to_owned(), "9999-12-31".to_owned()));
    }
}
