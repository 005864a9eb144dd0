//! The built-in `key-auth` filter and the key store through the real gateway: consumers
//! and keys made through the admin API (and the CLI), keys presented by header, bearer
//! token and query parameter, the refusals (401/403 JSON + `WWW-Authenticate`), expiry,
//! rotation, and a revoke on one gateway process reaching a second one that shares the
//! database (a SQLite file, and PostgreSQL).

use std::path::Path;
use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, Ports, render, run_cli};
use serde_json::{Value, json};

use crate::wasm_common::{header, seen};

const TOKEN: &str = "admin-token-of-decent-length";

/// `aistack gateway` with the access log on, an admin token, `database` (a URL, or the
/// data dir's default), an echo upstream and these routes:
/// `/secured` (key-auth with `config`), `/default` (key-auth with no config), `/open`.
async fn start(
    echo: &EchoUpstream,
    dir: &Path,
    config: &Value,
    database: Option<&str>,
    env: &[(&str, &str)],
) -> Aistack {
    let ports = Ports::free();
    let database = database.map_or(String::new(), |url| format!("database:\n  url: {url}\n"));
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{{proxy}}\nadmin:\n  address: 127.0.0.1:{{admin}}\n  token: {TOKEN}\n\
         backend:\n  enabled: false\n  address: 127.0.0.1:{{backend}}\n\
         server:\n  threads: 2\n  grace_period: 1s\n  access_log: true\n{database}\
         upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n\
         routes:\n  - name: secured\n    path: /secured\n    upstream: echo\n    plugins:\n\
         \x20     - name: key-auth\n        config: {config}\n\
         \x20 - name: default\n    path: /default\n    upstream: echo\n    plugins:\n\
         \x20     - name: key-auth\n\
         \x20 - name: open\n    path: /open\n    upstream: echo\n",
        echo = echo.port()
    );
    Aistack::start_with_env("gateway", &render(&yaml, ports), ports, dir, env).await
}

/// An admin API call with the token; (status, JSON body or Null).
async fn admin(gw: &Aistack, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client
        .request(method, gw.admin_url(path))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("admin request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Creates a consumer and a key for it (`key_body`); (consumer, key record with `key`).
async fn consumer_with_key(gw: &Aistack, name: &str, key_body: Value) -> (Value, Value) {
    let (status, consumer) = admin(
        gw,
        "POST",
        "/consumers",
        Some(json!({"name": name, "tags": ["e2e"], "group": "gold"})),
    )
    .await;
    assert_eq!(status, 201, "{consumer}");
    let (status, key) = admin(
        gw,
        "POST",
        &format!("/consumers/{name}/keys"),
        Some(key_body),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    (consumer, key)
}

fn secret(key: &Value) -> String {
    key["key"].as_str().expect("the key, once").to_owned()
}

async fn get(url: String, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// Asserts a refusal: status, JSON error code, and a `WWW-Authenticate` challenge.
async fn assert_refused(r: reqwest::Response, status: u16, code: &str, challenge: &str) -> Value {
    assert_eq!(r.status(), status);
    assert!(
        header(&r, "www-authenticate").starts_with(challenge),
        "WWW-Authenticate: {:?}",
        header(&r, "www-authenticate")
    );
    assert_eq!(header(&r, "content-type"), "application/json");
    let body: Value = r.json().await.expect("json error");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["request_id"].is_string(), "{body}");
    body
}

/// Polls until `url` with `headers` answers `status` (a change made elsewhere arrives
/// with the next poll of the key store, every second); panics after `within`.
async fn wait_for_status(url: &str, headers: &[(&str, &str)], status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = get(url.to_owned(), headers).await.status();
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url}: still {got} after {within:?}, wanted {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn keys_by_header_bearer_and_query_reach_the_upstream_as_the_consumer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start(&echo, dir.path(), &json!({"query": "api_key"}), None, &[]).await;
    let (consumer, key) = consumer_with_key(&gw, "alice", json!({"scopes": ["read"]})).await;
    let key = secret(&key);
    let forged = [("x-consumer-id", "forged"), ("x-consumer-name", "forged")];

    let check = |e: &Value| {
        assert_eq!(
            seen(e, "x-consumer-id"),
            consumer["id"].as_str().expect("id"),
            "{e}"
        );
        assert_eq!(seen(e, "x-consumer-name"), "alice");
        assert_eq!(seen(e, "x-consumer-group"), "gold");
        assert_eq!(
            e["headers"]["x-consumer-id"].as_array().map(Vec::len),
            Some(1)
        );
        assert!(!e.to_string().contains(&key), "the key went upstream: {e}");
    };
    let mut by_header = forged.to_vec();
    by_header.push(("x-api-key", key.as_str()));
    let r = get(gw.url("/secured/a"), &by_header).await;
    assert_eq!(r.status(), 200);
    check(&r.json().await.expect("json"));

    let bearer = format!("Bearer {key}");
    let mut by_bearer = forged.to_vec();
    by_bearer.push(("authorization", bearer.as_str()));
    let r = get(gw.url("/secured/b"), &by_bearer).await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.expect("json");
    check(&e);
    assert_eq!(seen(&e, "authorization"), "");

    let r = get(
        gw.url(&format!("/secured/c?x=1&api_key={key}&y=2")),
        &forged,
    )
    .await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.expect("json");
    check(&e);
    assert_eq!(e["path"], "/secured/c?x=1&y=2");

    // The query parameter is off unless configured; the header works by default.
    let r = get(gw.url(&format!("/default/d?api_key={key}")), &[]).await;
    assert_refused(r, 401, "unauthorized", "Bearer realm=\"aistack\"").await;
    let r = get(gw.url("/default/d"), &[("x-api-key", key.as_str())]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(echo.hits(), 4);

    // Missing and wrong keys: 401 JSON with a challenge, nothing proxied.
    let body = assert_refused(
        get(gw.url("/secured/e"), &forged).await,
        401,
        "unauthorized",
        "Bearer realm=\"aistack\"",
    )
    .await;
    assert_eq!(body["error"]["message"], "missing API key");
    let mut wrong = key.clone();
    wrong.pop();
    wrong.push(if key.ends_with('0') { '1' } else { '0' });
    let r = get(gw.url("/secured/f"), &[("x-api-key", wrong.as_str())]).await;
    assert_refused(
        r,
        401,
        "unauthorized",
        "Bearer realm=\"aistack\", error=\"invalid_token\"",
    )
    .await;
    let r = get(gw.url("/secured/g"), &[("x-api-key", "not-a-key")]).await;
    assert_refused(r, 401, "unauthorized", "Bearer").await;
    assert_eq!(echo.hits(), 4, "no refused request was proxied");

    // The filter is what refuses: the same upstream without it lets anything through,
    // and client-sent identity headers never pass.
    let r = get(gw.url("/open/h"), &forged).await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.expect("json");
    assert_eq!(seen(&e, "x-consumer-id"), "");
    // The access log is on: the key (in a header, a bearer token, a query) is not in it.
    let output = gw.wait_for_output("route=open").await;
    assert!(output.contains("route=secured"), "{output}");
    assert!(!output.contains(&key), "a key was logged:\n{output}");
    assert!(
        !output.contains(&key[20..]),
        "a key's secret was logged:\n{output}"
    );
}

#[tokio::test]
async fn scopes_expiry_and_rotation_are_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start(&echo, dir.path(), &json!({"scopes": ["write"]}), None, &[]).await;
    let (_, reader) = consumer_with_key(&gw, "reader", json!({"scopes": ["read"]})).await;
    let r = get(
        gw.url("/secured/x"),
        &[("x-api-key", secret(&reader).as_str())],
    )
    .await;
    let body = assert_refused(
        r,
        403,
        "forbidden",
        "Bearer realm=\"aistack\", error=\"insufficient_scope\"",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("write"),
        "{body}"
    );

    let (status, writer) = admin(
        &gw,
        "POST",
        "/consumers/reader/keys",
        Some(json!({"scopes": ["read", "write"]})),
    )
    .await;
    assert_eq!(status, 201, "{writer}");
    let writer_key = secret(&writer);
    assert_eq!(
        get(gw.url("/secured/x"), &[("x-api-key", writer_key.as_str())])
            .await
            .status(),
        200
    );

    // Expiry: valid now, refused once the time has passed.
    let (status, short) = admin(
        &gw,
        "POST",
        "/consumers/reader/keys",
        Some(json!({"scopes": ["write"], "expires_in": "3s"})),
    )
    .await;
    assert_eq!(status, 201, "{short}");
    let short_key = secret(&short);
    assert_eq!(
        get(gw.url("/secured/x"), &[("x-api-key", short_key.as_str())])
            .await
            .status(),
        200
    );
    wait_for_status(
        &gw.url("/secured/x"),
        &[("x-api-key", short_key.as_str())],
        401,
        Duration::from_secs(15),
    )
    .await;
    let r = get(gw.url("/secured/x"), &[("x-api-key", short_key.as_str())]).await;
    let body = assert_refused(r, 401, "unauthorized", "Bearer").await;
    assert_eq!(body["error"]["message"], "the API key has expired");

    // Rotation: the new key works at once, the old one until the grace period ends.
    let id = writer["id"].as_str().expect("id");
    let (status, rotated) = admin(
        &gw,
        "POST",
        &format!("/keys/{id}/rotate"),
        Some(json!({"grace": "3s"})),
    )
    .await;
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(rotated["previous"]["id"], id);
    assert_eq!(rotated["scopes"], json!(["read", "write"]));
    let new_key = secret(&rotated);
    assert_eq!(
        get(gw.url("/secured/x"), &[("x-api-key", new_key.as_str())])
            .await
            .status(),
        200
    );
    assert_eq!(
        get(gw.url("/secured/x"), &[("x-api-key", writer_key.as_str())])
            .await
            .status(),
        200
    );
    wait_for_status(
        &gw.url("/secured/x"),
        &[("x-api-key", writer_key.as_str())],
        401,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        get(gw.url("/secured/x"), &[("x-api-key", new_key.as_str())])
            .await
            .status(),
        200
    );

    // Revocation applies on this node at once.
    let new_id = rotated["id"].as_str().expect("id");
    let (status, revoked) = admin(&gw, "POST", &format!("/keys/{new_id}/revoke"), None).await;
    assert_eq!(
        (status, revoked["status"].as_str()),
        (200, Some("revoked")),
        "{revoked}"
    );
    let r = get(gw.url("/secured/x"), &[("x-api-key", new_key.as_str())]).await;
    let body = assert_refused(r, 401, "unauthorized", "Bearer").await;
    assert_eq!(body["error"]["message"], "the API key has been revoked");
}

#[tokio::test]
async fn the_admin_api_manages_consumers_and_keys_with_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start(&echo, dir.path(), &json!({}), None, &[]).await;
    // The admin token rules apply.
    let r = reqwest::Client::new()
        .get(gw.admin_url("/consumers"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);

    let (consumer, key) = consumer_with_key(&gw, "carol", json!({})).await;
    assert_eq!(consumer["name"], "carol");
    assert_eq!(consumer["tags"], json!(["e2e"]));
    let the_key = secret(&key);
    assert!(the_key.starts_with("ak_"), "{the_key}");
    let id = key["id"].as_str().expect("id");
    assert!(the_key.contains(id), "the public id is part of the key");

    let (status, body) = admin(&gw, "POST", "/consumers", Some(json!({"name": "carol"}))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, body) = admin(
        &gw,
        "POST",
        "/consumers",
        Some(json!({"name": "no spaces"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_value")),
        "{body}"
    );
    let (status, body) = admin(
        &gw,
        "POST",
        "/consumers",
        Some(json!({"name": "x", "nmae": 1})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{body}"
    );
    let (status, body) = admin(&gw, "GET", "/consumers/nobody", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = admin(&gw, "POST", "/consumers/nobody/keys", Some(json!({}))).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = admin(
        &gw,
        "POST",
        "/consumers/carol/keys",
        Some(json!({"expires_in": "soon"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = admin(&gw, "GET", "/keys/0000000000000000", None).await;
    assert_eq!(status, 404, "{body}");

    let (status, list) = admin(&gw, "GET", "/consumers", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["consumers"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    let (status, by_id) = admin(
        &gw,
        "GET",
        &format!("/consumers/{}", consumer["id"].as_str().expect("id")),
        None,
    )
    .await;
    assert_eq!((status, by_id["name"].as_str()), (200, Some("carol")));
    let (status, keys) = admin(&gw, "GET", "/consumers/carol/keys", None).await;
    assert_eq!(status, 200);
    assert_eq!(keys["keys"][0]["id"], id);
    assert_eq!(keys["keys"][0]["status"], "active");
    assert!(keys["keys"][0].get("key").is_none(), "{keys}");
    assert!(
        !keys.to_string().contains(&the_key),
        "a listing showed the key"
    );
    let (status, one) = admin(&gw, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!(
        (status, one["consumer_id"].clone()),
        (200, consumer["id"].clone())
    );
    assert!(!one.to_string().contains(&the_key));

    assert_eq!(
        get(gw.url("/secured/x"), &[("x-api-key", the_key.as_str())])
            .await
            .status(),
        200
    );
    let (status, _) = admin(&gw, "DELETE", "/consumers/carol", None).await;
    assert_eq!(status, 204);
    assert_eq!(
        get(gw.url("/secured/x"), &[("x-api-key", the_key.as_str())])
            .await
            .status(),
        401
    );
    let (status, _) = admin(&gw, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!(status, 404, "the consumer's keys went with it");
}

/// Two gateway processes on one database: a key made on `a` works on `b`, and a revoke on
/// `a` stops it on `b` (the key store polls every second; the deadline is generous).
async fn revoke_reaches_the_other_node(database: &str) {
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let a = start(&echo, dir_a.path(), &json!({}), Some(database), &[]).await;
    // `b` gets the same database through DATABASE_URL, which overrides the config.
    let b = start(
        &echo,
        dir_b.path(),
        &json!({}),
        None,
        &[("DATABASE_URL", database)],
    )
    .await;
    let (_, key) = consumer_with_key(&a, "dave", json!({})).await;
    let the_key = secret(&key);
    let with_key = [("x-api-key", the_key.as_str())];
    assert_eq!(get(a.url("/secured/x"), &with_key).await.status(), 200);
    wait_for_status(
        &b.url("/secured/x"),
        &with_key,
        200,
        Duration::from_secs(10),
    )
    .await;
    let (status, listed) = admin(&b, "GET", "/consumers/dave/keys", None).await;
    assert_eq!(
        (status, listed["keys"][0]["id"].clone()),
        (200, key["id"].clone())
    );

    let id = key["id"].as_str().expect("id");
    let (status, _) = admin(&a, "POST", &format!("/keys/{id}/revoke"), None).await;
    assert_eq!(status, 200);
    assert_eq!(get(a.url("/secured/x"), &with_key).await.status(), 401);
    wait_for_status(
        &b.url("/secured/x"),
        &with_key,
        401,
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn a_revoke_on_one_gateway_reaches_another_sharing_the_sqlite_file() {
    let shared = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", shared.path().join("keys.db").display());
    revoke_reaches_the_other_node(&url).await;
}

#[tokio::test]
async fn a_revoke_on_one_gateway_reaches_another_sharing_postgres() {
    use sqlx::Connection;
    let server = "postgres://postgres@127.0.0.1:5432";
    let name = format!("aistack_e2e_keys_{}_{}", std::process::id(), nanos());
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (user postgres, trust)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let url = format!("{server}/{name}");
    let result = tokio::spawn(async move { revoke_reaches_the_other_node(&url).await }).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop database");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// The clock's nanoseconds, to make a database name unique.
fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[tokio::test]
async fn the_cli_manages_consumers_and_keys_through_the_admin_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start(&echo, dir.path(), &json!({}), None, &[]).await;
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", "aistack.yaml"]);
        run_cli(&all, dir.path())
    };
    let json_of =
        |out: &str| -> Value { serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}")) };

    let (status, out, err) = cli(&[
        "consumers",
        "create",
        "erin",
        "--tag",
        "cli",
        "--group",
        "ops",
    ]);
    assert!(status.success(), "{err}");
    assert_eq!(json_of(&out)["group"], "ops");
    let (status, out, err) = cli(&[
        "keys",
        "create",
        "erin",
        "--scope",
        "read",
        "--expires-in",
        "30d",
    ]);
    assert!(status.success(), "{err}");
    let created = json_of(&out);
    let key = created["key"].as_str().expect("key").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    let r = get(gw.url("/secured/x"), &[("x-api-key", key.as_str())]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        seen(&r.json().await.expect("json"), "x-consumer-name"),
        "erin"
    );

    let (status, out, _) = cli(&["keys", "list", "erin"]);
    assert!(status.success());
    assert_eq!(json_of(&out)["keys"][0]["id"], id.as_str());
    assert!(!out.contains(&key));
    let (status, out, _) = cli(&["consumers", "list"]);
    assert!(status.success());
    assert_eq!(json_of(&out)["consumers"][0]["name"], "erin");
    let (status, out, err) = cli(&["keys", "rotate", &id, "--grace", "0s"]);
    assert!(status.success(), "{err}");
    let new_key = json_of(&out)["key"].as_str().expect("key").to_owned();
    assert_eq!(
        get(gw.url("/secured/x"), &[("x-api-key", key.as_str())])
            .await
            .status(),
        401
    );
    assert_eq!(
        get(gw.url("/secured/x"), &[("x-api-key", new_key.as_str())])
            .await
            .status(),
        200
    );
    let new_id = json_of(&out)["id"].as_str().expect("id").to_owned();
    let (status, out, _) = cli(&["keys", "revoke", &new_id]);
    assert!(status.success());
    assert_eq!(json_of(&out)["status"], "revoked");
    let (status, out, _) = cli(&["keys", "get", &new_id]);
    assert!(status.success());
    assert_eq!(json_of(&out)["status"], "revoked");

    // Errors: the API's message, exit status 1.
    let (status, _, err) = cli(&["consumers", "create", "erin"]);
    assert!(!status.success());
    assert!(err.contains("409") && err.contains("erin"), "{err}");
    let (status, _, _) = cli(&["consumers", "delete", "erin"]);
    assert!(status.success());
    let (status, _, err) = cli(&["consumers", "get", "erin"]);
    assert!(!status.success());
    assert!(err.contains("404"), "{err}");
    // Without the token (another config, no AISTACK_ADMIN_TOKEN): refused.
    let url = gw.admin_url("");
    let (status, _, err) = run_cli(
        &[
            "consumers",
            "list",
            "--config",
            "none.yaml",
            "--admin-url",
            &url,
        ],
        dir.path(),
    );
    assert!(!status.success());
    assert!(err.contains("401"), "{err}");
}

#[test]
fn bad_configurations_are_refused_at_load_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (json!({"header": "bad header"}), "`header`"),
        (json!({"query": "a&b"}), "`query`"),
        (
            json!({"header": null, "bearer": false}),
            "no place to read the key from",
        ),
        (json!({"scopes": "read"}), "invalid type"),
        (json!({"heder": "x"}), "unknown field `heder`"),
    ];
    for (config, reason) in cases {
        let yaml = format!(
            "backend:\n  enabled: false\nupstreams:\n  app:\n    targets: [127.0.0.1:9]\n\
             routes:\n  - name: app\n    upstream: app\n    plugins:\n\
             \x20     - name: key-auth\n        config: {config}\n"
        );
        std::fs::write(dir.path().join("aistack.yaml"), yaml).expect("write");
        let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
        assert!(!status.success(), "accepted {config}");
        assert!(stderr.contains("aistack.yaml:"), "{stderr}");
        assert!(
            stderr.contains("key-auth") && stderr.contains("refused its configuration"),
            "{stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{config}: want {reason:?} in\n{stderr}"
        );
    }
}

#[tokio::test]
async fn with_the_database_down_the_gateway_starts_and_key_auth_answers_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    // Nothing listens on port 1.
    let gw = start(
        &echo,
        dir.path(),
        &json!({}),
        Some("postgres://app@127.0.0.1:1/aistack"),
        &[],
    )
    .await;
    let key = format!("ak_{}_{}", "0".repeat(16), "0".repeat(64));
    let r = get(gw.url("/secured/x"), &[("x-api-key", key.as_str())]).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let (status, body) = admin(&gw, "GET", "/consumers", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("database_unavailable")),
        "{body}"
    );
    assert_eq!(echo.hits(), 0);
    let output = gw.wait_for_output("cannot load the keys").await;
    assert!(output.contains("key store"), "{output}");
}
