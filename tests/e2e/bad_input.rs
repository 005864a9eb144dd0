//! Bad input through the real binary: one clear error line, non-zero exit,
//! never a panic trace.

use aistack_e2e::{Aistack, Ports, render, run_cli};

fn assert_one_clear_line(stderr: &str) {
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "no panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
}

#[test]
fn validate_accepts_the_shipped_config() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (status, stdout, stderr) = run_cli(&["validate", "config/aistack.yaml"], &root);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("config/aistack.yaml: ok"), "{stdout}");
}

#[test]
fn typo_names_file_line_column_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("typo.yaml");
    std::fs::write(
        &path,
        "upstreams:\n  b:\n    targets: [127.0.0.1:9]\nroutes:\n  - name: r\n    upstrem: b\n",
    )
    .expect("write");
    let (status, _, stderr) = run_cli(&["validate", path.to_str().expect("utf8")], dir.path());
    assert!(!status.success());
    assert_one_clear_line(&stderr);
    assert!(
        stderr.contains("typo.yaml:6:5: `routes[0].upstrem`: unknown field `upstrem`"),
        "{stderr}"
    );
}

#[test]
fn missing_wasm_file_is_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "plugins:\n  mine:\n    path: nope.wasm\n").expect("write");
    let (status, _, stderr) = run_cli(&["validate", path.to_str().expect("utf8")], dir.path());
    assert!(!status.success());
    assert_one_clear_line(&stderr);
    assert!(
        stderr.contains(":3:11: `plugins.mine.path`: no such file"),
        "{stderr}"
    );
}

#[test]
fn wasm_that_is_not_proxy_wasm_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A valid, empty WebAssembly module: no Proxy-Wasm ABI export.
    std::fs::write(dir.path().join("empty.wasm"), b"\0asm\x01\0\0\0").expect("write wasm");
    std::fs::write(dir.path().join("garbage.wasm"), b"this is not wasm").expect("write garbage");
    for file in ["empty.wasm", "garbage.wasm"] {
        let path = dir.path().join("c.yaml");
        let cfg = format!(
            "plugins:\n  mine:\n    path: {file}\nupstreams:\n  b:\n    targets: [127.0.0.1:9]\nroutes:\n  - name: r\n    upstream: b\n    plugins:\n      - name: mine\n"
        );
        std::fs::write(&path, cfg).expect("write");
        let (status, _, stderr) = run_cli(&["validate", path.to_str().expect("utf8")], dir.path());
        assert!(!status.success(), "{file}");
        assert_one_clear_line(&stderr);
        assert!(
            stderr.contains(":11:15: `routes[0].plugins[0].name`:"),
            "{stderr}"
        );
        if file == "empty.wasm" {
            assert!(stderr.contains("not a Proxy-Wasm module"), "{stderr}");
        }
    }
}

#[tokio::test]
async fn port_in_use_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    let ports = Ports {
        proxy: busy_port,
        ..Ports::free()
    };
    let cfg = render(
        "listeners:\n  - address: 127.0.0.1:{proxy}\nadmin:\n  address: 127.0.0.1:{admin}\nbackend:\n  address: 127.0.0.1:{backend}\n",
        ports,
    );
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, cfg).expect("write");
    let data = dir.path().join("data");
    let (status, _, stderr) = run_cli(
        &[
            "up",
            "--config",
            path.to_str().expect("utf8"),
            "--data-dir",
            data.to_str().expect("utf8"),
        ],
        dir.path(),
    );
    assert_eq!(status.code(), Some(1));
    assert_one_clear_line(&stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{busy_port} (listeners[0])"
        )),
        "{stderr}"
    );
    drop(busy);
    // Same config, port free again: it starts.
    let gw = Aistack::start(
        "up",
        &std::fs::read_to_string(&path).expect("read"),
        ports,
        dir.path(),
    )
    .await;
    drop(gw);
}
