//! Crash safety of the collaboration backend: the real `aistack collab` process is
//! SIGKILLed while concurrent file uploads and comment writes are in flight, restarted
//! on the same data directory (SQLite and file storage), and every write it had
//! acknowledged must be there, intact (file bytes match the SHA-256 of what was sent),
//! and nothing stored may be corrupt.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aistack_e2e::{Aistack, Ports, render};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CONFIG: &str = r#"
admin:
  address: 127.0.0.1:{admin}
backend:
  address: 127.0.0.1:{backend}
"#;

const WORKERS: usize = 3;

/// Acknowledged before the kill: upload (file id, sha256, size) and comment (id, body).
#[derive(Default)]
struct Acked {
    files: Vec<(String, String, usize)>,
    comments: Vec<(String, String)>,
}

struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
        r.json().await.expect("json")
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
    }
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn start(dir: &std::path::Path) -> (Aistack, String) {
    let ports = Ports::free();
    let gw = Aistack::start("collab", &render(CONFIG, ports), ports, dir).await;
    let base = format!("http://127.0.0.1:{}/api/v1", ports.backend);
    (gw, base)
}

/// An organization, its owner (signed in), a team, a workspace and a task.
async fn setup(base: &str) -> (Api, String, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let org: Value = client
        .post(format!("{base}/organizations"))
        .json(&json!({ "name": "Crash", "slug": "crash" }))
        .send()
        .await
        .expect("org")
        .json()
        .await
        .expect("json");
    let org_id = org["id"].as_str().expect("org id").to_owned();
    let user =
        json!({ "organization_id": org_id, "username": "crash-owner", "password": "password-1" });
    let r = client
        .post(format!("{base}/auth/register"))
        .json(&user)
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let session: Value = client
        .post(format!("{base}/auth/sign-in"))
        .json(&json!({ "username": "crash-owner", "password": "password-1" }))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("json");
    let api = Api {
        base: base.to_owned(),
        token: session["token"].as_str().expect("token").to_owned(),
        client,
    };
    let team = api
        .post(
            &format!("/organizations/{org_id}/teams"),
            json!({ "name": "T" }),
        )
        .await;
    let ws = api
        .post(
            &format!(
                "/teams/{}/workspaces",
                team["id"].as_str().unwrap_or_default()
            ),
            json!({ "name": "W" }),
        )
        .await;
    let ws = ws["id"].as_str().expect("workspace id").to_owned();
    let task = api
        .post(&format!("/workspaces/{ws}/tasks"), json!({ "title": "t" }))
        .await;
    let task = task["id"].as_str().expect("task id").to_owned();
    (api, ws, task)
}

/// Uploads until the backend goes away; records each 201.
async fn uploader(api: Arc<Api>, ws: String, worker: usize, acked: Arc<Mutex<Acked>>) {
    for n in 0.. {
        let size = 32 * 1024 + (worker * 7919 + n * 104_729) % (192 * 1024);
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(31) ^ worker ^ n) as u8)
            .collect();
        let url = format!("{}/workspaces/{ws}/files?name=w{worker}-{n}.bin", api.base);
        let sent = api
            .client
            .post(url)
            .bearer_auth(&api.token)
            .body(bytes.clone())
            .send()
            .await;
        let Ok(response) = sent else { return };
        if response.status() != 201 {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        let mut acked = acked.lock().unwrap_or_else(|p| p.into_inner());
        acked.files.push((id, sha(&bytes), size));
    }
}

/// Writes comments until the backend goes away; records each 201.
async fn commenter(api: Arc<Api>, task: String, worker: usize, acked: Arc<Mutex<Acked>>) {
    for n in 0.. {
        let text = format!("comment {worker}-{n} x{}", "x".repeat(n % 300));
        let sent = api
            .client
            .post(format!("{}/tasks/{task}/comments", api.base))
            .bearer_auth(&api.token)
            .json(&json!({ "body": text }))
            .send()
            .await;
        let Ok(response) = sent else { return };
        if response.status() != 201 {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        let mut acked = acked.lock().unwrap_or_else(|p| p.into_inner());
        acked.comments.push((id, text));
    }
}

/// Every item of a paged list.
async fn all_items(api: &Api, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = api
            .get(&format!("{path}?limit=200&cursor={cursor}"))
            .await
            .json()
            .await
            .expect("page");
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return items,
        }
    }
}

#[tokio::test]
async fn killed_during_uploads_and_comments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, base) = start(dir.path()).await;
    let (api, ws, task) = setup(&base).await;
    let api = Arc::new(api);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (a, w, t, k) = (
            Arc::clone(&api),
            ws.clone(),
            task.clone(),
            Arc::clone(&acked),
        );
        workers.push(tokio::spawn(uploader(a, w, worker, k)));
        let (a, k) = (Arc::clone(&api), Arc::clone(&acked));
        workers.push(tokio::spawn(commenter(a, t, worker, k)));
    }
    // Kill once a fair number of writes were acknowledged (others are in flight).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (files, comments) = {
            let a = acked.lock().unwrap_or_else(|p| p.into_inner());
            (a.files.len(), a.comments.len())
        };
        if files >= 20 && comments >= 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {files} uploads, {comments} comments in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = gw.kill();
    assert!(!status.success(), "killed, not exited: {status}");
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(60), worker)
            .await
            .expect("workers stop once the backend is gone")
            .expect("worker did not panic");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));

    let (gw, base) = start(dir.path()).await;
    let api = Api {
        base,
        ..Arc::try_unwrap(api).unwrap_or_else(|_| panic!("workers done"))
    };
    let files = all_items(&api, &format!("/workspaces/{ws}/files")).await;
    for (id, sum, size) in &acked.files {
        let listed = files.iter().find(|f| f["id"] == id.as_str());
        let listed = listed.unwrap_or_else(|| panic!("acknowledged upload {id} is missing"));
        assert_eq!(listed["sha256"], sum.as_str(), "{id}");
        assert_eq!(listed["size"], *size, "{id}");
    }
    // Every stored file, acknowledged or not, downloads intact (verified server-side too).
    for file in &files {
        let id = file["id"].as_str().unwrap_or_default();
        let r = api.get(&format!("/files/{id}/content")).await;
        assert_eq!(r.status(), 200, "file {id} after the crash");
        let bytes = r.bytes().await.expect("content");
        assert_eq!(file["sha256"], sha(&bytes).as_str(), "file {id}");
    }
    let comments = all_items(&api, &format!("/tasks/{task}/comments")).await;
    for (id, text) in &acked.comments {
        let found = comments.iter().find(|c| c["id"] == id.as_str());
        let found = found.unwrap_or_else(|| panic!("acknowledged comment {id} is missing"));
        assert_eq!(found["body"], text.as_str());
    }
    let storage = gw.data_dir.join("files");
    assert!(
        storage.join("objects").is_dir(),
        "no objects under {}",
        storage.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(storage.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "partial uploads left after restart: {leftovers:?}"
    );
    eprintln!(
        "crash test: {} uploads and {} comments acknowledged before the kill, all intact ({} files stored)",
        acked.files.len(),
        acked.comments.len(),
        files.len()
    );
}
