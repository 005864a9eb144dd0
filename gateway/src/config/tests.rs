//! Config loading: each kind of bad input names file, line, column and key.

use std::path::Path;

use super::{ConfigErrors, GatewayConfig, load_str};

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<GatewayConfig, ConfigErrors> {
    load_str(
        text,
        "test.yaml",
        Path::new("."),
        Path::new("/tmp/data"),
        &no_env,
    )
}

fn load_err(text: &str) -> ConfigErrors {
    match load(text) {
        Ok(_) => panic!("config should be refused:\n{text}"),
        Err(e) => e,
    }
}

const MINIMAL: &str = "upstreams:\n  b:\n    targets: [127.0.0.1:9]\nroutes:\n  - name: r\n    path: /api\n    upstream: b\n";

#[test]
fn minimal_config_gets_defaults() {
    let cfg = load(MINIMAL).expect("valid");
    let addresses: Vec<_> = cfg.listeners.iter().map(|l| l.address).collect();
    assert_eq!(addresses, vec!["0.0.0.0:8080".parse().expect("addr")]);
    assert!(cfg.listeners[0].tls.is_none());
    assert_eq!(cfg.admin.address.to_string(), "127.0.0.1:9080");
    assert_eq!(cfg.backend.address.to_string(), "127.0.0.1:8081");
    assert_eq!(cfg.database_url, "sqlite:///tmp/data/aistack.db");
    assert_eq!(cfg.routes[0].path, "/api");
    assert_eq!(cfg.upstreams[cfg.routes[0].upstream].name, "b");
}

#[test]
fn shipped_default_config_is_valid() {
    let text = include_str!("../../../config/aistack.yaml");
    let cfg = load(text).expect("config/aistack.yaml must be valid");
    assert_eq!(cfg.routes[0].name, "api");
    assert_eq!(cfg.routes[0].plugins[0].name, "request-id");
}

#[test]
fn typo_in_key_names_line_column_and_key() {
    let e = load_err(
        "upstreams:\n  b:\n    targets: [127.0.0.1:9]\nroutes:\n  - name: r\n    upsteam: b\n",
    );
    let first = &e.0[0];
    assert_eq!((first.line, first.column), (6, 5), "{first}");
    assert_eq!(first.key, "routes[0].upsteam");
    assert!(first.message.contains("unknown field `upsteam`"), "{first}");
    assert!(
        !first.message.contains("at line"),
        "the place is said once: {first}"
    );
    assert!(
        first
            .to_string()
            .starts_with("test.yaml:6:5: `routes[0].upsteam`:"),
        "{first}"
    );
}

#[test]
fn unknown_top_level_key_is_refused() {
    let e = load_err("listners:\n  - address: 0.0.0.0:1\n");
    assert_eq!(e.0[0].key, "listners");
    assert_eq!(e.0[0].line, 1);
}

#[test]
fn a_duplicate_key_is_named_by_its_path() {
    let e = load_err("listeners: []\nlisteners: []\n");
    assert_eq!((e.0[0].line, e.0[0].key.as_str()), (2, "listeners"), "{e}");
    let e = load_err(
        "upstreams:\n  b:\n    targets: [127.0.0.1:9]\nroutes:\n  - name: r\n    path: /\n    upstream: b\n    upstream: b\n",
    );
    let first = &e.0[0];
    assert_eq!(
        (first.line, first.key.as_str()),
        (8, "routes[0].upstream"),
        "{first}"
    );
    assert_eq!(
        first.message,
        "duplicate key `upstream`: a key may appear only once in a mapping"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let e = load_err("server:\n  threads: many\n");
    assert_eq!(e.0[0].key, "server.threads");
    assert_eq!((e.0[0].line, e.0[0].column), (2, 12));
}

#[test]
fn bad_duration_is_explained() {
    let e = load_err("upstreams:\n  b:\n    targets: [127.0.0.1:9]\n    connect_timeout: soon\n");
    assert_eq!(e.0[0].key, "upstreams.b.connect_timeout");
    assert!(
        e.0[0].message.contains("invalid duration `soon`"),
        "{}",
        e.0[0]
    );
    assert_eq!(e.0[0].line, 4);
}

#[test]
fn yaml_syntax_error_has_a_place() {
    let e = load_err("routes: [\n");
    assert_eq!(e.0[0].line, 1);
    assert!(e.0[0].column > 0);
}

#[test]
fn semantic_errors_are_all_reported_with_places() {
    let text = "listeners:\n  - address: nowhere\nupstreams:\n  b:\n    targets: [127.0.0.1:9]\nroutes:\n  - name: r\n    path: api\n    upstream: missing\n    plugins:\n      - name: nope\n";
    let e = load_err(text);
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"listeners[0].address"), "{e}");
    assert!(keys.contains(&"routes[0].path"), "{e}");
    assert!(keys.contains(&"routes[0].upstream"), "{e}");
    assert!(keys.contains(&"routes[0].plugins[0].name"), "{e}");
    let upstream =
        e.0.iter()
            .find(|e| e.key == "routes[0].upstream")
            .expect("upstream error");
    assert_eq!((upstream.line, upstream.column), (9, 15));
    assert!(
        upstream
            .message
            .contains("unknown upstream `missing`; defined: b")
    );
    let plugin =
        e.0.iter()
            .find(|e| e.key == "routes[0].plugins[0].name")
            .expect("plugin error");
    assert_eq!(plugin.line, 11);
    assert!(
        plugin.message.contains("request-id"),
        "lists the built-ins: {plugin}"
    );
}

#[test]
fn missing_wasm_file_is_named() {
    let e = load_err("plugins:\n  mine:\n    path: does/not/exist.wasm\n");
    assert_eq!(e.0[0].key, "plugins.mine.path");
    assert_eq!(e.0[0].line, 3);
    assert!(e.0[0].message.contains("no such file"), "{}", e.0[0]);
}

#[test]
fn duplicate_route_names_are_refused() {
    let text = format!("{MINIMAL}  - name: r\n    path: /other\n    upstream: b\n");
    let e = load_err(&text);
    assert_eq!(e.0[0].key, "routes[1].name");
    assert!(e.0[0].message.contains("duplicate route name"));
}

#[test]
fn admin_beyond_loopback_needs_a_token() {
    let e = load_err("admin:\n  address: 0.0.0.0:9080\n");
    assert_eq!(e.0[0].key, "admin.address");
    let ok = load("admin:\n  address: 0.0.0.0:9080\n  token: 0123456789abcdef0123\n");
    assert!(ok.is_ok());
}

#[test]
fn env_interpolation_and_overrides() {
    let env = |name: &str| match name {
        "TOKEN" => Some("s3cr3t-s3cr3t-s3cr3t".to_owned()),
        "DATABASE_URL" => Some("postgres://db/x".to_owned()),
        _ => None,
    };
    let cfg = load_str(
        "admin:\n  token: ${TOKEN}\n",
        "t.yaml",
        Path::new("."),
        Path::new("d"),
        &env,
    )
    .expect("valid");
    assert_eq!(cfg.admin.token.as_deref(), Some("s3cr3t-s3cr3t-s3cr3t"));
    assert_eq!(cfg.database_url, "postgres://db/x");
    let e = load_err("admin:\n  token: ${MISSING_VAR}\n");
    assert_eq!((e.0[0].line, e.0[0].column), (2, 10));
    assert_eq!(e.0[0].key, "${MISSING_VAR}");
    assert!(e.0[0].message.contains("not set"));
    let literal = load_str(
        "admin:\n  token: a$${B}cdefghijklmnopq\n",
        "t.yaml",
        Path::new("."),
        Path::new("d"),
        &no_env,
    )
    .expect("escaped");
    assert_eq!(literal.admin.token.as_deref(), Some("a${B}cdefghijklmnopq"));
    // Comments are not interpolated.
    let commented =
        load("admin:\n  # token: ${NOT_SET}\n  address: 127.0.0.1:9080 # ${NOT_SET_EITHER}\n");
    assert!(commented.is_ok(), "{:?}", commented.err());
}

#[test]
fn plugin_limits_default_and_are_read() {
    let limits = load(MINIMAL).expect("valid").server.plugins;
    assert_eq!(limits.memory_limit, 64 << 20);
    assert_eq!(limits.call_deadline, std::time::Duration::from_millis(100));
    assert_eq!(limits.max_plugins, 16);
    let text = format!(
        "server:\n  threads: 2\n  plugins:\n    memory_limit: 8MiB\n    call_deadline: 250ms\n    max_plugins: 40\n{MINIMAL}"
    );
    let limits = load(&text).expect("valid").server.plugins;
    assert_eq!(limits.memory_limit, 8 << 20);
    assert_eq!(limits.call_deadline, std::time::Duration::from_millis(250));
    assert_eq!(limits.max_plugins, 40);
    let bytes = load("server:\n  plugins: { memory_limit: 1048576 }\n").expect("valid");
    assert_eq!(
        bytes.server.plugins.memory_limit,
        1 << 20,
        "a plain number is bytes"
    );
}

#[test]
fn plugin_limits_out_of_range_are_all_reported_at_their_keys() {
    let e = load_err(
        "server:\n  threads: 8\n  plugins:\n    memory_limit: 0\n    call_deadline: 0s\n    max_plugins: 0\n",
    );
    let places: Vec<(&str, u64, u64)> =
        e.0.iter()
            .map(|e| (e.key.as_str(), e.line, e.column))
            .collect();
    assert_eq!(
        places,
        [
            ("server.plugins.memory_limit", 4, 19),
            ("server.plugins.call_deadline", 5, 20),
            ("server.plugins.max_plugins", 6, 18),
        ],
        "{e}"
    );
    assert!(e.0[0].message.contains("between 64KiB"), "{e}");
    assert!(e.0[1].message.contains("between 1ms and 10s"), "{e}");
    assert_eq!(e.0[2].message, "must be at least 1");
    assert!(
        e.to_string()
            .starts_with("test.yaml:4:19: `server.plugins.memory_limit`: must be between"),
        "{e}"
    );

    let absurd = load_err(
        "server:\n  threads: 8\n  plugins:\n    memory_limit: 5GiB\n    call_deadline: 1h\n    max_plugins: 100000\n",
    );
    let keys: Vec<&str> = absurd.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.plugins.memory_limit",
            "server.plugins.call_deadline",
            "server.plugins.max_plugins"
        ],
        "{absurd}"
    );
    assert!(
        absurd.0[2].message.contains("2000000 VM slots"),
        "names the pool it would need: {absurd}"
    );
}

#[test]
fn the_buffered_body_limit_is_bounded_by_pingoras_retry_buffer() {
    let ok = load("server:\n  plugins:\n    max_buffered_body: 8KiB\n").expect("valid");
    assert_eq!(ok.server.plugins.max_buffered_body, 8 * 1024);
    let e = load_err("server:\n  plugins:\n    max_buffered_body: 1MiB\n");
    assert_eq!(e.0[0].key, "server.plugins.max_buffered_body", "{e}");
    assert_eq!((e.0[0].line, e.0[0].column), (3, 24), "{e}");
    assert!(e.0[0].message.contains("64KiB"), "{e}");
    // Only the runtime-shaping limits need a restart.
    let mut other = ok.server.plugins.clone();
    other.max_buffered_body = 2048;
    assert!(!ok.server.plugins.restart_needed(&other));
    other.max_plugins += 1;
    assert!(ok.server.plugins.restart_needed(&other));
}

#[test]
fn plugin_limits_refuse_what_they_cannot_parse() {
    let e = load_err("server:\n  plugins:\n    memory_limit: 64MB\n");
    assert_eq!(e.0[0].key, "server.plugins.memory_limit");
    assert_eq!(e.0[0].line, 3);
    assert!(e.0[0].message.contains("invalid size `64MB`"), "{}", e.0[0]);
    let e = load_err("server:\n  plugins:\n    call_deadline: quick\n");
    assert_eq!(e.0[0].key, "server.plugins.call_deadline");
    assert!(
        e.0[0].message.contains("invalid duration `quick`"),
        "{}",
        e.0[0]
    );
    let e = load_err("server:\n  plugins:\n    memroy_limit: 8MiB\n");
    assert_eq!(e.0[0].key, "server.plugins.memroy_limit");
    assert!(e.0[0].message.contains("unknown field"), "{}", e.0[0]);
}

#[test]
fn tls_settings_are_refused_at_their_keys() {
    let text = "listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates: []\n      min_version: 1.1\n\
                upstreams:\n  b:\n    targets: [127.0.0.1:9]\n    tls:\n      ca: no-such-ca.pem\n\
                \x20 c:\n    targets: [127.0.0.1:9]\n    tls: true\n    health_check:\n      path: /healthz\n";
    let e = load_err(text);
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"listeners[0].tls.certificates"), "{e}");
    assert!(keys.contains(&"upstreams.b.tls.ca"), "{e}");
    assert!(keys.contains(&"upstreams.c.health_check.type"), "{e}");
    let version =
        e.0.iter()
            .find(|e| e.key == "listeners[0].tls.min_version")
            .expect("min_version error");
    assert_eq!((version.line, version.column), (5, 20));
    assert!(version.message.contains("TLS 1.1 is not supported"), "{e}");
}

#[test]
fn upstream_tls_is_a_bool_or_a_map_of_known_keys() {
    let with =
        |tls: &str| format!("upstreams:\n  b:\n    targets: [127.0.0.1:9]\n    tls: {tls}\n");
    let plain = load(&with("false")).expect("tls: false");
    assert!(plain.upstreams[0].tls.is_none());
    let on = load(&with("true")).expect("tls: true");
    let tls = on.upstreams[0].tls.as_ref().expect("tls");
    assert!(tls.verify && tls.sni.is_none() && tls.ca.is_none());
    let off = load(&with("{verify: false, sni: api.test}")).expect("a map");
    let tls = off.upstreams[0].tls.as_ref().expect("tls");
    assert!(!tls.verify);
    assert_eq!(tls.sni.as_deref(), Some("api.test"));
    assert_eq!(
        super::tls::warnings(&off),
        vec![
            "upstreams.b.tls.verify is false: the upstream's certificate is not verified \
             (anyone on the path can impersonate it)"
                .to_owned()
        ]
    );
    let e = load_err(&with("{verfy: false}"));
    assert!(e.0[0].message.contains("unknown field `verfy`"), "{e}");
    assert_eq!(e.0[0].line, 4, "{e}");
    let e = load_err(&with("maybe"));
    assert_eq!(e.0[0].key, "upstreams.b.tls", "{e}");
}

#[test]
fn callouts_never_pick_a_tls_upstream() {
    let text = "upstreams:\n  plain:\n    targets: [127.0.0.1:9]\n  secure:\n    targets: [127.0.0.1:9]\n    tls: true\n";
    let cfg = load(text).expect("config");
    let directory = crate::wasm::CalloutUpstreams::from_config(&cfg);
    assert!(directory.pick("plain").is_some());
    // Listed (a filter may route the request there), never dialed in plaintext.
    assert!(directory.contains("secure"));
    assert!(directory.is_tls("secure"));
    assert!(directory.pick("secure").is_none());
}
