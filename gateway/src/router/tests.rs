use super::*;
use crate::config::model::RouteSpec;

fn route(name: &str, host: Option<&str>, path: &str, methods: &[&str]) -> RouteSpec {
    RouteSpec {
        name: name.to_owned(),
        host: host.map(str::to_owned),
        path: path.to_owned(),
        methods: methods.iter().map(|m| m.parse().expect("method")).collect(),
        strip_prefix: false,
        upstream: 0,
        plugins: Vec::new(),
        timeout: None,
        retries: crate::config::model::RetrySpec {
            max: 0,
            budget: 0.0,
            non_idempotent: false,
        },
        upstream_host: crate::config::model::UpstreamHost::Preserve,
        websocket_idle_timeout: None,
    }
}

#[test]
fn normalizes_dot_segments_and_unreserved_escapes() {
    let cases = [
        ("/a/b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/../../etc", "/etc"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/%61pi", "/api"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb", "/a%2Fb"),
        ("/%2e%2e/x", "/x"),
        ("/a/%2E/b", "/a/b"),
        ("/a%20b", "/a%20b"),
        ("/a//b", "/a//b"),
        ("/", "/"),
        ("/.a/..b", "/.a/..b"),
        ("/100%", "/100%"),
        ("/x%zz", "/x%zz"),
        ("/ü/./x", "/ü/x"),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_path(input), want, "input {input}");
    }
    assert!(matches!(normalize_path("/plain/path"), Cow::Borrowed(_)));
}

#[test]
fn prefix_matches_on_segment_boundaries() {
    assert!(prefix_matches("/api", "/api"));
    assert!(prefix_matches("/api", "/api/"));
    assert!(prefix_matches("/api", "/api/x"));
    assert!(!prefix_matches("/api", "/apix"));
    assert!(!prefix_matches("/api", "/ap"));
    assert!(prefix_matches("/", "/anything"));
}

#[test]
fn longest_prefix_wins_then_method_then_host() {
    let routes = vec![
        route("root", None, "/", &[]),
        route("api", None, "/api", &[]),
        route("api-v1-get", None, "/api/v1", &["GET"]),
        route("host-api", Some("example.com"), "/api", &[]),
    ];
    let r = Router::new(&routes);
    let get = http::Method::GET;
    let post = http::Method::POST;
    assert_eq!(r.find(None, "/api/v1/x", &get), Some(2));
    assert_eq!(r.find(None, "/api/v1/x", &post), Some(1));
    assert_eq!(r.find(None, "/apix", &get), Some(0));
    assert_eq!(r.find(Some("example.com"), "/api/v1", &get), Some(3));
    assert_eq!(r.find(Some("EXAMPLE.com"), "/api", &get), Some(3));
    assert_eq!(r.find(Some("example.com"), "/other", &get), Some(0));
    assert_eq!(r.find(Some("other.org"), "/api", &get), Some(1));
}

#[test]
fn no_match_without_catch_all() {
    let r = Router::new(&[route("api", None, "/api", &["GET"])]);
    assert_eq!(r.find(None, "/", &http::Method::GET), None);
    assert_eq!(r.find(None, "/api", &http::Method::DELETE), None);
}
