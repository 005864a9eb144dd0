//! A fake OAuth 2.0 authorization server for the `oauth2-introspection` tests, following
//! RFC 7662 (token introspection) and RFC 6749 §2.3.1 (client authentication) exactly:
//! `POST` to its introspection path only, `application/x-www-form-urlencoded` bodies only,
//! HTTP Basic over the form-encoded client id and secret (a wrong or missing one gets 401
//! `invalid_client` with `WWW-Authenticate: Basic`, RFC 6749 §5.2), a missing `token`
//! 400 `invalid_request`, and otherwise 200 JSON: the registered token's members with
//! `"active": true`, or `{"active": false}` for any token it does not know. It counts the
//! introspection calls per token, and can be told to answer garbage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const PATH: &str = "/oauth2/introspect";

#[derive(Default)]
struct State {
    client_id: String,
    client_secret: String,
    tokens: Mutex<HashMap<String, Value>>,
    /// Introspection calls by token (well-formed, authenticated ones).
    calls: Mutex<HashMap<String, usize>>,
    /// Requests refused for bad client credentials.
    refused: Mutex<usize>,
    garbage: AtomicBool,
}

/// A running server; stops when dropped.
pub struct AuthServer {
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthServer {
    pub async fn start(client_id: &str, client_secret: &str) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(State {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            ..State::default()
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                conns.spawn(async move {
                    let _ = serve(stream, &state).await;
                });
            }
        });
        AuthServer { port, state, task }
    }

    /// Registers an active token with its introspection members (`scope`, `exp`, …).
    pub fn issue(&self, token: &str, members: Value) {
        let mut tokens = self.state.tokens.lock().expect("lock");
        tokens.insert(token.to_owned(), members);
    }

    /// How many times `token` was introspected.
    pub fn calls(&self, token: &str) -> usize {
        let calls = self.state.calls.lock().expect("lock");
        calls.get(token).copied().unwrap_or(0)
    }

    /// Requests refused for bad client credentials.
    pub fn refused(&self) -> usize {
        *self.state.refused.lock().expect("lock")
    }

    /// From now on, answer 200 with a body that is not JSON.
    pub fn answer_garbage(&self) {
        self.state.garbage.store(true, Ordering::SeqCst);
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection, keep-alive: request after request.
async fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0usize);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await?;
        let (status, extra, text) = answer(state, &method, &path, &headers, &body);
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            _ => "Method Not Allowed",
        };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncache-control: no-store\r\n{extra}content-length: {}\r\n\r\n{text}",
            text.len()
        );
        write.write_all(resp.as_bytes()).await?;
    }
}

/// (status, extra header lines, body).
fn answer(
    state: &State,
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, String, String) {
    if path != PATH {
        return (
            404,
            String::new(),
            json!({"error": "not_found"}).to_string(),
        );
    }
    if method != "POST" {
        return (405, "allow: POST\r\n".into(), String::new());
    }
    let authenticated = headers
        .get("authorization")
        .and_then(|v| basic_credentials(v))
        .is_some_and(|(id, secret)| id == state.client_id && secret == state.client_secret);
    if !authenticated {
        *state.refused.lock().expect("lock") += 1;
        let challenge = "www-authenticate: Basic realm=\"introspection\"\r\n".to_owned();
        return (
            401,
            challenge,
            json!({"error": "invalid_client"}).to_string(),
        );
    }
    let form = headers
        .get("content-type")
        .is_some_and(|v| v.split(';').next() == Some("application/x-www-form-urlencoded"));
    let fields = parse_form(body);
    let token = fields.iter().find(|(k, _)| k == "token").map(|(_, v)| v);
    let hint_ok = fields
        .iter()
        .all(|(k, v)| k != "token_type_hint" || v == "access_token");
    let (Some(token), true, true) = (token, form, hint_ok) else {
        return (
            400,
            String::new(),
            json!({"error": "invalid_request"}).to_string(),
        );
    };
    *state
        .calls
        .lock()
        .expect("lock")
        .entry(token.clone())
        .or_default() += 1;
    if state.garbage.load(Ordering::SeqCst) {
        return (200, String::new(), "<html>oops</html>".to_owned());
    }
    let tokens = state.tokens.lock().expect("lock");
    let reply = match tokens.get(token) {
        Some(members) => {
            let mut reply = members.clone();
            reply["active"] = json!(true);
            reply
        }
        None => json!({"active": false}),
    };
    (200, String::new(), reply.to_string())
}

/// `Basic base64(form(id):form(secret))` → (id, secret).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let text = text.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = TABLE.iter().position(|t| *t == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `application/x-www-form-urlencoded` pairs.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}

fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
