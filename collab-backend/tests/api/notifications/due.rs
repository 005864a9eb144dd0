//! `task.due_soon`: the served backend's periodic scan reminds the assignees (or the
//! creator of an unassigned task) of open tasks due within the window, once per task and
//! due date, whoever scans again; done and far-off tasks remind nobody.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::Utc;
use serde_json::{Value, json};

use super::served::{DEADLINE, Served, items};
use crate::support::TestApp;
use crate::tasks::{events_of, id, new_task, world};
use crate::users::Person;

on_both_dialects!(due_dates_remind_once_per_task_and_date);

const WINDOW: Duration = Duration::from_secs(48 * 3600);

fn date_in(days: i64) -> String {
    (Utc::now() + chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

/// `who`'s `task.due_soon` notifications, newest first.
async fn reminders(served: &Served, who: &Person) -> Vec<Value> {
    items(
        &served
            .get(who, "/api/v1/notifications?type=task.due_soon")
            .await,
    )
}

/// Waits until `who` has `count` reminders; only the background scan makes them.
async fn await_reminders(served: &Served, who: &Person, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = reminders(served, who).await;
        if found.len() >= count || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn due_soon_events(events: &[(String, String)]) -> usize {
    events.iter().filter(|(k, _)| k == "task.due_soon").count()
}

async fn due_dates_remind_once_per_task_and_date(mut app: TestApp) {
    app.options.due_soon_scan = Duration::from_millis(50);
    app.options.due_soon_window = WINDOW;
    let w = world(&app).await;
    // Tomorrow's end is within 48 h at any time of day (and still is if the date turns
    // during the test).
    let tomorrow = date_in(1);
    let body = json!({ "title": "ship it", "due_date": tomorrow, "assignees": [w.gus.id] });
    let assigned = new_task(&app, &w.mia, &w.ws, body).await;
    let body = json!({ "title": "mine", "due_date": tomorrow });
    let unassigned = new_task(&app, &w.mia, &w.ws, body).await;
    for body in [
        json!({ "title": "far", "due_date": date_in(10), "assignees": [w.gus.id] }),
        json!({ "title": "past", "due_date": date_in(-2), "assignees": [w.gus.id] }),
        json!({ "title": "done", "status": "done", "due_date": tomorrow,
                "assignees": [w.gus.id] }),
    ] {
        new_task(&app, &w.mia, &w.ws, body).await;
    }

    let served = Served::start(&app).await;
    let gus = await_reminders(&served, &w.gus, 1).await;
    assert_eq!(gus.len(), 1, "{gus:?}");
    let n = &gus[0];
    assert_eq!(n["resource_type"], "task");
    assert_eq!(n["resource_id"], assigned["id"]);
    assert_eq!(n["link"], format!("/api/v1/tasks/{}", id(&assigned)));
    assert_eq!(n["actor_id"], Value::Null);
    assert_eq!(
        n["payload"],
        json!({ "task_id": assigned["id"], "title": "ship it", "due_at": tomorrow })
    );
    // Nobody assigned: the creator is reminded.
    let mia = await_reminders(&served, &w.mia, 1).await;
    assert_eq!(mia.len(), 1, "{mia:?}");
    assert_eq!(mia[0]["resource_id"], unassigned["id"]);

    // Scans by anyone else (another node, a restart), even at once, remind nobody again.
    let (a, b) = tokio::join!(
        aistack_collab::notifications::scan_due_dates(&app.db, WINDOW),
        aistack_collab::notifications::scan_due_dates(&app.db, WINDOW),
    );
    assert_eq!((a.expect("scan"), b.expect("scan")), (0, 0));
    assert_eq!(due_soon_events(&events_of(&app, &w.gus).await), 1);
    assert_eq!(due_soon_events(&events_of(&app, &w.mia).await), 1);

    // A new due date is a new reminder; moving it back is not.
    let move_to = |date: String| {
        let (app, w, task) = (&app, &w, id(&assigned));
        async move {
            let moved = app
                .call_with(
                    &w.mia.token,
                    Method::PATCH,
                    &format!("/api/v1/tasks/{task}"),
                    Some(json!({ "due_date": date })),
                    &[("if-match", "*")],
                )
                .await;
            assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
        }
    };
    let today = date_in(0);
    move_to(today.clone()).await;
    let gus = await_reminders(&served, &w.gus, 2).await;
    assert_eq!(gus.len(), 2, "{gus:?}");
    assert_eq!(gus[0]["payload"]["due_at"], today);
    served.stop().await;
    move_to(tomorrow).await;
    assert_eq!(
        aistack_collab::notifications::scan_due_dates(&app.db, WINDOW)
            .await
            .expect("scan"),
        0
    );
    assert_eq!(due_soon_events(&events_of(&app, &w.gus).await), 2);
}
