//! Pieces every resource module uses: the [`Api`] builder that registers a route and
//! its OpenAPI description together, id parsing, pagination and ETags.

use axum::Router;
use axum::http::Method;
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
}

/// A documented operation.
pub(crate) fn op(method: Method, summary: &'static str) -> Op {
    Op {
        method,
        summary,
        request: None,
        response: (200, Body::Empty),
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
