//! PostgreSQL: connecting (to `DATABASE_URL` or the embedded cluster), creating the database
//! when missing, migrations, and the queries shared by several front ends.

pub mod architectures;
pub mod benchmarks;
pub mod calibration;
pub mod embedded;
pub mod jobs;
pub mod predictors;
pub mod results;
pub mod stats;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};

pub use embedded::EmbeddedPostgres;

/// Where the database is.
#[derive(Debug, Clone, clap::Args)]
pub struct DbConfig {
    /// PostgreSQL URL. When absent, archdb runs its own cluster in `$ARCHDB_DATA_DIR/pg`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory for archdb's own files (the embedded cluster).
    #[arg(long, env = "ARCHDB_DATA_DIR", default_value = "./.archdb")]
    pub data_dir: PathBuf,
    /// Directory with the PostgreSQL server binaries for the embedded cluster
    /// (default: `PATH`, then the newest `/usr/lib/postgresql/*/bin`).
    #[arg(long, env = "ARCHDB_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// Largest number of pooled connections.
    #[arg(long, env = "ARCHDB_DB_POOL", default_value_t = 16)]
    pub pool_size: u32,
}

/// How long [`Database::close`] waits for connections to be returned.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// A migrated database and, on the embedded default, the cluster serving it.
pub struct Database {
    pub pool: PgPool,
    /// Kept alive for the pool's lifetime; stopped by [`Database::close`].
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects (starting the embedded cluster when no URL is given), creates the database if
    /// it is missing and runs the migrations.
    pub async fn connect(config: &DbConfig) -> Result<Self> {
        let (options, embedded) = match &config.database_url {
            Some(url) => (
                PgConnectOptions::from_str(url).context("parsing DATABASE_URL")?,
                None,
            ),
            None => {
                let (data_dir, bin) = (config.data_dir.clone(), config.pg_bin.clone());
                let pg = tokio::task::spawn_blocking(move || {
                    EmbeddedPostgres::start(&data_dir, bin.as_deref())
                })
                .await??;
                (pg.connect_options("archdb"), Some(pg))
            }
        };
        Self::connect_with(options, config.pool_size, embedded).await
    }

    /// Connects with explicit options (tests use this for per-test databases).
    pub async fn connect_with(
        options: PgConnectOptions,
        pool_size: u32,
        embedded: Option<EmbeddedPostgres>,
    ) -> Result<Self> {
        let options = options.log_statements(tracing::log::LevelFilter::Debug);
        create_database_if_missing(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .context("running migrations")?;
        Ok(Self { pool, embedded })
    }

    /// Closes the pool, then stops the embedded cluster if this process started it. Connections
    /// still busy after [`CLOSE_GRACE`] (a cancelled import unwinding) are cut by the stop.
    pub async fn close(mut self) {
        if tokio::time::timeout(CLOSE_GRACE, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections still busy after {CLOSE_GRACE:?}; closing anyway");
        }
        if let Some(mut pg) = self.embedded.take() {
            let _ = tokio::task::spawn_blocking(move || pg.stop()).await;
        }
    }
}

/// A pool on the database of `pool` whose connections cancel any statement running longer than
/// `statement_timeout` and stop a query whose client connection has gone (checked every second,
/// PostgreSQL 14+). Waiting for a free connection fails after `acquire_timeout`. Connections are
/// opened on demand.
pub fn request_pool(
    pool: &PgPool,
    size: u32,
    statement_timeout: Duration,
    acquire_timeout: Duration,
) -> PgPool {
    let options = (*pool.connect_options()).clone().options([(
        "statement_timeout",
        format!("{}", statement_timeout.as_millis()),
    )]);
    PgPoolOptions::new()
        .max_connections(size.max(1))
        .acquire_timeout(acquire_timeout)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // Older servers lack the setting; their queries then end on statement_timeout.
                let _ = conn
                    .execute("set client_connection_check_interval = 1000")
                    .await;
                Ok(())
            })
        })
        .connect_lazy_with(options)
}

/// Creates the target database through the server's `postgres` database when it is missing.
async fn create_database_if_missing(options: &PgConnectOptions) -> Result<()> {
    let Some(name) = options.get_database().map(str::to_string) else {
        return Ok(());
    };
    if options.clone().connect().await.is_ok() {
        return Ok(());
    }
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connecting to PostgreSQL (database `postgres`) to create the archdb database")?;
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {quoted}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        tracing::info!(database = %name, "created database");
    }
    admin.close().await?;
    Ok(())
}
