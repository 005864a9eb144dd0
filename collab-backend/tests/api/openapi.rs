//! `/api/v1/openapi.json`: an OpenAPI 3.1 document that lists every route, and every
//! documented route is really served.

use axum::body::Body;
use axum::http::{Method, StatusCode};

use crate::support::{TestApp, request};

#[tokio::test]
async fn document_lists_every_route_and_every_route_is_served() {
    let app = TestApp::sqlite().await;
    let doc = app.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let all = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    for (path, methods) in aistack_collab::documented_routes() {
        let item = &doc.body["paths"][&path];
        for method in &all {
            let documented = methods.iter().any(|m| m == method.as_str());
            let key = method.as_str().to_lowercase();
            assert_eq!(
                item.get(&key).is_some(),
                documented,
                "{method} {path} in the document"
            );
            let uri = path.replace(['{', '}'], "");
            let response = app
                .send(
                    request(method.clone(), &uri)
                        .body(Body::empty())
                        .expect("request"),
                )
                .await;
            let routed = response.status != StatusCode::METHOD_NOT_ALLOWED
                && response.body["error"]["message"] != "no such route";
            assert_eq!(routed, documented, "{method} {uri}: {}", response.body);
        }
    }
}
