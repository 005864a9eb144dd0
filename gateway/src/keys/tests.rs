//! The store on a real SQLite file and a real PostgreSQL database (its own, dropped after).

use std::time::Duration;

use sqlx::Connection;

use super::*;

async fn exercise(url: &str) {
    let store = KeyStore::open(url, new_cache()).await.expect("open");
    // A second node on the same database, with its own cache.
    let other = KeyStore::open(url, new_cache()).await.expect("open again");
    assert_eq!(other.cache().loaded_keys(), Some(0));

    let alice = store
        .create_consumer(NewConsumer {
            name: "alice".into(),
            tags: vec!["team:a".into()],
            group: Some("gold".into()),
        })
        .await
        .expect("create");
    let dup = store
        .create_consumer(NewConsumer {
            name: "alice".into(),
            ..NewConsumer::default()
        })
        .await;
    assert!(matches!(dup, Err(KeyStoreError::Conflict(_))), "{dup:?}");
    let bad = store
        .create_consumer(NewConsumer {
            name: "bad name".into(),
            ..NewConsumer::default()
        })
        .await;
    assert!(matches!(bad, Err(KeyStoreError::Invalid(_))), "{bad:?}");
    assert_eq!(store.consumer("alice").await.expect("by name").id, alice.id);
    assert_eq!(
        store.consumer(&alice.id).await.expect("by id").name,
        "alice"
    );
    assert!(matches!(
        store.consumer("bob").await,
        Err(KeyStoreError::NotFound(_))
    ));

    let (key, secret) = store
        .create_key(
            "alice",
            NewKeyRequest {
                scopes: vec!["read".into()],
                expires_at: None,
            },
        )
        .await
        .expect("key");
    let now = now_ms();
    let found = store.cache().lookup(&secret, now);
    assert_eq!(found.verdict, Verdict::Valid);
    let entry = found.entry.expect("entry");
    assert_eq!(
        (entry.consumer_name.as_str(), entry.group.as_deref()),
        ("alice", Some("gold"))
    );
    assert_eq!(entry.scopes, ["read"]);
    // A wrong secret with a real id is unknown, like garbage.
    let wrong = format!("{}0", &secret[..secret.len() - 1]);
    let wrong = if wrong == secret {
        format!("{}1", &secret[..secret.len() - 1])
    } else {
        wrong
    };
    assert_eq!(store.cache().lookup(&wrong, now).verdict, Verdict::Unknown);
    assert_eq!(store.cache().lookup("nope", now).verdict, Verdict::Unknown);
    // The other node sees the key after a refresh (what its poll does).
    assert!(other.refresh().await.expect("refresh"));
    assert!(!other.refresh().await.expect("refresh"), "nothing changed");
    assert_eq!(other.cache().lookup(&secret, now).verdict, Verdict::Valid);
    let listed = store.list_keys(&alice.id).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, key.id);
    assert!(
        !serde_json::to_string(&listed)
            .expect("json")
            .contains(&secret)
    );

    // Rotation: both valid during the grace period; the old one's expiry is its end.
    let (new_key, new_secret, old) = store
        .rotate_key(&key.id, Duration::from_secs(3600))
        .await
        .expect("rotate");
    assert_eq!(new_key.scopes, ["read"]);
    assert!(old.expires_at.is_some());
    let now = now_ms();
    assert_eq!(store.cache().lookup(&secret, now).verdict, Verdict::Valid);
    assert_eq!(
        store.cache().lookup(&new_secret, now).verdict,
        Verdict::Valid
    );
    let later = now + 3_601_000;
    assert_eq!(
        store.cache().lookup(&secret, later).verdict,
        Verdict::Expired
    );
    assert_eq!(
        store.cache().lookup(&new_secret, later).verdict,
        Verdict::Valid
    );

    // Revocation reaches the other node on its next refresh.
    other.refresh().await.expect("refresh");
    assert_eq!(
        other.cache().lookup(&new_secret, now).verdict,
        Verdict::Valid
    );
    let revoked = store.revoke_key(&new_key.id).await.expect("revoke");
    assert_eq!(revoked.status, "revoked");
    assert!(other.refresh().await.expect("refresh"));
    assert_eq!(
        other.cache().lookup(&new_secret, now_ms()).verdict,
        Verdict::Revoked
    );
    assert!(matches!(
        store.rotate_key(&new_key.id, Duration::ZERO).await,
        Err(KeyStoreError::Invalid(_))
    ));

    // Deleting the consumer removes its keys everywhere.
    store.delete_consumer("alice").await.expect("delete");
    other.refresh().await.expect("refresh");
    assert_eq!(other.cache().loaded_keys(), Some(0));
    assert!(matches!(
        store.key(&key.id).await,
        Err(KeyStoreError::NotFound(_))
    ));
    store.close().await;
    other.close().await;
}

#[tokio::test]
async fn the_store_works_on_a_sqlite_file_shared_by_two_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("sub/aistack.db").display());
    exercise(&url).await;
}

#[tokio::test]
async fn the_store_works_on_postgres_shared_by_two_nodes() {
    let server = "postgres://postgres@127.0.0.1:5432";
    let name = format!("aistack_keys_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let url = format!("{server}/{name}");
    let result = tokio::spawn(async move { exercise(&url).await }).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop database");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}

#[tokio::test]
async fn the_last_good_cache_survives_a_database_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("aistack.db").display());
    let store = KeyStore::open(&url, new_cache()).await.expect("open");
    store
        .create_consumer(NewConsumer {
            name: "frank".into(),
            ..NewConsumer::default()
        })
        .await
        .expect("consumer");
    let (_, key) = store
        .create_key("frank", NewKeyRequest::default())
        .await
        .expect("key");
    store.close().await; // every later query fails, as with a database that is down
    assert!(store.refresh().await.is_err());
    assert_eq!(store.cache().lookup(&key, now_ms()).verdict, Verdict::Valid);
}

#[tokio::test]
async fn a_database_down_at_start_leaves_the_store_unloaded_not_failed() {
    // Nothing listens on port 1: the store is made, its first load fails.
    let store = KeyStore::new("postgres://app:pw@127.0.0.1:1/aistack", new_cache())
        .expect("a store is made without connecting");
    let err = store.refresh().await.expect_err("nothing to load from");
    assert!(!err.to_string().contains("pw@"), "{err}");
    assert_eq!(
        store.cache().lookup("ak_x", now_ms()).verdict,
        Verdict::Unavailable
    );
    assert!(matches!(
        KeyStore::new("mysql://h/d", new_cache()),
        Err(KeyStoreError::Config(_))
    ));
}
