//! The starter set that ships in the repository's `data/` (NAS-Bench-201 complete,
//! NAS-Bench-Macro complete, the LEMUR sample with its ONNX graphs, NASLib's NAS-Bench-Suite-Zero
//! samples of NB101, NB301 and TransNAS-Bench-101 as generated networks), so a new user can query
//! at once. Each part is an ordinary import, recorded per kind in the `starter_set` table when it
//! commits: every start loads the kinds still missing, so an interrupted first run is completed
//! by the next one.

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
    ("nas_bench_suite_zero", ImportKind::NaslibZc),
];

/// Imports the parts of the starter set this database does not hold yet; returns what was
/// imported. Cancelling the future (dropping it) rolls back the import in progress; the parts
/// already committed stay recorded.
pub async fn seed_missing(
    pool: &PgPool,
    seed_dir: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Vec<Summary>> {
    let loaded: Vec<String> = sqlx::query_scalar("select kind from starter_set order by kind")
        .fetch_all(pool)
        .await?;
    let missing: Vec<(&str, ImportKind)> = STARTER_SET
        .iter()
        .copied()
        .filter(|(_, kind)| !loaded.contains(&kind.name()))
        .collect();
    if missing.is_empty() {
        tracing::info!("starter set complete");
        return Ok(vec![]);
    }
    let names: Vec<String> = missing.iter().map(|(_, kind)| kind.name()).collect();
    let already = if loaded.is_empty() {
        "none".to_string()
    } else {
        loaded.join(", ")
    };
    tracing::info!(loading = %names.join(", "), already_loaded = %already, "loading the starter set");
    let started = std::time::Instant::now();
    let mut done = Vec::new();
    for (folder, kind) in missing {
        let dir = seed_dir.join(folder);
        if !dir.is_dir() {
            tracing::warn!(dir = %dir.display(), kind = %kind.name(), "starter data folder missing; skipped");
            continue;
        }
        tracing::info!(dir = %dir.display(), kind = %kind.name(), "loading starter data");
        let summary = run(pool, kind, &dir, progress.clone()).await?;
        sqlx::query(
            "insert into starter_set (kind, import_id) values ($1, $2) on conflict do nothing",
        )
        .bind(kind.name())
        .bind(summary.import_id)
        .execute(pool)
        .await?;
        tracing::info!(
            kind = %kind.name(),
            rows_added = summary.rows_added,
            seconds = format!("{:.1}", summary.seconds),
            "starter data imported"
        );
        done.push(summary);
        crate::memory::release_freed_memory();
    }
    tracing::info!(
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "starter set loaded"
    );
    Ok(done)
}
