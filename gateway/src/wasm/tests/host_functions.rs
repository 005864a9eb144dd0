//! Host functions exercised directly on a VM's Store data (no guest): header maps with
//! their pseudo-headers, and properties with Envoy's encodings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::{info, request, response};
use crate::wasm::abi::Status;
use crate::wasm::abi::headers::{Edit, edit_map, lookup, replace_map, serialize_map};
use crate::wasm::abi::pairs;
use crate::wasm::abi::properties;
use crate::wasm::host::{HostState, Phase, PluginIdentity, RequestSnapshot};

const REQUEST: u32 = 0;
const RESPONSE: u32 = 2;

fn host() -> HostState {
    let identity = Arc::new(PluginIdentity {
        name: Arc::from("unit"),
        root_id: Arc::from("root-a"),
        configuration: Arc::from(b"{}".to_vec()),
        vm_configuration: Arc::from(Vec::new()),
        upstreams: Arc::default(),
        filter_id: 0,
        metrics: Arc::new(crate::wasm::metrics::PluginMetrics::new(None)),
        foreign: Arc::default(),
    });
    HostState::new(identity, 1 << 20)
}

/// A host in `on_request_headers` of context 7, with `path` swapped in.
fn in_request(path: &str) -> HostState {
    let mut host = host();
    host.http.request = request(path);
    host.http.request_live = true;
    let mut info = info("rid-1");
    info.client_addr = Some(SocketAddr::from(([192, 0, 2, 7], 40_000)));
    info.server_addr = Some(SocketAddr::from(([127, 0, 0, 1], 8080)));
    info.start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    host.http.info.fill(&info);
    host.call.begin(Phase::RequestHeaders, 7);
    host
}

fn value(host: &HostState, map: u32, key: &str) -> Result<String, Status> {
    let mut out = Vec::new();
    lookup(host, map, key.as_bytes(), &mut out)?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

fn property(host: &HostState, path: &[&str]) -> Result<Vec<u8>, Status> {
    let mut out = Vec::new();
    properties::lookup(host, path.join("\0").as_bytes(), &mut out)?;
    Ok(out)
}

fn text(bytes: Result<Vec<u8>, Status>) -> Result<String, Status> {
    bytes.map(|b| String::from_utf8(b).expect("utf-8"))
}

#[test]
fn request_headers_expose_envoy_pseudo_headers() {
    let host = in_request("/a/b?x=1");
    assert_eq!(value(&host, REQUEST, ":method").as_deref(), Ok("GET"));
    assert_eq!(value(&host, REQUEST, ":path").as_deref(), Ok("/a/b?x=1"));
    assert_eq!(
        value(&host, REQUEST, ":authority").as_deref(),
        Ok("example.test")
    );
    assert_eq!(value(&host, REQUEST, ":scheme").as_deref(), Ok("http"));
    assert_eq!(
        value(&host, REQUEST, "User-Agent").as_deref(),
        Ok("tests/1.0")
    );
    assert_eq!(value(&host, REQUEST, "host").as_deref(), Ok("example.test"));
    assert_eq!(value(&host, REQUEST, "x-missing"), Err(Status::NotFound));
    assert_eq!(value(&host, REQUEST, ":bogus"), Err(Status::NotFound));
    assert_eq!(value(&host, REQUEST, "bad header"), Err(Status::NotFound));
}

#[test]
fn unavailable_maps_answer_like_envoy() {
    let mut host = in_request("/");
    assert_eq!(value(&host, RESPONSE, "x"), Err(Status::BadArgument));
    assert_eq!(value(&host, 1, "x"), Err(Status::BadArgument), "trailers");
    assert_eq!(
        value(&host, 8, "x"),
        Err(Status::BadArgument),
        "unknown map type"
    );
    assert_eq!(
        edit_map(&mut host, RESPONSE, b"x", b"1", Edit::Add),
        Err(Status::BadArgument)
    );
    assert_eq!(serialize_map(&mut host, RESPONSE), Ok(()));
    assert!(
        host.scratch.is_empty(),
        "an unavailable map reads as empty pairs"
    );
    host.http.request_live = false;
    host.call.begin(Phase::Log, 7);
    assert_eq!(
        value(&host, REQUEST, "x"),
        Err(Status::NotFound),
        "log phase"
    );
}

#[test]
fn request_pairs_list_pseudo_headers_first_and_host_once() {
    let mut host = in_request("/p");
    serialize_map(&mut host, REQUEST).expect("available");
    let scratch = host.scratch.clone();
    let pairs: Vec<(String, String)> = pairs::parse(&scratch)
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into(),
                String::from_utf8_lossy(v).into(),
            )
        })
        .collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [":authority", ":path", ":method", ":scheme", "user-agent"]
    );
    assert_eq!(pairs[1].1, "/p");
}

#[test]
fn header_edits_apply_to_the_swapped_in_request() {
    let mut host = in_request("/old");
    edit_map(&mut host, REQUEST, b"X-Added", b"1", Edit::Add).expect("add");
    edit_map(&mut host, REQUEST, b"x-added", b"2", Edit::Add).expect("add again");
    let req = &host.http.request;
    let added: Vec<_> = req.headers.get_all("x-added").iter().collect();
    assert_eq!(added, ["1", "2"]);
    edit_map(&mut host, REQUEST, b"x-added", b"3", Edit::Replace).expect("replace");
    assert_eq!(value(&host, REQUEST, "x-added").as_deref(), Ok("3"));
    edit_map(&mut host, REQUEST, b"user-agent", b"", Edit::Remove).expect("remove");
    assert_eq!(value(&host, REQUEST, "user-agent"), Err(Status::NotFound));
    edit_map(&mut host, REQUEST, b":path", b"/new?q=1", Edit::Replace).expect(":path");
    edit_map(&mut host, REQUEST, b":method", b"POST", Edit::Replace).expect(":method");
    edit_map(
        &mut host,
        REQUEST,
        b":authority",
        b"other.test",
        Edit::Replace,
    )
    .expect(":authority");
    let req = &host.http.request;
    assert_eq!(req.raw_path(), b"/new?q=1");
    assert_eq!(req.method, http::Method::POST);
    assert_eq!(
        req.headers.get("host").map(|v| v.as_bytes()),
        Some(&b"other.test"[..])
    );
    assert_eq!(host.call.host_note, None);
    let bad = edit_map(&mut host, REQUEST, b"x-bad", b"line\nbreak", Edit::Replace);
    assert_eq!(bad, Err(Status::BadArgument));
    assert!(
        host.call
            .host_note
            .as_deref()
            .is_some_and(|n| n.contains("x-bad"))
    );
}

#[test]
fn set_pairs_replaces_the_whole_map() {
    let mut host = in_request("/");
    let mut serialized = Vec::new();
    let map: [(&[u8], &[u8]); 3] = [
        (b":authority", b"new.test"),
        (b":path", b"/replaced"),
        (b"x-only", b"yes"),
    ];
    pairs::serialize(|| map.iter().copied(), &mut serialized);
    replace_map(&mut host, REQUEST, &serialized).expect("replaced");
    let req = &host.http.request;
    assert_eq!(req.raw_path(), b"/replaced");
    let names: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["host", "x-only"]);
}

#[test]
fn response_status_is_a_pseudo_header() {
    let mut host = host();
    host.http.response = response(404);
    host.http.response_live = true;
    host.http.info.fill(&info("r"));
    host.call.begin(Phase::ResponseHeaders, 9);
    assert_eq!(value(&host, RESPONSE, ":status").as_deref(), Ok("404"));
    edit_map(&mut host, RESPONSE, b":status", b"503", Edit::Replace).expect("status");
    assert_eq!(host.http.response.status.as_u16(), 503);
    assert_eq!(
        edit_map(&mut host, RESPONSE, b":status", b"abc", Edit::Replace),
        Err(Status::BadArgument)
    );
    assert_eq!(
        property(&host, &["response", "code"]),
        Ok(503i64.to_le_bytes().to_vec())
    );
    assert_eq!(
        value(&host, REQUEST, ":path"),
        Err(Status::BadArgument),
        "not in this phase"
    );
}

#[test]
fn request_properties_use_envoy_names_and_encodings() {
    let host = in_request("/a/b?x=1&y=2");
    assert_eq!(
        text(property(&host, &["request", "id"])).as_deref(),
        Ok("rid-1")
    );
    assert_eq!(
        text(property(&host, &["request", "path"])).as_deref(),
        Ok("/a/b?x=1&y=2")
    );
    assert_eq!(
        text(property(&host, &["request", "url_path"])).as_deref(),
        Ok("/a/b")
    );
    assert_eq!(
        text(property(&host, &["request", "query"])).as_deref(),
        Ok("x=1&y=2")
    );
    assert_eq!(
        text(property(&host, &["request", "host"])).as_deref(),
        Ok("example.test")
    );
    assert_eq!(
        text(property(&host, &["request", "method"])).as_deref(),
        Ok("GET")
    );
    assert_eq!(
        text(property(&host, &["request", "scheme"])).as_deref(),
        Ok("http")
    );
    assert_eq!(
        text(property(&host, &["request", "protocol"])).as_deref(),
        Ok("HTTP/1.1")
    );
    assert_eq!(
        text(property(&host, &["request", "useragent"])).as_deref(),
        Ok("tests/1.0")
    );
    assert_eq!(
        text(property(&host, &["request", "headers", "host"])).as_deref(),
        Ok("example.test")
    );
    assert_eq!(
        property(&host, &["request", "time"]),
        Ok(1_700_000_000_123_456_789i64.to_le_bytes().to_vec())
    );
    assert_eq!(
        text(property(&host, &["source", "address"])).as_deref(),
        Ok("192.0.2.7:40000")
    );
    assert_eq!(
        property(&host, &["source", "port"]),
        Ok(40_000i64.to_le_bytes().to_vec())
    );
    assert_eq!(
        text(property(&host, &["destination", "address"])).as_deref(),
        Ok("127.0.0.1:8080")
    );
    assert_eq!(
        property(&host, &["destination", "port"]),
        Ok(8080i64.to_le_bytes().to_vec())
    );
    assert_eq!(
        text(property(&host, &["route_name"])).as_deref(),
        Ok("test-route")
    );
    assert_eq!(
        text(property(&host, &["xds", "route_name"])).as_deref(),
        Ok("test-route")
    );
    assert_eq!(
        text(property(&host, &["plugin_name"])).as_deref(),
        Ok("unit")
    );
    assert_eq!(
        text(property(&host, &["plugin_root_id"])).as_deref(),
        Ok("root-a")
    );
    assert_eq!(
        property(&host, &["response", "code"]),
        Err(Status::NotFound)
    );
    assert_eq!(property(&host, &["request", "nope"]), Err(Status::NotFound));
    assert_eq!(property(&host, &["nothing"]), Err(Status::NotFound));
}

#[test]
fn request_properties_outlive_the_request_phase() {
    let mut host = in_request("/kept?a=b");
    let snapshot = RequestSnapshot::of(&host.http.request);
    host.http.request_live = false;
    host.http.state.snapshot = Some(snapshot);
    host.call.begin(Phase::Log, 7);
    assert_eq!(
        text(property(&host, &["request", "path"])).as_deref(),
        Ok("/kept?a=b")
    );
    assert_eq!(
        text(property(&host, &["request", "method"])).as_deref(),
        Ok("GET")
    );
    assert_eq!(
        text(property(&host, &["request", "host"])).as_deref(),
        Ok("example.test")
    );
    assert_eq!(
        property(&host, &["request", "useragent"]),
        Err(Status::NotFound)
    );
}

#[test]
fn set_property_values_are_read_back_but_never_shadow_well_known_ones() {
    let mut host = in_request("/");
    properties::store(&mut host, b"my_plugin\0user", b"alice").expect("stored");
    properties::store(&mut host, b"my_plugin\0user", b"bob").expect("replaced");
    properties::store(&mut host, b"request\0id", b"forged").expect("stored");
    assert_eq!(
        text(property(&host, &["my_plugin", "user"])).as_deref(),
        Ok("bob")
    );
    assert_eq!(
        text(property(&host, &["request", "id"])).as_deref(),
        Ok("rid-1")
    );
    assert_eq!(host.http.state.properties.len(), 2);
    let huge = vec![b'x'; 2 * 1024 * 1024];
    assert_eq!(
        properties::store(&mut host, b"big", &huge),
        Err(Status::BadArgument)
    );
}

#[test]
fn outside_a_request_request_properties_are_not_found() {
    let mut root = host();
    root.call.begin(Phase::Configure, 1);
    assert_eq!(property(&root, &["request", "id"]), Err(Status::NotFound));
    assert_eq!(property(&root, &["route_name"]), Err(Status::NotFound));
    assert_eq!(
        text(property(&root, &["plugin_name"])).as_deref(),
        Ok("unit")
    );
    assert_eq!(
        properties::store(&mut root, b"k", b"v"),
        Err(Status::NotFound)
    );
}

/// [`in_request`] with the config's upstreams `primary` and `backup`.
fn in_request_with_upstreams() -> HostState {
    let mut with = in_request("/");
    let target = SocketAddr::from(([127, 0, 0, 1], 9));
    let upstreams =
        ["primary", "backup"].map(|name| (name.to_owned(), vec![target], Duration::from_secs(1)));
    let identity = Arc::new(PluginIdentity {
        name: Arc::from("unit"),
        root_id: Arc::from(""),
        configuration: Arc::from(Vec::new()),
        vm_configuration: Arc::from(Vec::new()),
        upstreams: Arc::new(crate::wasm::CalloutUpstreams::new(upstreams)),
        filter_id: 0,
        metrics: Arc::new(crate::wasm::metrics::PluginMetrics::new(None)),
        foreign: Arc::default(),
    });
    let mut host = HostState::new(identity, 1 << 20);
    std::mem::swap(&mut host.http, &mut with.http);
    host.call.begin(Phase::RequestHeaders, 7);
    host
}

fn chosen(host: &HostState) -> Option<String> {
    host.http
        .request
        .extensions
        .get::<crate::wasm::UpstreamChoice>()
        .map(|c| c.0.to_string())
}

#[test]
fn a_filter_chooses_a_configured_upstream_during_the_request_headers() {
    let mut host = in_request_with_upstreams();
    properties::store(&mut host, b"aistack\0upstream", b"backup").expect("chosen");
    assert_eq!(chosen(&host).as_deref(), Some("backup"));
    assert_eq!(
        text(property(&host, &["aistack", "upstream"])).as_deref(),
        Ok("backup")
    );
    // Unknown names are refused, and leave the choice as it was.
    assert_eq!(
        properties::store(&mut host, b"aistack\0upstream", b"elsewhere"),
        Err(Status::BadArgument)
    );
    assert!(
        host.call
            .host_note
            .as_deref()
            .is_some_and(|n| n.contains("elsewhere"))
    );
    assert_eq!(chosen(&host).as_deref(), Some("backup"));
    // Empty: back to the route's upstream.
    properties::store(&mut host, b"aistack\0upstream", b"").expect("cleared");
    assert_eq!(chosen(&host), None);
    // Too late once the request headers are gone.
    host.http.request_live = false;
    host.call.begin(Phase::ResponseHeaders, 7);
    assert_eq!(
        properties::store(&mut host, b"aistack\0upstream", b"primary"),
        Err(Status::BadArgument)
    );
}

#[test]
fn configured_upstreams_can_be_asked_for_by_name_even_from_the_root_context() {
    let mut root = in_request_with_upstreams();
    root.http.info.present = false;
    root.http.request_live = false;
    root.call.begin(Phase::Configure, 1);
    assert_eq!(
        text(property(&root, &["aistack", "upstreams", "backup"])).as_deref(),
        Ok("backup")
    );
    assert_eq!(
        property(&root, &["aistack", "upstreams", "nowhere"]),
        Err(Status::NotFound)
    );
    assert_eq!(
        property(&host(), &["aistack", "upstreams", "backup"]),
        Err(Status::NotFound)
    );
}
