//! Support for tests and benchmarks: a real PostgreSQL database per caller and the real
//! application on a loopback port. `DATABASE_URL` names the server when set; otherwise archdb's
//! embedded cluster is started once (shared by all test processes) under the system temp dir.

use std::str::FromStr;
use std::sync::OnceLock;

use sqlx::postgres::PgConnectOptions;

use crate::db::{Database, EmbeddedPostgres};
use crate::http::{ApiContext, ServeConfig, serve_on};

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
    drop_stale_databases().await;
    let db = Database::connect_with(fresh_database(), 8, None)
        .await
        .expect("test database");
    let ctx = ApiContext::new(db.pool.clone(), config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let base_url = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(serve_on(listener, ctx, std::future::pending()));
    TestServer {
        base_url,
        pool: db.pool,
    }
}

/// Test databases older than this are dropped by the next test process (a test cannot drop its
/// own database on the way out, and CI machines are reused).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

/// Drops `archdb_test_*` databases created more than [`STALE_AFTER`] ago (the creation time is
/// in the name), once per process.
async fn drop_stale_databases() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let Ok(mut conn) = sqlx::ConnectOptions::connect(&server_options()).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar(r"select datname from pg_database where datname like 'archdb\_test\_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for name in names {
        let created: Option<u128> = name.split('_').nth(3).and_then(|n| n.parse().ok());
        if created.is_some_and(|c| now.saturating_sub(c) > STALE_AFTER.as_nanos()) {
            let sql = format!("drop database if exists \"{name}\" with (force)");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await;
        }
    }
}
