//! Tests of the collaboration API over real HTTP (each test's router served on a
//! loopback port, see `support.rs`), each case run against SQLite in a temp dir and
//! against PostgreSQL.
//!
//! Tests that need PostgreSQL (127.0.0.1:5432, user postgres, trust auth) have
//! `postgres` in their name, so the test command can skip them by name when no server
//! is running; they fail, never pass silently, when it is absent.

/// For each `case(app: TestApp)` async fn named, generates `case::sqlite` and
/// `case::postgres` tests running it on a fresh database of that dialect.
macro_rules! on_both_dialects {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                super::$case($crate::support::TestApp::sqlite().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$case($crate::support::TestApp::postgres().await).await;
            }
        }
    )+};
}

mod auth;
mod authz;
mod comments;
mod database;
mod errors;
mod file_comments;
mod files;
mod health;
mod listing;
mod notifications;
mod openapi;
mod organizations;
mod serve;
mod smtp_sink;
mod support;
mod tasks;
mod users;
