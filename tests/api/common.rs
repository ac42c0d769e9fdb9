//! Test harness: the real application on a real PostgreSQL, one fresh database per test.
//! `DATABASE_URL` names the server when set; otherwise archdb's embedded cluster is started
//! (once, shared by all test processes) under the system temp dir.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use archdb::db::{Database, EmbeddedPostgres};
use archdb::http::{ApiContext, ServeConfig, app};
use sqlx::postgres::PgConnectOptions;

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
    let db = Database::connect_with(fresh_database(), 8, None)
        .await
        .expect("test database");
    let ctx = ApiContext {
        pool: db.pool.clone(),
        config: Arc::new(config),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(ctx)).await });
    TestApp {
        base,
        client: reqwest::Client::new(),
        pool: db.pool,
    }
}

/// Connection options for a new, uniquely named database.
pub fn fresh_database() -> PgConnectOptions {
    let name = format!("archdb_test_{}", uuid::Uuid::new_v4().simple());
    server_options().database(&name)
}

fn server_options() -> PgConnectOptions {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return PgConnectOptions::from_str(&url).expect("DATABASE_URL");
    }
    static CLUSTER: OnceLock<EmbeddedPostgres> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            let root = std::env::temp_dir().join("archdb-test-cluster");
            std::fs::create_dir_all(&root).unwrap();
            // Test processes (nextest runs one per test) start the shared cluster one at a time.
            let lock = std::fs::File::create(root.join("start.lock")).unwrap();
            // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
            let mut pg =
                EmbeddedPostgres::start(&root, None).expect("embedded PostgreSQL for tests");
            // Leave it running for the other test processes; it is reused next time.
            pg.detach();
            pg
        })
        .connect_options("postgres")
}
