//! `archdb serve` from start to exit: the database (embedded or not), the starter set loaded in
//! the background, the API, and a shutdown that completes within about two seconds whatever is
//! running: on SIGINT/SIGTERM in-flight requests get [`REQUEST_GRACE`], the starter-set import
//! is cancelled (its transaction rolls back), the predictor listener stops, the pool closes
//! (bounded: [`Database::close`]) and the embedded PostgreSQL is stopped.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::db::{Database, DbConfig};
use crate::http::{self, ApiContext, ServeConfig};

/// How long in-flight requests may finish after the signal.
const REQUEST_GRACE: Duration = Duration::from_secs(1);
/// How long a cancelled background task gets to unwind (a rollback, a closed connection).
const TASK_GRACE: Duration = Duration::from_millis(300);

/// Runs the service until SIGINT/SIGTERM; `seed_dir` is where the starter set is (`None`:
/// `--no-seed`).
pub async fn serve(db: DbConfig, config: ServeConfig, seed_dir: Option<PathBuf>) -> Result<()> {
    // Listening from the start: a signal while the cluster starts or migrations run is acted
    // on as soon as the database is up, instead of killing the process half-way.
    let (requested, stop) = watch::channel(false);
    tokio::spawn(async move {
        http::shutdown_signal().await;
        let _ = requested.send(true);
    });
    let database = Database::connect(&db).await?;
    if *stop.borrow() {
        database.close().await;
        return Ok(());
    }
    let ctx = ApiContext::new(database.pool.clone(), config).await;
    // The API answers at once; the starter data arrive as each import commits.
    let progress = ctx
        .metrics
        .import_progress(crate::import::stderr_progress());
    let starter =
        seed_dir.map(|dir| tokio::spawn(load_starter(database.pool.clone(), dir, progress)));
    let watcher = ctx.watcher.clone();
    let served = tokio::select! {
        served = http::serve(ctx, after_shutdown(stop.clone(), Duration::ZERO)) => served,
        () = after_shutdown(stop, REQUEST_GRACE) => {
            tracing::warn!("requests still running {REQUEST_GRACE:?} after the shutdown signal; closing them");
            Ok(())
        }
    };
    watcher.abort();
    if let Some(starter) = starter
        && !starter.is_finished()
    {
        starter.abort();
        match tokio::time::timeout(TASK_GRACE, starter).await {
            Ok(_) => tracing::info!("starter data import cancelled and rolled back"),
            Err(_) => tracing::warn!(
                "starter data import still unwinding; its transaction is rolled back when the server stops"
            ),
        }
    }
    database.close().await;
    served
}

/// Loads the missing parts of the starter set, then registers the bundled predictor. Runs
/// until done or aborted (abort rolls back the import in progress).
pub(super) async fn load_starter(
    pool: PgPool,
    seed_dir: PathBuf,
    progress: std::sync::Arc<dyn crate::import::Progress>,
) {
    if let Err(e) = crate::import::seed::seed_missing(&pool, &seed_dir, progress).await {
        tracing::error!("loading starter data failed: {e:#}");
    }
    let bundled = seed_dir.join("predictor");
    match crate::training::register_bundled(&pool, &bundled).await {
        Ok(ids) if !ids.is_empty() => tracing::info!(?ids, "bundled predictors registered"),
        Ok(_) => {}
        Err(e) => tracing::error!("registering the bundled predictor failed: {e:#}"),
    }
    crate::memory::release_freed_memory();
}

/// Completes `grace` after the shutdown signal.
async fn after_shutdown(mut stop: watch::Receiver<bool>, grace: Duration) {
    if stop.wait_for(|&stop| stop).await.is_err() {
        // The signal task is gone without a signal: never.
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(grace).await;
}
