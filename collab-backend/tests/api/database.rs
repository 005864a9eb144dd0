//! `Db::connect`: URLs, SQLite file settings, and the migrations table.

use aistack_collab::{Db, DbError, Dialect};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};

use crate::support::{Storage, TestApp};

on_both_dialects!(migrations_are_recorded_in_their_own_table);

async fn migrations_are_recorded_in_their_own_table(app: TestApp) {
    let tables = match app.db.dialect() {
        Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        Dialect::Postgres => {
            "SELECT tablename::text AS name FROM pg_tables \
             WHERE schemaname = current_schema() ORDER BY tablename"
        }
    };
    let names = table_names(&app, tables).await;
    assert!(
        names.iter().any(|n| n == "_aistack_collab_migrations"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "organizations"), "{names:?}");
    assert!(!names.iter().any(|n| n == "_sqlx_migrations"), "{names:?}");
}

/// Reads table names over a separate connection of the right driver.
async fn table_names(app: &TestApp, sql: &'static str) -> Vec<String> {
    match &app.storage {
        Storage::Sqlite(_) => {
            let mut conn = SqliteConnection::connect(&app.url).await.expect("connect");
            sqlx::query(sql)
                .fetch_all(&mut conn)
                .await
                .expect("list tables")
                .iter()
                .map(|row| row.get::<String, _>("name"))
                .collect()
        }
        Storage::Postgres(_) => {
            let mut conn = sqlx::postgres::PgConnection::connect(&app.url)
                .await
                .expect("connect");
            sqlx::query(sql)
                .fetch_all(&mut conn)
                .await
                .expect("list tables")
                .iter()
                .map(|row| row.get::<String, _>("name"))
                .collect()
        }
    }
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode_with_its_directories() {
    let app = TestApp::sqlite().await;
    let Storage::Sqlite(dir) = &app.storage else {
        unreachable!("a SQLite app has SQLite storage")
    };
    let file = dir.path().join("nested/data/collab.db");
    assert!(file.is_file(), "{} not created", file.display());
    let mut conn = SqliteConnection::connect(&app.url).await.expect("connect");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn unsupported_urls_are_rejected() {
    for url in ["mysql://root:secret@localhost/db", "collab.db", "http://x"] {
        match Db::connect(url).await {
            Err(error @ DbError::UnsupportedUrl { .. }) => {
                assert!(!error.to_string().contains("secret"), "{error}");
            }
            other => panic!("{url}: expected UnsupportedUrl, got {other:?}"),
        }
    }
    let bad_param = Db::connect("sqlite://collab.db?nonsense=1").await;
    assert!(
        matches!(bad_param, Err(DbError::InvalidSqliteUrl(_))),
        "{bad_param:?}"
    );
}

#[tokio::test]
async fn sqlite_directory_that_cannot_be_created_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").expect("write");
    let url = format!("sqlite://{}/sub/collab.db", blocker.display());
    let result = Db::connect(&url).await;
    assert!(
        matches!(result, Err(DbError::CreateDir { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn postgres_connection_failure_is_a_connect_error() {
    // A database name nobody created.
    let url = format!(
        "{}/aistack_collab_missing_db",
        crate::support::POSTGRES_SERVER
    );
    let result = Db::connect(&url).await;
    assert!(
        matches!(
            result,
            Err(DbError::Connect {
                dialect: Dialect::Postgres,
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn sqlite_in_memory_url_works() {
    let db = Db::connect("sqlite::memory:")
        .await
        .expect("connect in memory");
    assert_eq!(db.dialect(), Dialect::Sqlite);
    db.close().await;
}
