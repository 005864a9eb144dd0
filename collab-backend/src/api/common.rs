//! Pieces every resource module uses: the [`Api`] builder that registers a route and
//! its OpenAPI description together, id parsing, pagination and ETags.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::routing::MethodRouter;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use crate::error::ApiError;

/// One documented operation of a path.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub method: Method,
    pub summary: &'static str,
    /// Schema name of the JSON request body.
    pub request: Option<&'static str>,
    /// Success status and the shape of its JSON body.
    pub response: (u16, Body),
    /// Query parameters (all optional strings).
    pub query: &'static [&'static str],
    /// `Some(required)` when the operation reads `If-Match`.
    pub if_match: Option<bool>,
    /// The request body is raw bytes (`application/octet-stream`), streamed.
    pub raw_request: bool,
    /// Optional request headers the operation reads (besides `If-Match`).
    pub headers: &'static [&'static str],
}

/// The shape of a success body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body {
    /// No body.
    Empty,
    /// One object of the named schema.
    One(&'static str),
    /// `{"items":[…],"next_cursor"}` of the named schema.
    Page(&'static str),
    /// A JSON array of the named schema.
    List(&'static str),
    /// Raw bytes (a file's content).
    Binary,
}

/// A documented operation.
pub(crate) fn op(method: Method, summary: &'static str) -> Op {
    Op {
        method,
        summary,
        request: None,
        response: (200, Body::Empty),
        query: &[],
        if_match: None,
        raw_request: false,
        headers: &[],
    }
}

impl Op {
    pub fn req(mut self, schema: &'static str) -> Self {
        self.request = Some(schema);
        self
    }

    pub fn res(mut self, status: u16, schema: &'static str) -> Self {
        self.response = (status, Body::One(schema));
        self
    }

    pub fn page(mut self, schema: &'static str) -> Self {
        self.response = (200, Body::Page(schema));
        self
    }

    pub fn list(mut self, schema: &'static str) -> Self {
        self.response = (200, Body::List(schema));
        self
    }

    pub fn query(mut self, names: &'static [&'static str]) -> Self {
        self.query = names;
        self
    }

    /// Documents `If-Match` (428 when `required` and missing, 412 when stale).
    pub fn if_match(mut self, required: bool) -> Self {
        self.if_match = Some(required);
        self
    }

    /// A raw-bytes request body.
    pub fn raw_req(mut self) -> Self {
        self.raw_request = true;
        self
    }

    /// A raw-bytes success body.
    pub fn binary(mut self, status: u16) -> Self {
        self.response = (status, Body::Binary);
        self
    }

    /// Optional request headers read.
    pub fn headers(mut self, names: &'static [&'static str]) -> Self {
        self.headers = names;
        self
    }

    pub fn empty(mut self, status: u16) -> Self {
        self.response = (status, Body::Empty);
        self
    }
}

/// Routes under `/api/v1` and their documentation, built side by side so that no route
/// can exist undocumented.
pub(crate) struct Api {
    pub router: Router<AppState>,
    pub docs: Vec<(&'static str, Vec<Op>)>,
}

impl Api {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            docs: Vec::new(),
        }
    }

    /// Adds `path` (relative to `/api/v1`) served by `handlers`, documented by `ops`.
    pub fn route(
        mut self,
        path: &'static str,
        handlers: MethodRouter<AppState>,
        ops: Vec<Op>,
    ) -> Self {
        self.router = self.router.route(path, handlers);
        self.docs.push((path, ops));
        self
    }

    pub fn merge(mut self, other: Api) -> Self {
        self.router = self.router.merge(other.router);
        self.docs.extend(other.docs);
        self
    }
}

/// Parses an id from the path; anything but a UUID is "not found" (ids are never
/// echoed back).
pub(crate) fn parse_id(text: &str, noun: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::not_found(noun))
}

/// `?limit=&cursor=` of list endpoints.
#[derive(Debug, Deserialize)]
pub(crate) struct PageParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Validated `(limit, after)`: limit 1..=200 (default 50), cursor a UUID this API
/// returned.
pub(crate) fn page(
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(u32, Option<Uuid>), ApiError> {
    let limit = limit.unwrap_or(crate::store::DEFAULT_PAGE);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 200",
        ));
    }
    let after = match cursor {
        None | Some("") => None,
        Some(cursor) => Some(Uuid::parse_str(cursor).map_err(|_| {
            ApiError::bad_request("invalid_query", "cursor is not one this API returned")
        })?),
    };
    Ok((limit, after))
}

/// A page of items with the cursor of the next one.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Paged<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> From<crate::store::Page<T>> for Paged<T> {
    fn from(page: crate::store::Page<T>) -> Self {
        Self {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

/// The `ETag` header of a resource at `revision`: a strong tag `"<revision>"`.
pub(crate) fn etag(revision: i64) -> [(header::HeaderName, HeaderValue); 1] {
    let value = HeaderValue::from_str(&format!("\"{revision}\""))
        .unwrap_or(HeaderValue::from_static("\"0\""));
    [(header::ETAG, value)]
}

/// Checks `If-Match` against the `current` revision and returns the revision the write
/// must still find (it is conditional on it, so a concurrent writer loses with 412 too).
///
/// - missing: 428 when `required` (updates), else `None`: the write is unconditional
///   (deletes);
/// - `*`: matches whatever is current;
/// - a list of tags (`"3"`, `W/"3"`): must include the current one, else 412.
pub(crate) fn if_match(
    headers: &HeaderMap,
    current: i64,
    required: bool,
) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return if required {
            Err(ApiError::PreconditionRequired)
        } else {
            Ok(None)
        };
    };
    let text = value.to_str().map_err(|_| ApiError::PreconditionFailed)?;
    let tag = format!("\"{current}\"");
    let matches = text.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate == tag || candidate.strip_prefix("W/") == Some(tag.as_str())
    });
    if matches {
        Ok(Some(current))
    } else {
        Err(ApiError::PreconditionFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_MATCH,
            HeaderValue::from_str(value).expect("value"),
        );
        headers
    }

    #[test]
    fn if_match_rules() {
        assert!(matches!(
            if_match(&HeaderMap::new(), 3, true),
            Err(ApiError::PreconditionRequired)
        ));
        assert_eq!(if_match(&HeaderMap::new(), 3, false).ok(), Some(None));
        assert_eq!(if_match(&with("*"), 3, true).ok(), Some(Some(3)));
        assert_eq!(if_match(&with("\"2\", \"3\""), 3, true).ok(), Some(Some(3)));
        assert_eq!(if_match(&with("W/\"3\""), 3, true).ok(), Some(Some(3)));
        for stale in ["\"2\"", "3", "\"33\"", ""] {
            assert!(
                matches!(
                    if_match(&with(stale), 3, true),
                    Err(ApiError::PreconditionFailed)
                ),
                "{stale}"
            );
        }
    }
}
