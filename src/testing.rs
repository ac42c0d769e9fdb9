//! Support for tests and benchmarks: a real PostgreSQL database per caller and the real
//! application on a loopback port. `DATABASE_URL` names the server when set; otherwise archdb's
//! embedded cluster is started once (shared by all test processes) under the system temp dir.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use sqlx::postgres::PgConnectOptions;

use crate::db::{Database, EmbeddedPostgres};
use crate::http::{ApiContext, ServeConfig, app};

/// Connection options for a new, uniquely named database on the test server.
pub fn fresh_database() -> PgConnectOptions {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("archdb_test_{}_{nanos}_{n}", std::process::id());
    server_options().database(&name)
}

fn server_options() -> PgConnectOptions {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return PgConnectOptions::from_str(&url).expect("DATABASE_URL is not a PostgreSQL URL");
    }
    static CLUSTER: OnceLock<EmbeddedPostgres> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            let root = std::env::temp_dir().join("archdb-test-cluster");
            std::fs::create_dir_all(&root).expect("test cluster dir");
            // Test processes (nextest runs one per test) start the shared cluster one at a time.
            let lock = std::fs::File::create(root.join("start.lock")).expect("lock file");
            // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
            let mut pg =
                EmbeddedPostgres::start(&root, None).expect("embedded PostgreSQL for tests");
            // Left running for the other test processes; the next run reuses it.
            pg.detach();
            pg
        })
        .connect_options("postgres")
}

/// The application served on `127.0.0.1:<free port>` over a fresh, migrated database.
pub struct TestServer {
    pub base_url: String,
    pub pool: sqlx::PgPool,
}

pub async fn spawn(config: ServeConfig) -> TestServer {
    let db = Database::connect_with(fresh_database(), 8, None)
        .await
        .expect("test database");
    let ctx = ApiContext {
        pool: db.pool.clone(),
        config: Arc::new(config),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let base_url = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(async move { axum::serve(listener, app(ctx)).await });
    TestServer {
        base_url,
        pool: db.pool,
    }
}
