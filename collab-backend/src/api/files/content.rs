//! Downloads: the stored bytes of one version, verified, whole or one range.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::{load, parse_version, storage};
use crate::api::AppState;
use crate::api::common::parse_id;
use crate::api::extract::ApiPath;
use crate::auth::Caller;
use crate::authz::{self, FILE_READ, Resource};
use crate::domain::file::{RangeRequest, range};
use crate::error::ApiError;
use crate::store::{self, files::FileVersion};

pub(super) async fn current(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "file")?;
    authz::authorize(&s.db, &caller, FILE_READ, Resource::File(id)).await?;
    let file = load(&s, id).await?;
    serve(&s, id, &file.name, file.version, &headers).await
}

pub(super) async fn of_version(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((id, version)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "file")?;
    authz::authorize(&s.db, &caller, FILE_READ, Resource::File(id)).await?;
    let number = parse_version(&version)?;
    let file = load(&s, id).await?;
    serve(&s, id, &file.name, number, &headers).await
}

async fn serve(
    s: &AppState,
    id: Uuid,
    name: &str,
    number: i64,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let version = store::files::version(&s.db, id, number)
        .await?
        .ok_or_else(|| ApiError::not_found("version"))?;
    let size = u64::try_from(version.size).unwrap_or_default();
    verify(s, id, &version, size).await?;
    let tag = format!("\"{}\"", version.sha256);
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // If-Range: the range only applies to the representation the client has.
    let fresh = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == tag.as_bytes());
    let wanted = if fresh {
        range(asked, size)
    } else {
        RangeRequest::Full
    };
    let mut out = HeaderMap::new();
    let set = |out: &mut HeaderMap, name: header::HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.insert(name, value);
        }
    };
    set(&mut out, header::ETAG, tag);
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, start, end) = match wanted {
        RangeRequest::Unsatisfiable => {
            set(&mut out, header::CONTENT_RANGE, format!("bytes */{size}"));
            return Ok((out, ApiError::RangeNotSatisfiable).into_response());
        }
        RangeRequest::Part { start, end } => {
            let value = format!("bytes {start}-{end}/{size}");
            set(&mut out, header::CONTENT_RANGE, value);
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
        RangeRequest::Full => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let body = if size == 0 {
        Body::empty()
    } else {
        let object = version.object_id;
        storage(s)
            .read_range(object, start, end)
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))?
    };
    let length = if size == 0 { 0 } else { end + 1 - start };
    set(&mut out, header::CONTENT_LENGTH, length.to_string());
    set(&mut out, header::CONTENT_TYPE, version.content_type.clone());
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    set(&mut out, header::CONTENT_DISPOSITION, disposition(name));
    Ok((status, out, body).into_response())
}

/// Checks the object against its recorded size and SHA-256 before any byte is sent.
async fn verify(s: &AppState, id: Uuid, version: &FileVersion, size: u64) -> Result<(), ApiError> {
    let object = version.object_id;
    match storage(s).verify(object, size, &version.sha256).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::Internal(
            format!(
                "file {id} version {}: object {object} does not match its recorded size and SHA-256",
                version.version
            )
            .into(),
        )),
        Err(e) => Err(ApiError::Internal(
            format!(
                "file {id} version {}: object {object} unreadable: {e}",
                version.version
            )
            .into(),
        )),
    }
}

/// `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266, 8187).
fn disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::disposition;

    #[test]
    fn dispositions_quote_and_encode() {
        assert_eq!(
            disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            disposition("é\"x"),
            "attachment; filename=\"__x\"; filename*=UTF-8''%C3%A9%22x"
        );
    }
}
