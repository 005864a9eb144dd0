//! Files over real HTTP (the backend served on a bound port): streamed uploads and
//! their limit, sanitised names, versions with checksums, restore, ranges, verified
//! downloads, permissions and shares, and the isolation matrix of every file route.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::TestApp;
use crate::tasks::{World, world};
use crate::users::Person;

on_both_dialects!(
    versions_checksums_restore_and_delete,
    ranges_and_if_range,
    names_are_sanitised_and_never_paths,
    size_limit_is_413_and_leaves_nothing,
    corrupt_object_is_a_500_never_served,
    workspace_roles_and_shares_decide_access,
    file_routes_are_404_across_workspaces,
);

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

/// The app served over HTTP on a free port until dropped.
pub struct Served {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn serve(app: &TestApp) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(aistack_collab::serve_with(
        listener,
        app.db.clone(),
        app.options.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    Served {
        base,
        client,
        stop: Some(stop),
    }
}

/// A finished response: status, headers, body bytes.
pub struct Got {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.bytes)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"].get("request_id").is_some(), "{body}");
    }
}

impl Served {
    pub async fn call(
        &self,
        who: &Person,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Got {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&who.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("send");
        Got {
            status: StatusCode::from_u16(response.status().as_u16()).expect("status"),
            headers: response.headers().clone(),
            bytes: response.bytes().await.expect("body").to_vec(),
        }
    }

    pub async fn upload(&self, who: &Person, ws: &str, name: &str, bytes: &[u8]) -> Got {
        let path = format!("/api/v1/workspaces/{ws}/files?name={}", encode(name));
        self.call(who, "POST", &path, Some(bytes.to_vec()), &[])
            .await
    }

    async fn json_as(&self, who: &Person, method: &str, path: &str, body: Value) -> Got {
        let body = body.to_string().into_bytes();
        let headers = [("content-type", "application/json")];
        self.call(who, method, path, Some(body), &headers).await
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn created(got: &Got) -> Value {
    assert_eq!(
        got.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&got.bytes)
    );
    got.json()
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

async fn versions_checksums_restore_and_delete(app: TestApp) {
    let w = world(&app).await;
    let http = serve(&app).await;
    let first = b"hello, files\n".to_vec();
    let up = http.upload(&w.mia, &w.ws, "notes.txt", &first).await;
    let file = created(&up);
    assert_eq!(up.header("etag"), Some("\"1\""));
    assert_eq!(file["version"], 1);
    assert_eq!(file["size"], first.len());
    assert_eq!(file["sha256"], sha(&first));
    assert_eq!(file["content_type"], "text/plain; charset=utf-8");
    let fid = id(&file);
    let path = format!("/api/v1/files/{fid}");

    // A new version: the client's Content-Type is not believed; If-Match is checked.
    let v2 = http
        .call(
            &w.mia,
            "POST",
            &format!("{path}/versions"),
            Some(PNG.to_vec()),
            &[("if-match", "\"1\""), ("content-type", "text/html")],
        )
        .await;
    let file2 = created(&v2);
    assert_eq!(file2["version"], 2);
    assert_eq!(file2["content_type"], "image/png");
    assert_eq!(file2["sha256"], sha(PNG));
    assert_eq!(v2.header("etag"), Some("\"2\""));
    http.call(
        &w.mia,
        "POST",
        &format!("{path}/versions"),
        Some(b"late".to_vec()),
        &[("if-match", "\"1\"")],
    )
    .await
    .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");

    let current = http
        .call(&w.gus, "GET", &format!("{path}/content"), None, &[])
        .await;
    assert_eq!(current.status, StatusCode::OK);
    assert_eq!(current.bytes, PNG);
    assert_eq!(current.header("content-type"), Some("image/png"));
    assert_eq!(current.header("x-content-type-options"), Some("nosniff"));
    let content_tag = format!("\"{}\"", sha(PNG));
    assert_eq!(current.header("etag"), Some(content_tag.as_str()));
    let old = http
        .call(
            &w.gus,
            "GET",
            &format!("{path}/versions/1/content"),
            None,
            &[],
        )
        .await;
    assert_eq!(old.bytes, first);
    http.call(
        &w.gus,
        "GET",
        &format!("{path}/versions/9/content"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");

    // Restore v1: a new version with v1's content and checksum.
    let restored = http
        .call(
            &w.mia,
            "POST",
            &format!("{path}/versions/1/restore"),
            None,
            &[("if-match", "\"2\"")],
        )
        .await;
    let file3 = created(&restored);
    assert_eq!(file3["version"], 3);
    assert_eq!(file3["sha256"], sha(&first));
    let list = http
        .call(&w.gus, "GET", &format!("{path}/versions"), None, &[])
        .await;
    let versions = list.json();
    let summary: Vec<(i64, String, Value)> = versions
        .as_array()
        .expect("array")
        .iter()
        .map(|v| {
            let number = v["version"].as_i64().unwrap_or_default();
            let sum = v["sha256"].as_str().unwrap_or_default().to_owned();
            (number, sum, v["restored_from"].clone())
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, sha(&first), Value::Null),
            (2, sha(PNG), Value::Null),
            (3, sha(&first), json!(1)),
        ]
    );
    assert!(versions[0].get("object_id").is_none(), "{versions}");
    let now = http
        .call(&w.gus, "GET", &format!("{path}/content"), None, &[])
        .await;
    assert_eq!(now.bytes, first);
    let meta = http.call(&w.gus, "GET", &path, None, &[]).await;
    assert_eq!(meta.header("etag"), Some("\"3\""));
    let listed = http
        .call(
            &w.gus,
            "GET",
            &format!("/api/v1/workspaces/{}/files", w.ws),
            None,
            &[],
        )
        .await;
    assert_eq!(listed.json()["items"][0]["version"], 3, "{}", listed.json());

    // Delete: If-Match checked, then rows and objects go.
    http.call(&w.owner, "DELETE", &path, None, &[("if-match", "\"2\"")])
        .await
        .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    assert_eq!(
        files_under(&app.options.storage_root.join("objects")).len(),
        2
    );
    let gone = http
        .call(&w.owner, "DELETE", &path, None, &[("if-match", "\"3\"")])
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    http.call(&w.owner, "GET", &path, None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    assert!(files_under(&app.options.storage_root.join("objects")).is_empty());
    let audit = app
        .call(
            &w.owner.token,
            axum::http::Method::GET,
            &format!("/api/v1/organizations/{}/audit", w.owner.org_id),
            None,
        )
        .await;
    assert!(
        audit.body.to_string().contains("\"file.delete\""),
        "{}",
        audit.body
    );
}

async fn ranges_and_if_range(app: TestApp) {
    let w = world(&app).await;
    let http = serve(&app).await;
    let bytes: Vec<u8> = (0..100u8).collect();
    let file = created(&http.upload(&w.mia, &w.ws, "data.bin", &bytes).await);
    let path = format!("/api/v1/files/{}/content", id(&file));
    let tag = format!("\"{}\"", sha(&bytes));
    let get = |range: &'static str, if_range: Option<String>| {
        let http = &http;
        let gus = &w.gus;
        let path = &path;
        async move {
            let mut headers = vec![("range", range)];
            let if_range = if_range.unwrap_or_default();
            if !if_range.is_empty() {
                headers.push(("if-range", if_range.as_str()));
            }
            http.call(gus, "GET", path, None, &headers).await
        }
    };
    for (range, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=90-", 90, 99),
        ("bytes=-5", 95, 99),
        ("bytes=50-500", 50, 99),
    ] {
        let got = get(range, None).await;
        assert_eq!(got.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(got.bytes, bytes[start..=end], "{range}");
        let expected = format!("bytes {start}-{end}/100");
        assert_eq!(got.header("content-range"), Some(expected.as_str()));
        assert_eq!(got.header("accept-ranges"), Some("bytes"));
    }
    let none = get("bytes=100-", None).await;
    none.assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable");
    assert_eq!(none.header("content-range"), Some("bytes */100"));
    // Several ranges, or a stale If-Range: the whole content.
    let all = get("bytes=0-1,5-6", None).await;
    assert_eq!((all.status, all.bytes.len()), (StatusCode::OK, 100));
    let stale = get("bytes=0-9", Some("\"something-else\"".to_owned())).await;
    assert_eq!((stale.status, stale.bytes.len()), (StatusCode::OK, 100));
    let fresh = get("bytes=0-9", Some(tag)).await;
    assert_eq!(
        (fresh.status, fresh.bytes.len()),
        (StatusCode::PARTIAL_CONTENT, 10)
    );
}

async fn names_are_sanitised_and_never_paths(app: TestApp) {
    let w = world(&app).await;
    let http = serve(&app).await;
    for (raw, stored) in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("a\0b\u{1}c.txt", "abc.txt"),
        ("résumé 日本.txt", "résumé 日本.txt"),
    ] {
        let file = created(&http.upload(&w.mia, &w.ws, raw, b"x").await);
        assert_eq!(file["name"], stored, "{raw:?}");
        let got = http
            .call(
                &w.mia,
                "GET",
                &format!("/api/v1/files/{}/content", id(&file)),
                None,
                &[],
            )
            .await;
        let disposition = got
            .header("content-disposition")
            .unwrap_or_default()
            .to_owned();
        assert!(
            disposition.starts_with("attachment; filename="),
            "{disposition}"
        );
        assert!(
            !disposition.contains('/') && !disposition.contains('\0'),
            "{disposition}"
        );
    }
    let got = http.upload(&w.mia, &w.ws, "..", b"x").await;
    got.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    assert!(
        got.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("name")
    );
    http.upload(&w.mia, &w.ws, "dir/", b"x")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    http.upload(&w.mia, &w.ws, &"n".repeat(256), b"x")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    let path = format!("/api/v1/workspaces/{}/files", w.ws);
    let missing = http
        .call(&w.mia, "POST", &path, Some(b"x".to_vec()), &[])
        .await;
    missing.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    // The objects are named by generated ids only.
    let root = &app.options.storage_root;
    for stored in files_under(root) {
        let name = stored
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}",
            stored.display()
        );
        assert!(
            stored.starts_with(root.join("objects")),
            "{}",
            stored.display()
        );
    }
    assert_eq!(files_under(root).len(), 4);
}

/// A chunked upload of `size` bytes over a raw connection; the status line.
async fn chunked_upload(base: &str, token: &str, path: &str, size: usize) -> String {
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'z'; 256];
    let mut sent = 0;
    while sent < size {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            break; // the server answered and closed early: fine
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    assert!(
        text.contains("\"request_id\"") || text.starts_with("HTTP/1.1 201"),
        "{text}"
    );
    text.lines().next().unwrap_or_default().to_owned()
}

async fn size_limit_is_413_and_leaves_nothing(mut app: TestApp) {
    app.options.max_upload_bytes = 1024;
    let w = world(&app).await;
    let http = serve(&app).await;
    let big = vec![b'a'; 1025];
    let declared = http.upload(&w.mia, &w.ws, "big.txt", &big).await;
    declared.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let path = format!("/api/v1/workspaces/{}/files?name=big.txt", w.ws);
    let status = chunked_upload(&http.base, &w.mia.token, &path, 4096).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(files_under(&app.options.storage_root).is_empty());
    let fits = chunked_upload(&http.base, &w.mia.token, &path, 1024).await;
    assert!(fits.starts_with("HTTP/1.1 201"), "{fits}");
    let exact = http.upload(&w.mia, &w.ws, "max.txt", &big[..1024]).await;
    assert_eq!(created(&exact)["size"], 1024);
    let listed = http
        .call(
            &w.mia,
            "GET",
            &format!("/api/v1/workspaces/{}/files", w.ws),
            None,
            &[],
        )
        .await;
    assert_eq!(listed.json()["items"].as_array().map(Vec::len), Some(2));
}

async fn corrupt_object_is_a_500_never_served(app: TestApp) {
    let w = world(&app).await;
    let http = serve(&app).await;
    let file = created(&http.upload(&w.mia, &w.ws, "a.txt", b"original bytes").await);
    let objects = files_under(&app.options.storage_root.join("objects"));
    assert_eq!(objects.len(), 1);
    std::fs::write(&objects[0], b"tampered bytes").expect("tamper");
    let path = format!("/api/v1/files/{}/content", id(&file));
    for range in [None, Some("bytes=0-3")] {
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        let got = http.call(&w.mia, "GET", &path, None, &headers).await;
        got.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        assert!(!String::from_utf8_lossy(&got.bytes).contains("tampered"));
    }
    std::fs::remove_file(&objects[0]).expect("remove");
    http.call(&w.mia, "GET", &path, None, &[])
        .await
        .assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
}

async fn new_version(http: &Served, who: &Person, fid: &str) -> Got {
    let path = format!("/api/v1/files/{fid}/versions");
    http.call(who, "POST", &path, Some(b"v".to_vec()), &[])
        .await
}

async fn workspace_roles_and_shares_decide_access(app: TestApp) {
    let w: World = world(&app).await;
    let http = serve(&app).await;
    let file = created(&http.upload(&w.mia, &w.ws, "plan.txt", b"the plan").await);
    let fid = id(&file);
    let path = format!("/api/v1/files/{fid}");
    let shares = format!("{path}/shares");

    // The guest reads but changes nothing; olga (no grant) sees nothing.
    assert_eq!(
        http.call(&w.gus, "GET", &format!("{path}/content"), None, &[])
            .await
            .bytes,
        b"the plan"
    );
    new_version(&http, &w.gus, &fid)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    http.upload(&w.gus, &w.ws, "x", b"x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    http.call(&w.gus, "DELETE", &path, None, &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    http.json_as(
        &w.gus,
        "POST",
        &shares,
        json!({ "user_id": w.olga.id, "access": "read" }),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    http.call(&w.olga, "GET", &path, None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    // Bad share bodies name the field.
    for (body, field) in [
        (json!({ "user_id": w.olga.id, "access": "own" }), "access"),
        (json!({ "access": "read" }), "user_id"),
        (
            json!({ "user_id": w.olga.id, "workspace_id": w.ws, "access": "read" }),
            "user_id",
        ),
        (
            json!({ "user_id": uuid::Uuid::now_v7(), "access": "read" }),
            "user_id",
        ),
    ] {
        let got = http.json_as(&w.mia, "POST", &shares, body).await;
        got.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
        let message = got.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.starts_with(field), "{message}");
    }

    // A read share with reshare: olga reads, cannot write, and can pass on only read.
    let share = created(
        &http
            .json_as(
                &w.mia,
                "POST",
                &shares,
                json!({ "user_id": w.olga.id, "access": "read", "reshare": true }),
            )
            .await,
    );
    http.json_as(
        &w.mia,
        "POST",
        &shares,
        json!({ "user_id": w.olga.id, "access": "write" }),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(
        http.call(&w.olga, "GET", &format!("{path}/content"), None, &[])
            .await
            .bytes,
        b"the plan"
    );
    new_version(&http, &w.olga, &fid)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let mine = http
        .call(&w.olga, "GET", "/api/v1/shared-files", None, &[])
        .await;
    assert_eq!(mine.json()[0]["id"], fid.as_str(), "{}", mine.json());
    let rita = app.user(&w.owner, "rita").await;
    http.json_as(
        &w.olga,
        "POST",
        &shares,
        json!({ "user_id": rita.id, "access": "write" }),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let reshared = created(
        &http
            .json_as(
                &w.olga,
                "POST",
                &shares,
                json!({ "user_id": rita.id, "access": "read" }),
            )
            .await,
    );
    assert_eq!(
        http.call(&rita, "GET", &path, None, &[]).await.status,
        StatusCode::OK
    );
    // Rita holds read without reshare: she cannot share at all.
    http.json_as(
        &rita,
        "POST",
        &shares,
        json!({ "user_id": w.gus.id, "access": "read" }),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    // Olga (reshare only) may remove her own share, not mia's.
    let mias = format!("{shares}/{}", id(&share));
    http.call(&w.olga, "DELETE", &mias, None, &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let rid = format!("{shares}/{}", id(&reshared));
    assert_eq!(
        http.call(&w.olga, "DELETE", &rid, None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    http.call(&rita, "GET", &path, None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    // A write share with another workspace: its readers may upload versions.
    let pat = app.user(&w.owner, "pat").await;
    app.grant(&w.owner, &pat, "guest", "workspace", &w.other_ws)
        .await;
    http.call(&pat, "GET", &path, None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    created(
        &http
            .json_as(
                &w.mia,
                "POST",
                &shares,
                json!({ "workspace_id": w.other_ws, "access": "write" }),
            )
            .await,
    );
    assert_eq!(created(&new_version(&http, &pat, &fid).await)["version"], 2);
    http.call(&pat, "DELETE", &path, None, &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    // Removing the share takes olga's access away; every change is audited.
    assert_eq!(
        http.call(&w.mia, "DELETE", &mias, None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    http.call(&w.olga, "GET", &path, None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let listed = http.call(&w.mia, "GET", &shares, None, &[]).await;
    assert_eq!(
        listed.json().as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.json()
    );
    let audit = app
        .call(
            &w.owner.token,
            axum::http::Method::GET,
            &format!("/api/v1/organizations/{}/audit", w.owner.org_id),
            None,
        )
        .await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|e| e["action"].as_str())
                .filter(|a| a.starts_with("file."))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        actions,
        [
            "file.share.create",
            "file.share.create",
            "file.share.delete",
            "file.share.create",
            "file.share.delete"
        ]
    );
}

/// Every file route, by method: the isolation matrix below must cover each.
const FILE_FAMILY: &[(&str, &str)] = &[
    ("GET", "/api/v1/workspaces/{id}/files"),
    ("POST", "/api/v1/workspaces/{id}/files"),
    ("GET", "/api/v1/files/{id}"),
    ("DELETE", "/api/v1/files/{id}"),
    ("GET", "/api/v1/files/{id}/content"),
    ("GET", "/api/v1/files/{id}/versions"),
    ("POST", "/api/v1/files/{id}/versions"),
    ("GET", "/api/v1/files/{id}/versions/{version}/content"),
    ("POST", "/api/v1/files/{id}/versions/{version}/restore"),
    ("GET", "/api/v1/files/{id}/shares"),
    ("POST", "/api/v1/files/{id}/shares"),
    ("DELETE", "/api/v1/files/{id}/shares/{share_id}"),
    ("GET", "/api/v1/files/{id}/comments"),
    ("POST", "/api/v1/files/{id}/comments"),
];

async fn file_routes_are_404_across_workspaces(app: TestApp) {
    for (path, methods) in aistack_collab::documented_routes() {
        let family = path.contains("/files") && path != "/api/v1/shared-files";
        for method in methods.iter().filter(|_| family) {
            assert!(
                FILE_FAMILY.contains(&(method.as_str(), path.as_str())),
                "{method} {path} is missing from the isolation matrix"
            );
        }
    }
    let w = world(&app).await;
    let http = serve(&app).await;
    let file = created(
        &http
            .upload(&w.owner, &w.ws, "secret.txt", b"top secret")
            .await,
    );
    let fid = id(&file);
    let share = created(
        &http
            .json_as(
                &w.owner,
                "POST",
                &format!("/api/v1/files/{fid}/shares"),
                json!({ "user_id": w.mia.id, "access": "read" }),
            )
            .await,
    );
    let remark = created(
        &http
            .json_as(
                &w.owner,
                "POST",
                &format!("/api/v1/files/{fid}/comments"),
                json!({ "body": "a secret remark" }),
            )
            .await,
    );
    // The comment's own routes answer for a file's comment as for the file.
    let cid = id(&remark);
    let comment_routes = [
        ("GET", format!("/api/v1/comments/{cid}")),
        ("PATCH", format!("/api/v1/comments/{cid}")),
        ("DELETE", format!("/api/v1/comments/{cid}")),
        ("GET", format!("/api/v1/comments/{cid}/edits")),
        ("POST", format!("/api/v1/comments/{cid}/reactions")),
        ("DELETE", format!("/api/v1/comments/{cid}/reactions/x")),
    ];
    let rival = app.owner("rival").await;
    for stranger in [&rival, &w.olga] {
        for (method, uri) in &comment_routes {
            let body = match *method {
                "PATCH" => Some(json!({ "body": "x" }).to_string().into_bytes()),
                "POST" => Some(json!({ "emoji": "x" }).to_string().into_bytes()),
                _ => None,
            };
            let headers = [("content-type", "application/json"), ("if-match", "*")];
            let got = http.call(stranger, method, uri, body, &headers).await;
            got.assert_error(StatusCode::NOT_FOUND, "not_found");
            let text = String::from_utf8_lossy(&got.bytes);
            assert!(!text.contains("secret"), "{method} {uri}: {text}");
        }
        for (method, template) in FILE_FAMILY {
            let uri = template
                .replace("/workspaces/{id}", &format!("/workspaces/{}", w.ws))
                .replace("{id}", &fid)
                .replace("{version}", "1")
                .replace("{share_id}", &id(&share));
            let body = match *method {
                "POST" if uri.ends_with("/shares") => Some(
                    json!({ "user_id": stranger.id, "access": "read" })
                        .to_string()
                        .into_bytes(),
                ),
                "POST" if uri.ends_with("/comments") => {
                    Some(json!({ "body": "intruder" }).to_string().into_bytes())
                }
                "POST" => Some(b"intruder".to_vec()),
                _ => None,
            };
            let uri = if uri.ends_with("/files") && *method == "POST" {
                format!("{uri}?name=x")
            } else {
                uri
            };
            let got = http
                .call(
                    stranger,
                    method,
                    &uri,
                    body,
                    &[("content-type", "application/json"), ("if-match", "*")],
                )
                .await;
            got.assert_error(StatusCode::NOT_FOUND, "not_found");
            let text = String::from_utf8_lossy(&got.bytes);
            assert!(
                !text.contains(&fid) && !text.contains("secret"),
                "{method} {uri}: {text}"
            );
        }
        let shared = http
            .call(stranger, "GET", "/api/v1/shared-files", None, &[])
            .await;
        assert_eq!(shared.json(), json!([]));
    }
    // Nothing changed.
    let meta = http
        .call(&w.owner, "GET", &format!("/api/v1/files/{fid}"), None, &[])
        .await;
    assert_eq!(meta.json()["version"], 1);
    let comments = http
        .call(
            &w.owner,
            "GET",
            &format!("/api/v1/files/{fid}/comments"),
            None,
            &[],
        )
        .await;
    assert_eq!(comments.json()["items"].as_array().map(Vec::len), Some(1));
    let item = &comments.json()["items"][0];
    assert_eq!(
        (&item["body"], &item["reactions"]),
        (&json!("a secret remark"), &json!([]))
    );
}
