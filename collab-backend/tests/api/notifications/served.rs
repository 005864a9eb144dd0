//! A served backend for the notification tests: `serve_with` on port 0, a minimal
//! HTTP/1.1 client (one request per connection) and WebSocket helpers.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{TestApp, TestResponse};
use crate::tasks::id;
use crate::users::Person;

/// Generous: only a hang should fail this.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `serve_with` on a port-0 listener, stopped when dropped.
pub struct Served {
    pub address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// The sweep is long, so a notification arriving within [`DEADLINE`] shows the
    /// write woke the dispatcher.
    pub async fn start(app: &TestApp) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut options = app.options.clone();
        options.dispatch_sweep = Duration::from_secs(3600);
        let task = tokio::spawn(aistack_collab::serve_with(
            listener,
            app.db.clone(),
            options,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            address,
            stop,
            task,
        }
    }

    /// Shuts down gracefully and waits for `serve_with` to return.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let served = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve did not panic");
        assert!(served.is_ok(), "{served:?}");
    }

    /// `method uri` as `who` (anonymous when `None`), over a fresh connection.
    pub async fn call(
        &self,
        who: Option<&Person>,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut head = vec![("connection", "close".to_owned())];
        if let Some(who) = who {
            head.push(("authorization", format!("Bearer {}", who.token)));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            head.push(("content-type", "application/json".to_owned()));
        }
        if !body.is_empty() || method != Method::GET {
            head.push(("content-length", body.len().to_string()));
        }
        self.raw(method, uri, &head, &body).await
    }

    pub async fn get(&self, who: &Person, uri: &str) -> TestResponse {
        self.call(Some(who), Method::GET, uri, None).await
    }

    pub async fn post(&self, who: &Person, uri: &str, body: Value) -> TestResponse {
        self.call(Some(who), Method::POST, uri, Some(body)).await
    }

    /// One HTTP/1.1 request with exactly `head` as headers; reads the response head and
    /// a `Content-Length` body (error and JSON bodies have one), so it also works on
    /// a connection the server keeps open.
    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        head: &[(&str, String)],
        body: &str,
    ) -> TestResponse {
        let exchange = async {
            let mut stream = TcpStream::connect(self.address).await.expect("connect");
            let mut request = format!("{method} {uri} HTTP/1.1\r\nhost: test\r\n");
            for (name, value) in head {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
            request.push_str("\r\n");
            request.push_str(body);
            stream.write_all(request.as_bytes()).await.expect("write");
            read_response(&mut BufReader::new(stream)).await
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {uri}: no response within the deadline"))
    }

    /// Opens `/api/v1/ws{query}` (with `who`'s `Authorization` when given).
    pub async fn ws(&self, who: Option<&Person>, query: &str) -> Ws {
        let url = format!("ws://{}/api/v1/ws{query}", self.address);
        let mut request = url.into_client_request().expect("ws request");
        if let Some(who) = who {
            let value = HeaderValue::from_str(&format!("Bearer {}", who.token)).expect("header");
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let connect = tokio_tungstenite::connect_async(request);
        let (ws, response) = tokio::time::timeout(DEADLINE, connect)
            .await
            .expect("upgrade within the deadline")
            .expect("upgrade accepted");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        ws
    }

    /// A socket for `who` through a ticket (the browser way), once it said the unread
    /// count it starts from (so it is subscribed).
    pub async fn ws_with_ticket(&self, who: &Person, expected_count: i64) -> Ws {
        let minted = self.post(who, "/api/v1/ws/tickets", json!({})).await;
        assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.body);
        assert_eq!(minted.body["expires_in"], 30);
        let ticket = minted.body["ticket"].as_str().expect("ticket");
        assert!(ticket.starts_with("aist_w_"), "{ticket}");
        let mut ws = self.ws(None, &format!("?ticket={ticket}")).await;
        assert_eq!(next(&mut ws).await, count_message(expected_count));
        ws
    }
}

pub async fn read_response(reader: &mut BufReader<TcpStream>) -> TestResponse {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = HeaderMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header line");
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            HeaderValue::from_str(value.trim()).expect("header value"),
        );
    }
    assert!(
        !headers.contains_key(header::TRANSFER_ENCODING),
        "chunked responses are not expected: {headers:?}"
    );
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut bytes = vec![0; length];
    reader.read_exact(&mut bytes).await.expect("body");
    let text = String::from_utf8(bytes).expect("UTF-8 body");
    let html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let body = if text.is_empty() {
        Value::Null
    } else if html {
        Value::String(text)
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}"))
    };
    TestResponse {
        status,
        headers,
        body,
    }
}

/// The next JSON text message (pings are answered by the client as it reads).
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a message within the deadline")
            .expect("the socket stays open")
            .expect("a WebSocket frame");
        match message {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str()).expect("JSON message");
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

pub fn count_message(count: i64) -> Value {
    json!({ "type": "unread_count", "count": count })
}

/// The pushed notification, after asserting the message is one.
pub async fn next_notification(ws: &mut Ws) -> Value {
    let message = next(ws).await;
    assert_eq!(message["type"], "notification", "{message}");
    message["notification"].clone()
}

/// Waits on `ws` for a notification then the count it leads to.
pub async fn pushed(ws: &mut Ws, count: i64) -> Value {
    let notification = next_notification(ws).await;
    assert_eq!(next(ws).await, count_message(count));
    notification
}

pub fn items(page: &TestResponse) -> Vec<Value> {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["items"].as_array().cloned().expect("items")
}

pub fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(id).collect()
}

pub async fn unread(served: &Served, who: &Person) -> i64 {
    let response = served.get(who, "/api/v1/notifications/unread-count").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body["count"].as_i64().expect("count")
}

pub async fn comment(served: &Served, who: &Person, task: &str, body: &str) -> Value {
    let uri = format!("/api/v1/tasks/{task}/comments");
    let response = served.post(who, &uri, json!({ "body": body })).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

pub async fn assert_closed_away(ws: &mut Ws) {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a close within the deadline");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
                return;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Headers of a WebSocket upgrade request.
pub fn upgrade_head(who: Option<&Person>) -> Vec<(&'static str, String)> {
    let mut head = vec![
        ("connection", "upgrade".to_owned()),
        ("upgrade", "websocket".to_owned()),
        ("sec-websocket-version", "13".to_owned()),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
    ];
    if let Some(who) = who {
        head.push(("authorization", format!("Bearer {}", who.token)));
    }
    head
}
