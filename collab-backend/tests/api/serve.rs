//! `serve`: the real listener path the gateway binary uses.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::TestApp;

/// Generous: only a hang should fail this.
const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn serve_answers_on_a_bound_listener_and_stops_on_shutdown() {
    let app = TestApp::sqlite().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let address = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(aistack_collab::serve(listener, app.db.clone(), async {
        let _ = stopped.await;
    }));

    let mut stream = TcpStream::connect(address).await.expect("connect");
    let request = "GET /api/v1/healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("response within the deadline")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(r#"{"status":"ok","database":"sqlite"}"#),
        "{response}"
    );

    let _ = stop.send(());
    let result = tokio::time::timeout(DEADLINE, server)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task did not panic");
    assert!(result.is_ok(), "{result:?}");
}
