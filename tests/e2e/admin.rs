//! The admin API's tokens through the real binary: the read-only token opens the GET
//! endpoints and nothing else (403 JSON), the read-write token opens everything, a missing
//! or wrong one gets 401 JSON with `WWW-Authenticate: Bearer`; an admin address beyond
//! loopback without a token is refused by `validate` and at start; `/routes` and
//! `/plugins` show the config in force.

use std::time::Duration;

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, Ports, render, run_cli};
use serde_json::{Value, json};

const READ_WRITE: &str = "read-write-admin-token-0123";
const READ_ONLY: &str = "read-only-admin-token-4567";

/// A gateway-only config with two routes to `echo` (`api` with the built-in
/// `request-id`, `custom` with the custom filter `wasm`), the admin API on `admin_address`
/// with the `admin_keys` given (YAML lines indented by two spaces), and `extra_routes`.
fn config(
    ports: Ports,
    echo: u16,
    wasm: &str,
    admin_address: &str,
    admin_keys: &str,
    extra_routes: &str,
) -> String {
    let template = format!(
        "listeners:\n  - address: 127.0.0.1:{{proxy}}\n\
         admin:\n  address: {admin_address}\n{admin_keys}\
         backend:\n  enabled: false\n  address: 127.0.0.1:{{backend}}\n\
         server:\n  threads: 1\n  grace_period: 1s\n  watch: false\n\
         plugins:\n  conf-headers:\n    path: {wasm}\n\
         upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n\
         routes:\n  - name: api\n    path: /api\n    upstream: echo\n    plugins:\n\
         \x20     - name: request-id\n\
         \x20 - name: custom\n    path: /custom\n    upstream: echo\n    plugins:\n\
         \x20     - name: conf-headers\n{extra_routes}"
    );
    render(&template, ports)
}

fn tokens() -> String {
    format!("  token: {READ_WRITE}\n  read_only_token: {READ_ONLY}\n")
}

/// An admin API call with `authorization` (the whole header value) if any: status,
/// `WWW-Authenticate`, and the body as JSON (Null when it is not).
async fn call(
    gw: &Aistack,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = reqwest::Client::new().request(method.clone(), gw.admin_url(path));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    if method == reqwest::Method::POST && path == "/consumers" {
        req = req.json(&json!({ "name": "mallory" }));
    }
    let r = req.send().await.expect("admin request");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, challenge, r.json().await.unwrap_or(Value::Null))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn generation(gw: &Aistack) -> Value {
    let (status, _, body) = call(gw, "GET", "/status", Some(&bearer(READ_WRITE))).await;
    assert_eq!(status, 200, "{body}");
    body["config"]["generation"].clone()
}

const READS: [&str; 6] = [
    "/status",
    "/config",
    "/routes",
    "/upstreams",
    "/plugins",
    "/metrics",
];

#[tokio::test]
async fn read_only_and_read_write_tokens_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = aistack_e2e::filters::install("conf-headers", dir.path());
    let ports = Ports::free();
    let admin = format!("127.0.0.1:{}", ports.admin);
    let cfg = config(ports, echo.port(), &wasm, &admin, &tokens(), "");
    let gw = Aistack::start("gateway", &cfg, ports, dir.path()).await;

    // Both tokens read everything.
    for token in [READ_ONLY, READ_WRITE] {
        for path in READS {
            let (status, _, body) = call(&gw, "GET", path, Some(&bearer(token))).await;
            assert_eq!(status, 200, "GET {path}: {body}");
            if path != "/metrics" {
                assert!(body.is_object(), "GET {path}: JSON");
            }
        }
        let (status, _, _) = call(&gw, "HEAD", "/status", Some(&bearer(token))).await;
        assert_eq!(status, 200, "HEAD");
    }

    // The read-only token changes nothing: 403 JSON, whatever the endpoint.
    for (method, path) in [
        ("POST", "/config/reload"),
        ("POST", "/consumers"),
        ("DELETE", "/consumers/alice"),
    ] {
        let (status, challenge, body) = call(&gw, method, path, Some(&bearer(READ_ONLY))).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(
            body["error"]["code"], "forbidden",
            "{method} {path}: {body}"
        );
        assert!(body["error"]["message"].is_string(), "{body}");
        assert!(challenge.is_empty(), "{challenge}");
    }
    assert_eq!(
        generation(&gw).await,
        1,
        "the read-only token reloaded nothing"
    );

    // The read-write token reloads.
    let (status, _, body) = call(&gw, "POST", "/config/reload", Some(&bearer(READ_WRITE))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "ok", "{body}");
    assert_eq!(generation(&gw).await, 2);

    // No token, a wrong one, another scheme, a token's SHA-256 (the form the gateway
    // keeps), the read-write token with a byte more or less: 401 JSON with the challenge.
    let digest = sha256_hex(READ_WRITE);
    let refused = [
        None,
        Some(bearer("wrong-token-of-decent-length")),
        Some(format!("Basic {READ_WRITE}")),
        Some(READ_WRITE.to_owned()),
        Some(bearer(&digest)),
        Some(bearer(&format!("{READ_WRITE}x"))),
        Some(bearer(&READ_WRITE[..READ_WRITE.len() - 1])),
    ];
    for authorization in &refused {
        for (method, path) in [("GET", "/status"), ("POST", "/config/reload")] {
            let (status, challenge, body) = call(&gw, method, path, authorization.as_deref()).await;
            let what = format!("{method} {path} with {authorization:?}");
            assert_eq!(status, 401, "{what}: {body}");
            assert!(challenge.starts_with("Bearer "), "{what}: {challenge:?}");
            assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
        }
    }
    assert_eq!(generation(&gw).await, 2, "no refused call reloaded");

    // The scheme's name is case-insensitive (RFC 9110, section 11.1).
    let (status, _, body) = call(&gw, "GET", "/status", Some(&format!("bearer {READ_ONLY}"))).await;
    assert_eq!(status, 200, "{body}");
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn routes_and_plugins_show_the_config_in_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = aistack_e2e::filters::install("conf-headers", dir.path());
    let ports = Ports::free();
    let admin = format!("127.0.0.1:{}", ports.admin);
    let cfg = config(ports, echo.port(), &wasm, &admin, &tokens(), "");
    let gw = Aistack::start("gateway", &cfg, ports, dir.path()).await;
    let read = Some(bearer(READ_ONLY));

    let (status, _, body) = call(&gw, "GET", "/routes", read.as_deref()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["routes"],
        json!([
            { "name": "api", "host": null, "path": "/api", "methods": [], "strip_prefix": false,
              "upstream": "echo", "plugins": ["request-id"] },
            { "name": "custom", "host": null, "path": "/custom", "methods": [],
              "strip_prefix": false, "upstream": "echo", "plugins": ["conf-headers"] },
        ])
    );

    let (status, _, body) = call(&gw, "GET", "/plugins", read.as_deref()).await;
    assert_eq!(status, 200, "{body}");
    let plugins = body["plugins"].as_array().expect("a list");
    let find = |name: &str| {
        plugins
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    assert_eq!(find("request-id")["kind"], "built-in");
    assert_eq!(find("request-id")["routes"], json!(["api"]));
    assert_eq!(find("rate-limit")["routes"], json!([]), "built in, unused");
    let custom = find("conf-headers");
    assert_eq!(custom["kind"], "custom");
    assert_eq!(custom["routes"], json!(["custom"]));
    assert!(
        custom["path"].as_str().is_some_and(|p| p.ends_with(&wasm)),
        "{custom}"
    );
    let builtin = plugins.iter().filter(|p| p["kind"] == "built-in").count();
    assert_eq!(
        builtin + 1,
        plugins.len(),
        "the built-ins and one custom filter"
    );

    // A reloaded config is what they show next.
    let more = "  - name: added\n    path: /added\n    methods: [GET]\n    upstream: echo\n    \
                plugins:\n      - name: request-id\n";
    let cfg = config(ports, echo.port(), &wasm, &admin, &tokens(), more);
    std::fs::write(&gw.config_path, cfg).expect("write config");
    let (status, _, body) = call(&gw, "POST", "/config/reload", Some(&bearer(READ_WRITE))).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = call(&gw, "GET", "/routes", read.as_deref()).await;
    let names: Vec<&str> = body["routes"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["api", "custom", "added"]);
    assert_eq!(body["routes"][2]["methods"], json!(["GET"]));
    let (_, _, body) = call(&gw, "GET", "/plugins", read.as_deref()).await;
    let request_id = body["plugins"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "request-id"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(request_id["routes"], json!(["api", "added"]), "{body}");
}

/// Runs `aistack ARGS…` (in `dir`), which must end by itself within 30 s: its exit
/// status and standard error.
async fn run_to_end(args: &[&str], dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    let child = tokio::process::Command::new(aistack_e2e::aistack_bin())
        .args(args)
        .current_dir(dir)
        .env("AISTACK_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn aistack");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`aistack {}` still running after 30 s", args.join(" ")))
        .expect("wait");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_admin_address_beyond_loopback_needs_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = aistack_e2e::filters::install("conf-headers", dir.path());
    let ports = Ports::free();
    let everywhere = format!("0.0.0.0:{}", ports.admin);
    let path = dir.path().join("open.yaml");
    let file = path.to_str().expect("utf8");
    let refused = "open.yaml:4:12: `admin.address`: the admin API may listen beyond loopback \
                   only with `admin.token` set";

    for address in [everywhere.as_str(), "'[::]:9080'", "192.0.2.1:9080"] {
        let cfg = config(ports, echo.port(), &wasm, address, "", "");
        std::fs::write(&path, cfg).expect("write config");
        let (status, stdout, stderr) = run_cli(&["validate", file], dir.path());
        assert!(!status.success(), "{address}: {stdout}");
        assert!(stderr.contains(refused), "{address}: {stderr}");
    }

    // The process refuses to start too, before it listens anywhere.
    let cfg = config(ports, echo.port(), &wasm, &everywhere, "", "");
    std::fs::write(&path, cfg).expect("write config");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf8");
    for mode in ["gateway", "up"] {
        let (status, stderr) =
            run_to_end(&[mode, "--config", file, "--data-dir", data], dir.path()).await;
        assert!(!status.success(), "{mode}: {status}");
        assert!(stderr.contains(refused), "{mode}: {stderr}");
        assert!(!stderr.contains("panicked"), "{mode}: {stderr}");
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", ports.admin)).is_err(),
        "nothing listens on the admin port"
    );

    // The other token rules, each named by its key.
    let bad_tokens = [
        ("  token: too-short\n", "`admin.token`: too short"),
        (
            "  token: read-write-admin-token-0123\n  read_only_token: short\n",
            "`admin.read_only_token`: too short",
        ),
        (
            "  token: read-write-admin-token-0123\n  read_only_token: read-write-admin-token-0123\n",
            "`admin.read_only_token`: must differ from `admin.token`",
        ),
        (
            "  read_only_token: read-only-admin-token-4567\n",
            "`admin.token`: `admin.read_only_token` needs `admin.token` too",
        ),
    ];
    for (keys, error) in bad_tokens {
        let local = format!("127.0.0.1:{}", ports.admin);
        std::fs::write(&path, config(ports, echo.port(), &wasm, &local, keys, ""))
            .expect("write config");
        let (status, stdout, stderr) = run_cli(&["validate", file], dir.path());
        assert!(!status.success(), "{keys}: {stdout}");
        assert!(stderr.contains(error), "{keys}: {stderr}");
    }

    // With a token it starts there, and asks for it.
    let cfg = config(ports, echo.port(), &wasm, &everywhere, &tokens(), "");
    let gw = Aistack::start("gateway", &cfg, ports, dir.path()).await;
    let (status, challenge, _) = call(&gw, "GET", "/status", None).await;
    assert_eq!((status, challenge.starts_with("Bearer ")), (401, true));
    let (status, _, body) = call(&gw, "GET", "/status", Some(&bearer(READ_WRITE))).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_changed_admin_token_takes_a_restart_and_a_reload_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = aistack_e2e::filters::install("conf-headers", dir.path());
    let ports = Ports::free();
    let admin = format!("127.0.0.1:{}", ports.admin);
    let cfg = config(ports, echo.port(), &wasm, &admin, &tokens(), "");
    let gw = Aistack::start("gateway", &cfg, ports, dir.path()).await;

    let rotated = "rotated-admin-token-890123";
    let keys = format!("  token: {rotated}\n  read_only_token: {READ_ONLY}\n");
    let cfg = config(ports, echo.port(), &wasm, &admin, &keys, "");
    std::fs::write(&gw.config_path, cfg).expect("write config");
    let (status, _, body) = call(&gw, "POST", "/config/reload", Some(&bearer(READ_WRITE))).await;
    assert_eq!(status, 200, "{body}");
    let output = gw.wait_for_output("admin token changes").await;
    assert!(
        output.contains("admin token changes take effect after a restart"),
        "{output}"
    );
    assert!(!output.contains(rotated), "the token is not logged");
    // The tokens of the start stay in force.
    let (status, _, _) = call(&gw, "GET", "/status", Some(&bearer(READ_WRITE))).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&gw, "GET", "/status", Some(&bearer(rotated))).await;
    assert_eq!(status, 401);
}

/// Tokens given as their SHA-256 digest (`sha256:<hex>`), so that the config file holds
/// no secret: the token itself opens the API, the digest string does not, and a digest
/// that is not 64 hex digits is refused naming its key.
#[tokio::test]
async fn tokens_given_as_digests_open_the_api_and_the_digest_does_not() {
    use sha2::Digest as _;
    let hex = |t: &str| {
        sha2::Sha256::digest(t.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = aistack_e2e::filters::install("conf-headers", dir.path());
    let ports = Ports::free();
    let admin = format!("127.0.0.1:{}", ports.admin);
    let (rw_digest, ro_digest) = (hex(READ_WRITE), hex(READ_ONLY));
    let keys = format!("  token: sha256:{rw_digest}\n  read_only_token: sha256:{ro_digest}\n");
    let cfg = config(ports, echo.port(), &wasm, &admin, &keys, "");
    let gw = Aistack::start("gateway", &cfg, ports, dir.path()).await;

    let (status, _, body) = call(&gw, "POST", "/config/reload", Some(&bearer(READ_WRITE))).await;
    assert_eq!(status, 200, "the read-write token: {body}");
    let (status, _, body) = call(&gw, "POST", "/config/reload", Some(&bearer(READ_ONLY))).await;
    assert_eq!(status, 403, "the read-only token: {body}");
    let (status, _, body) = call(&gw, "GET", "/status", Some(&bearer(READ_ONLY))).await;
    assert_eq!(status, 200, "the read-only token reads: {body}");
    for presented in [format!("sha256:{rw_digest}"), rw_digest.clone()] {
        let (status, _, body) = call(&gw, "GET", "/status", Some(&bearer(&presented))).await;
        assert_eq!(status, 401, "the digest is not a token: {body}");
    }
    drop(gw);

    let bad = config(
        ports,
        echo.port(),
        &wasm,
        &admin,
        "  token: sha256:not-hex-at-all\n",
        "",
    );
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad).expect("write config");
    let (status, _, stderr) = run_cli(
        &["validate", path.to_str().expect("utf-8 path")],
        dir.path(),
    );
    assert!(!status.success(), "a malformed digest is refused");
    assert!(
        stderr.contains("admin.token") && stderr.contains("64 hex digits"),
        "{stderr}"
    );
}
