use super::*;

fn claims(v: serde_json::Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[test]
fn client_credentials_are_form_encoded_before_basic() {
    // RFC 6749 §2.3.1: "client:id" / "p@ss word" → "client%3Aid:p%40ss+word".
    let expected = base64::engine::general_purpose::STANDARD.encode("client%3Aid:p%40ss+word");
    assert_eq!(basic("client:id", "p@ss word"), format!("Basic {expected}"));
}

#[test]
fn the_form_body_encodes_the_token() {
    assert_eq!(
        form_body("a+b/c=="),
        "token=a%2Bb%2Fc%3D%3D&token_type_hint=access_token"
    );
    assert_eq!(form_encode("AZaz09*-._ ~"), "AZaz09*-._+%7E");
}

#[test]
fn only_rfc7662_answers_are_accepted() {
    let active = parse_response(Some("200"), br#"{"active":true,"sub":"u"}"#);
    assert_eq!(
        active,
        Ok(Verdict::Active(claims(serde_json::json!({"sub": "u"}))))
    );
    assert_eq!(
        parse_response(Some("200"), br#"{"active":false}"#),
        Ok(Verdict::Inactive)
    );
    for (status, body) in [
        (Some("200"), &b"<html>"[..]),
        (Some("200"), br#"["active"]"#),
        (Some("200"), br#"{"active":"true"}"#),
        (Some("200"), br#"{"sub":"u"}"#),
        (Some("401"), br#"{"error":"invalid_client"}"#),
        (None, b""),
    ] {
        assert!(parse_response(status, body).is_err(), "{status:?} {body:?}");
    }
}

#[test]
fn claims_are_checked_at_now() {
    let now = 1_000_000;
    let required = vec!["read".to_owned(), "write".to_owned()];
    let c = claims(serde_json::json!({"scope": "write other read", "exp": now + 60}));
    assert_eq!(check(&c, &required, now), Ok(()));
    let c = claims(serde_json::json!({"scope": "read", "exp": now + 60}));
    assert_eq!(check(&c, &required, now), Err(Refusal::Scope));
    let c = claims(serde_json::json!({"scope": "read readwrite"}));
    assert_eq!(check(&c, &required, now), Err(Refusal::Scope));
    let c = claims(serde_json::json!({"scope": "read write", "exp": now}));
    assert_eq!(
        check(&c, &required, now),
        Err(Refusal::Invalid("token expired"))
    );
    let c = claims(serde_json::json!({"nbf": now + 5}));
    assert_eq!(
        check(&c, &[], now),
        Err(Refusal::Invalid("token not yet valid"))
    );
    assert_eq!(check(&Map::new(), &[], now), Ok(()));
}
