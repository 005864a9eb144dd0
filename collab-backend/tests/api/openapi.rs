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

/// The served document validates against the OpenAPI 3.1 schema, checked by
/// `openapi-spec-validator` (PyPI), which ships that schema; `./aistack test` installs
/// it. Fails, never skips, when the validator is missing.
#[tokio::test]
async fn document_validates_against_the_openapi_3_1_schema() {
    let app = TestApp::sqlite().await;
    let doc = app.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.body.to_string()).expect("write the document");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("run {python} -m openapi_spec_validator: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the document is not valid OpenAPI 3.1 (or the validator is missing: \
         pip install openapi-spec-validator):\n{text}"
    );
    assert!(text.contains("OK"), "{text}");
}
