//! Test harness: a fresh database per test (SQLite file in a temp dir, or a PostgreSQL
//! database created for the test and dropped `WITH (FORCE)` when it ends, pass or fail),
//! and helpers to drive the API over real HTTP: every request goes through a TCP socket
//! to the backend's router served by axum on a loopback port (the same router the
//! product serves, without the background dispatcher, which tests run when they mean to).

use aistack_collab::{BackendOptions, Db, router_with};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};
use tokio::sync::Mutex;

/// The PostgreSQL server tests use; each test gets its own database on it.
pub const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A connected app over a database that lives as long as this value.
pub struct TestApp {
    pub db: Db,
    pub url: String,
    pub options: BackendOptions,
    _files: tempfile::TempDir,
    /// The served router (address, the options it was built with, its task), started on
    /// the first request and again whenever a test has changed `options` since.
    server: Mutex<Option<Server>>,
    // Declared last: dropped after `db`, so the database outlives the pool.
    pub storage: Storage,
}

struct Server {
    address: std::net::SocketAddr,
    options: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub enum Storage {
    Sqlite(tempfile::TempDir),
    Postgres(PgTestDatabase),
}

impl TestApp {
    /// A SQLite file two not-yet-existing directories deep in a fresh temp dir.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let file = dir.path().join("nested/data/collab.db");
        let url = format!("sqlite://{}", file.display());
        let db = Db::connect(&url).await.expect("connect to SQLite");
        let (options, _files) = test_options();
        Self {
            db,
            url,
            options,
            _files,
            server: Mutex::new(None),
            storage: Storage::Sqlite(dir),
        }
    }

    /// A fresh PostgreSQL database on [`POSTGRES_SERVER`].
    pub async fn postgres() -> Self {
        let database = PgTestDatabase::create().await;
        let url = database.url();
        let db = Db::connect(&url)
            .await
            .expect("connect to the test PostgreSQL database");
        let (options, _files) = test_options();
        Self {
            db,
            url,
            options,
            _files,
            server: Mutex::new(None),
            storage: Storage::Postgres(database),
        }
    }

    /// Closes the pool and connects again to the same database.
    pub async fn reconnect(&mut self) {
        self.db.close().await;
        self.db = Db::connect(&self.url).await.expect("reconnect");
        // The served router held the old pool: serve the new one from the next request.
        *self.server.get_mut() = None;
    }

    /// Where the router is served for the current `options` (started if needed).
    async fn address(&self) -> std::net::SocketAddr {
        let wanted = format!("{:?}", self.options);
        let mut server = self.server.lock().await;
        if let Some(s) = server.as_ref().filter(|s| s.options == wanted) {
            return s.address;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        let router = router_with(self.db.clone(), self.options.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        *server = Some(Server {
            address,
            options: wanted,
            task,
        });
        address
    }

    /// Sends `request` over HTTP/1.1 to the served router and reads the whole answer.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let address = self.address().await;
        let (parts, body) = request.into_parts();
        let body = body.collect().await.expect("read request body").to_bytes();
        let url = format!("http://{address}{}", parts.uri);
        let response = http_client()
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .expect("the served router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read response body");
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 response body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}"))
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> TestResponse {
        self.send(
            request(Method::GET, uri)
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    pub async fn post_json(&self, uri: &str, body: &Value) -> TestResponse {
        let request = request(Method::POST, uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        self.send(request).await
    }

    /// Creates an organization and returns its JSON, asserting 201.
    pub async fn create_org(&self, name: &str, slug: Option<&str>) -> Value {
        let mut body = serde_json::json!({ "name": name });
        if let Some(slug) = slug {
            body["slug"] = slug.into();
        }
        let response = self.post_json("/api/v1/organizations", &body).await;
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        response.body
    }
}

/// One HTTP client for every test (its connection pool is per served address).
fn http_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            // Tests set exactly the headers they mean; no compression or redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client")
    })
}

fn test_options() -> (BackendOptions, tempfile::TempDir) {
    let files = tempfile::tempdir().expect("create storage dir");
    (BackendOptions::new(files.path()), files)
}

pub fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    /// Asserts the status and the `{"error":{"code","message","request_id"}}` shape.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        let content_type = self.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
        assert_eq!(content_type, Some(&b"application/json"[..]), "{self:?}");
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "body: {}", self.body);
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message missing: {}",
            self.body
        );
        assert!(
            error.get("request_id").is_some(),
            "request_id missing: {}",
            self.body
        );
        let keys: Vec<_> = self
            .body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["error"], "unexpected top-level keys: {}", self.body);
    }
}

/// A PostgreSQL database made for one test, dropped (`WITH (FORCE)`) when this value is
/// dropped, including while a failed test unwinds.
pub struct PgTestDatabase {
    name: String,
    dropped: bool,
}

impl PgTestDatabase {
    pub async fn create() -> Self {
        let name = format!("aistack_collab_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection().await;
        admin
            .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        Self {
            name,
            dropped: false,
        }
    }

    pub fn url(&self) -> String {
        format!("{POSTGRES_SERVER}/{}", self.name)
    }

    /// Drops the database now, killing its connections (to test an outage).
    pub async fn drop_now(&mut self) {
        drop_database(&self.name).await;
        self.dropped = true;
    }
}

impl Drop for PgTestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop cannot await, and may run inside the test's runtime: use a thread with its
        // own runtime.
        let name = self.name.clone();
        let joined =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(drop_database(&name)),
                    Err(e) => eprintln!("cannot drop test database {name}: no runtime: {e}"),
                }
            })
            .join();
        if joined.is_err() {
            eprintln!("dropping test database {} panicked", self.name);
        }
    }
}

async fn admin_connection() -> PgConnection {
    let url = format!("{POSTGRES_SERVER}/postgres");
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("tests named *postgres* need PostgreSQL at {url} (user postgres, trust): {e}")
    })
}

async fn drop_database(name: &str) {
    let url = format!("{POSTGRES_SERVER}/postgres");
    let result = async {
        let mut admin = PgConnection::connect(&url).await?;
        let sql = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
        admin.execute(AssertSqlSafe(sql)).await?;
        admin.close().await
    }
    .await;
    if let Err(e) = result {
        eprintln!("cannot drop test database {name}: {e}");
    }
}
