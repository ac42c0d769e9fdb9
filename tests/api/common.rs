//! Test harness: the real application on a real PostgreSQL, one fresh database per test
//! (see `archdb::testing`).

use std::path::{Path, PathBuf};

use archdb::http::ServeConfig;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: sqlx::PgPool,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Uploads raw ONNX bytes; returns status and JSON body.
    pub async fn upload(&self, bytes: Vec<u8>, query: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(self.url(&format!("/v1/architectures{query}")))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The URL of the test database, for another process (`archdb serve`, `archdb worker`).
    pub fn database_url(&self) -> String {
        let o = self.pool.connect_options();
        let db = o.get_database().unwrap();
        match o.get_socket() {
            Some(dir) => format!(
                "postgres://{}@/{db}?host={}&port={}",
                o.get_username(),
                dir.display(),
                o.get_port()
            ),
            None => format!(
                "postgres://{}@{}:{}/{db}",
                o.get_username(),
                o.get_host(),
                o.get_port()
            ),
        }
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(ServeConfig::default()).await
}

pub async fn spawn_app_with(config: ServeConfig) -> TestApp {
    let server = archdb::testing::spawn(config).await;
    // A script, not a browser page: the API's cross-site guard lets writes with this header
    // through whatever their body type (tests/api/auth.rs checks the guard itself).
    let headers = [(
        reqwest::header::HeaderName::from_static("x-requested-with"),
        reqwest::header::HeaderValue::from_static("archdb-tests"),
    )];
    TestApp {
        base: server.base_url,
        client: reqwest::Client::builder()
            .default_headers(headers.into_iter().collect())
            .build()
            .expect("HTTP client"),
        pool: server.pool,
    }
}

/// A second `archdb serve` process on a test's database (its own caches and registry), for
/// checks across processes; killed when dropped.
pub struct ServeProcess {
    child: std::process::Child,
    pub base: String,
}

impl ServeProcess {
    /// Starts it on `database_url` without tokens or seeding and waits until it answers.
    pub async fn start(database_url: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_archdb"))
            .args(["serve", "--no-seed", "--addr", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", database_url)
            .env_remove("ARCHDB_API_TOKEN")
            .env_remove("ARCHDB_READ_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("archdb serve");
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let started = std::time::Instant::now();
        let health = format!("{}/healthz", server.base);
        while !reqwest::get(&health)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the second server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        server
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
