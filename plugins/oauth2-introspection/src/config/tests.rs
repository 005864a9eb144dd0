use super::*;

fn minimal() -> serde_json::Value {
    serde_json::json!({
        "introspection": {"upstream": "idp", "path": "/introspect"},
        "client_id": "gateway",
        "client_secret": "s3cret"
    })
}

fn parsed(value: &serde_json::Value) -> Result<Config, String> {
    parse(value.to_string().as_bytes())
}

#[test]
fn defaults() {
    let c = parsed(&minimal()).expect("valid");
    assert_eq!(c.endpoint.authority, "idp");
    assert_eq!(c.endpoint.timeout, DEFAULT_TIMEOUT);
    assert_eq!(c.consumer_claim, "sub");
    assert_eq!(c.consumer_name_claim, "sub");
    assert_eq!(c.header, "authorization");
    assert!(!c.hide_credentials);
    assert!(c.required_scopes.is_empty());
    assert_eq!(c.cache.max_ttl, DEFAULT_MAX_TTL);
    assert_eq!(c.cache.negative_ttl, DEFAULT_NEGATIVE_TTL);
    assert_eq!(c.cache.max_entries, DEFAULT_MAX_ENTRIES);
    // base64("gateway:s3cret")
    assert_eq!(c.client_authorization, "Basic Z2F0ZXdheTpzM2NyZXQ=");
}

#[test]
fn refusals_name_the_key() {
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = minimal();
        f(&mut v);
        parsed(&v).err().unwrap_or_default()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            with(&|v| {
                v.as_object_mut().map(|o| o.remove("client_id"));
            }),
            "missing field `client_id`",
        ),
        (
            with(&|v| v["client_id"] = "".into()),
            "client_id must not be empty",
        ),
        (
            with(&|v| v["client_secret"] = "".into()),
            "client_secret must not be empty",
        ),
        (
            with(&|v| {
                v["introspection"]
                    .as_object_mut()
                    .map(|o| o.remove("upstream"));
            }),
            "missing field `upstream`",
        ),
        (
            with(&|v| v["introspection"]["path"] = "introspect".into()),
            "introspection.path must start with `/`",
        ),
        (
            with(&|v| v["introspection"]["timeout"] = "soon".into()),
            "introspection.timeout",
        ),
        (
            with(&|v| v["required_scopes"] = serde_json::json!(["a b"])),
            "required_scopes[0]",
        ),
        (
            with(&|v| v["cache"] = serde_json::json!({"ttl": "1s"})),
            "unknown field `ttl`",
        ),
        (
            with(&|v| v["forward_claims"] = serde_json::json!({"email": "bad header"})),
            "forward_claims.email",
        ),
    ];
    for (error, want) in cases {
        assert!(error.contains(want), "want {want:?} in {error:?}");
    }
}

#[test]
fn durations() {
    assert_eq!(duration("0s"), Ok(Duration::ZERO));
    assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
    assert!(duration("5 minutes").is_err());
}
