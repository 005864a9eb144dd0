//! The admin API's consumers and API keys (the key store, `crate::keys`):
//!
//! | method and path | what |
//! | --- | --- |
//! | `POST /consumers` | `{name, tags?, group?}` → 201 the consumer; 409 when the name is taken |
//! | `GET /consumers` | `{"consumers": […]}` |
//! | `GET /consumers/{id or name}` | the consumer |
//! | `DELETE /consumers/{id or name}` | 204; its keys go with it |
//! | `POST /consumers/{id or name}/keys` | `{scopes?, expires_at? (RFC 3339) or expires_in? ("30d")}` → 201 the key's record plus `key`, the key itself: this response is the only place it appears |
//! | `GET /consumers/{id or name}/keys` | `{"keys": […]}`, never a secret |
//! | `GET /keys/{id}` | the key's record |
//! | `POST /keys/{id}/revoke` (or `DELETE /keys/{id}`) | the key's record, revoked now |
//! | `POST /keys/{id}/rotate` | `{grace?}` (`"1h"`) → 201 a new key (same consumer, scopes and expiry) plus `key`, and `previous`: the old key, valid until the grace period ends |
//!
//! Bodies are JSON with unknown fields refused: 400 for a body that is not JSON of that
//! shape, 422 for a value out of bounds, 404 for a consumer or key that does not exist,
//! 503 when the database does not answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{AdminState, error};
use crate::keys::{KeyStore, KeyStoreError, NewConsumer, NewKeyRequest};

/// Default rotation grace period: the old key keeps working this long.
const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// The routes above, for the admin router.
pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/consumers", post(create_consumer).get(list_consumers))
        .route(
            "/consumers/{consumer}",
            get(get_consumer).delete(delete_consumer),
        )
        .route(
            "/consumers/{consumer}/keys",
            post(create_key).get(list_keys),
        )
        .route("/keys/{id}", get(get_key).delete(revoke_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/keys/{id}/rotate", post(rotate_key))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerBody {
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    group: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    #[serde(default)]
    scopes: Vec<String>,
    expires_at: Option<String>,
    expires_in: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace: Option<String>,
}

/// A refusal, turned into the JSON error response at the end of the handler (small, so
/// `Result`s that carry it stay small).
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message)
    }
}

fn store(s: &AdminState) -> Result<&KeyStore, ApiError> {
    s.keys.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "key_store_unavailable",
            "this process has no key store",
        )
    })
}

/// A JSON body of type `T`; an empty body counts as `{}` when `T` has a default.
fn body<T: DeserializeOwned>(bytes: &Bytes, empty: Option<T>) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace)
        && let Some(value) = empty
    {
        return Ok(value);
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

fn fail(e: KeyStoreError) -> ApiError {
    match e {
        KeyStoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
        KeyStoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        KeyStoreError::Invalid(m) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", m)
        }
        other => {
            tracing::error!("admin API: key store: {other}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the key store's database did not answer",
            )
        }
    }
}

fn json(status: StatusCode, value: impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

/// `record` (an object) with `key` added.
fn with_secret(record: impl serde::Serialize, secret: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("key".to_owned(), secret.into());
    }
    value
}

async fn create_consumer(State(s): State<AdminState>, bytes: Bytes) -> Response {
    let run = async {
        let store = store(&s)?;
        let b: ConsumerBody = body(&bytes, None)?;
        let new = NewConsumer {
            name: b.name,
            tags: b.tags,
            group: b.group,
        };
        let c = store.create_consumer(new).await.map_err(fail)?;
        Ok::<_, ApiError>(json(StatusCode::CREATED, c))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn list_consumers(State(s): State<AdminState>) -> Response {
    let run = async {
        let list = store(&s)?.list_consumers().await.map_err(fail)?;
        Ok::<_, ApiError>(json(
            StatusCode::OK,
            serde_json::json!({ "consumers": list }),
        ))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn get_consumer(State(s): State<AdminState>, Path(c): Path<String>) -> Response {
    let run = async {
        let consumer = store(&s)?.consumer(&c).await.map_err(fail)?;
        Ok::<_, ApiError>(json(StatusCode::OK, consumer))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn delete_consumer(State(s): State<AdminState>, Path(c): Path<String>) -> Response {
    let run = async {
        store(&s)?.delete_consumer(&c).await.map_err(fail)?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn create_key(State(s): State<AdminState>, Path(c): Path<String>, bytes: Bytes) -> Response {
    let run = async {
        let store = store(&s)?;
        let b: KeyBody = body(&bytes, Some(KeyBody::default()))?;
        let expires_at = expiry(b.expires_at.as_deref(), b.expires_in.as_deref())?;
        let request = NewKeyRequest {
            scopes: b.scopes,
            expires_at,
        };
        let (key, secret) = store.create_key(&c, request).await.map_err(fail)?;
        Ok::<_, ApiError>(json(StatusCode::CREATED, with_secret(key, &secret)))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn list_keys(State(s): State<AdminState>, Path(c): Path<String>) -> Response {
    let run = async {
        let list = store(&s)?.list_keys(&c).await.map_err(fail)?;
        Ok::<_, ApiError>(json(StatusCode::OK, serde_json::json!({ "keys": list })))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn get_key(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    let run = async {
        let key = store(&s)?.key(&id).await.map_err(fail)?;
        Ok::<_, ApiError>(json(StatusCode::OK, key))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn revoke_key(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    let run = async {
        let key = store(&s)?.revoke_key(&id).await.map_err(fail)?;
        Ok::<_, ApiError>(json(StatusCode::OK, key))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn rotate_key(State(s): State<AdminState>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let run = async {
        let store = store(&s)?;
        let b: RotateBody = body(&bytes, Some(RotateBody::default()))?;
        let grace = match b.grace.as_deref() {
            None => DEFAULT_GRACE,
            Some(text) => duration("grace", text)?,
        };
        let (key, secret, previous) = store.rotate_key(&id, grace).await.map_err(fail)?;
        let mut value = with_secret(key, &secret);
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "previous".to_owned(),
                serde_json::to_value(previous).unwrap_or_default(),
            );
        }
        Ok::<_, ApiError>(json(StatusCode::CREATED, value))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", message)
}

fn duration(field: &str, text: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(text).map_err(|e| {
        invalid(format!(
            "`{field}`: {e} (expected a duration such as \"90s\", \"1h\", \"30d\")"
        ))
    })
}

/// The expiry in Unix milliseconds from `expires_at` (RFC 3339) or `expires_in` (a
/// duration from now); not both.
fn expiry(at: Option<&str>, within: Option<&str>) -> Result<Option<i64>, ApiError> {
    let to_ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .ok_or_else(|| invalid("the expiry is out of range"))
    };
    match (at, within) {
        (Some(_), Some(_)) => Err(invalid("give `expires_at` or `expires_in`, not both")),
        (Some(at), None) => {
            let t = humantime::parse_rfc3339_weak(at).map_err(|e| {
                invalid(format!(
                    "`expires_at`: {e} (expected RFC 3339, e.g. 2030-01-31T00:00:00Z)"
                ))
            })?;
            to_ms(t).map(Some)
        }
        (None, Some(within)) => {
            let d = duration("expires_in", within)?;
            let t = SystemTime::now()
                .checked_add(d)
                .ok_or_else(|| invalid("`expires_in` is out of range"))?;
            to_ms(t).map(Some)
        }
        (None, None) => Ok(None),
    }
}
