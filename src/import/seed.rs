//! First run: an empty database gets the starter set that ships in the repository's `data/`
//! (NAS-Bench-201 complete, NAS-Bench-Macro complete, the LEMUR sample with its ONNX graphs), so a new user can query at once. Each part is an ordinary import.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use sqlx::PgPool;

use super::{ImportKind, Progress, Summary, run};

/// Bundled folders under the seed directory and how to import them, in order.
const STARTER_SET: &[(&str, ImportKind)] = &[
    ("nasbench201", ImportKind::Nb201),
    ("nasbench_macro", ImportKind::NbMacro),
    ("lemur-sample", ImportKind::Lemur),
    ("lemur-sample/onnx", ImportKind::LemurOnnx),
];

/// Imports the starter set when no import has ever run; returns what was imported.
pub async fn seed_if_empty(
    pool: &PgPool,
    seed_dir: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Vec<Summary>> {
    let imported: bool = sqlx::query_scalar("select exists (select 1 from imports)")
        .fetch_one(pool)
        .await?;
    if imported {
        return Ok(vec![]);
    }
    let started = std::time::Instant::now();
    let mut done = Vec::new();
    for (folder, kind) in STARTER_SET {
        let dir = seed_dir.join(folder);
        if !dir.is_dir() {
            tracing::warn!(dir = %dir.display(), "starter data folder missing; skipped");
            continue;
        }
        tracing::info!(dir = %dir.display(), kind = %kind.name(), "loading starter data");
        let summary = run(pool, *kind, &dir, progress.clone()).await?;
        tracing::info!(
            kind = %kind.name(),
            rows_added = summary.rows_added,
            seconds = format!("{:.1}", summary.seconds),
            "starter data imported"
        );
        done.push(summary);
    }
    if !done.is_empty() {
        tracing::info!(
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
            "starter set imported"
        );
    }
    Ok(done)
}
