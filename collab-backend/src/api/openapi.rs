//! The OpenAPI 3.1 document, built from the routes' own descriptions
//! ([`super::common::Api`]) and the `ToSchema` types they exchange.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    Required, ResponseBuilder, ResponsesBuilder,
};

use super::common::{Body, Op};

/// The document for `docs` (paths relative to `/api/v1`).
pub(super) fn document(docs: &[(&'static str, Vec<Op>)]) -> serde_json::Value {
    let mut paths = PathsBuilder::new();
    for (path, ops) in docs {
        for op in ops {
            let item = PathItem::new(method(&op.method), operation(path, op));
            paths = paths.path(format!("/api/v1{path}"), item);
        }
    }
    paths = paths.path(
        "/api/v1/openapi.json",
        PathItem::new(
            HttpMethod::Get,
            OperationBuilder::new()
                .summary(Some("This document"))
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description("The OpenAPI 3.1 document")
                        .build(),
                ),
        ),
    );
    let components = super::schemas::register(ComponentsBuilder::new())
        .security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        )
        .build();
    let openapi: OpenApi = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("AI Stack collaboration API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Served by aistack-collab behind the gateway at /api/v1/. Errors are {\"error\":{\"code\",\"message\",\"request_id\"}}.")),
        )
        .paths(paths.build())
        .components(Some(components))
        .build();
    serde_json::to_value(&openapi).unwrap_or(serde_json::Value::Null)
}

fn method(method: &axum::http::Method) -> HttpMethod {
    match method.as_str() {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn json(schema: utoipa::openapi::RefOr<utoipa::openapi::Schema>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn operation(path: &str, op: &Op) -> OperationBuilder {
    let mut builder = OperationBuilder::new().summary(Some(op.summary));
    for segment in path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            builder = builder.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
    }
    for name in op.query {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if let Some(required) = op.if_match {
        let (flag, text) = if required {
            (
                Required::True,
                "The ETag read; * overwrites whatever is current. Missing: 428; stale: 412.",
            )
        } else {
            (
                Required::False,
                "The ETag read; stale: 412. Missing: unconditional.",
            )
        };
        builder = builder.parameter(
            ParameterBuilder::new()
                .name("If-Match")
                .parameter_in(ParameterIn::Header)
                .required(flag)
                .description(Some(text))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    for name in op.headers {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if op.raw_request {
        let body = RequestBodyBuilder::new()
            .required(Some(Required::True))
            .content("application/octet-stream", ContentBuilder::new().build())
            .build();
        builder = builder.request_body(Some(body));
    }
    if let Some(request) = op.request {
        let body = RequestBodyBuilder::new()
            .required(Some(Required::True))
            .content(
                "application/json",
                json(Ref::from_schema_name(request).into()),
            )
            .build();
        builder = builder.request_body(Some(body));
    }
    let (status, body) = op.response;
    let mut response = ResponseBuilder::new().description("Success");
    response = match body {
        Body::Empty => response,
        Body::Binary => response.content("application/octet-stream", ContentBuilder::new().build()),
        Body::One(name) => {
            response.content("application/json", json(Ref::from_schema_name(name).into()))
        }
        Body::List(name) => response.content(
            "application/json",
            json(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(name))
                    .build()
                    .into(),
            ),
        ),
        Body::Page(name) => response.content(
            "application/json",
            json(
                ObjectBuilder::new()
                    .property(
                        "items",
                        ArrayBuilder::new().items(Ref::from_schema_name(name)),
                    )
                    .required("items")
                    .property(
                        "next_cursor",
                        ObjectBuilder::new().schema_type(Type::String),
                    )
                    .build()
                    .into(),
            ),
        ),
    };
    let error = ResponseBuilder::new()
        .description("An error: {\"error\":{\"code\",\"message\",\"request_id\"}}")
        .content(
            "application/json",
            json(Ref::from_schema_name("Error").into()),
        )
        .build();
    builder.responses(
        ResponsesBuilder::new()
            .response(status.to_string(), response.build())
            .response("default", error)
            .build(),
    )
}
