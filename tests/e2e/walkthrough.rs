//! examples/walkthrough.sh runs green against a real `aistack up` (gateway on its
//! proxy port in front of the backend), so the walkthrough cannot rot; and what it
//! made is really there, read back through the gateway.

use std::path::Path;
use std::process::Command;

use aistack_e2e::{Aistack, Ports, UP_CONFIG, render};
use serde_json::Value;

#[tokio::test]
async fn walkthrough_script_runs_through_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::free();
    let gw = Aistack::start("up", &render(UP_CONFIG, ports), ports, dir.path()).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/walkthrough.sh");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .env("AISTACK_URL", format!("http://127.0.0.1:{}", ports.proxy))
            .env("WALKTHROUGH_RUN", "e2e")
            .output()
            .expect("run bash examples/walkthrough.sh")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{stderr}\n{}",
        gw.output()
    );
    assert!(stdout.contains("both versions download intact"), "{stdout}");
    assert!(
        stdout.contains("mia has a mention notification"),
        "{stdout}"
    );

    // Read back through the gateway what the script reported.
    let done = stdout
        .lines()
        .find(|l| l.starts_with("done: "))
        .expect("done line");
    let file = done.rsplit("file=").next().expect("file id").trim();
    let token: Value = reqwest::Client::new()
        .post(gw.url("/api/v1/auth/sign-in"))
        .json(&serde_json::json!({ "username": "ada-e2e", "password": "correct horse" }))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("json");
    let token = token["token"].as_str().expect("token");
    let versions: Value = reqwest::Client::new()
        .get(gw.url(&format!("/api/v1/files/{file}/versions")))
        .bearer_auth(token)
        .send()
        .await
        .expect("versions")
        .json()
        .await
        .expect("json");
    let numbers: Vec<i64> = versions
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|v| v["version"].as_i64())
        .collect();
    assert_eq!(numbers, [1, 2], "{versions}");
    assert_ne!(versions[0]["sha256"], versions[1]["sha256"]);
}
