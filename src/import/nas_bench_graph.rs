//! `archdb import nas-bench-graph DIR`: NAS-Bench-Graph's "light" tables (DIR laid out like
//! `shared/data/nas_bench_graph`): 26,206 GNN architectures on 9 node-classification datasets
//! (proteins: 2,021 of them). Each (dataset, architecture) row gives four `results` rows:
//! `perf` on the `valid` and `test` splits (accuracy as a fraction; for proteins presumably
//! ROC-AUC, which upstream does not state, hence the neutral name), `latency_s` and `params`
//! (the source's `para`, apparently millions).
//!
//! GNN ops (GCN, GAT, …) have no standard ONNX form, so no graphs are stored. `nn` is the
//! architecture spelled out as `links:ops` (e.g. `0012:gcn-gin-fc-cheb`), readable and usable
//! with `nn_prefix` to select a DAG shape; the benchmark's own key (`arch_hash`, which encodes
//! the same) is in the source key `<dataset>:<arch_hash>:<column>`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::json;

use super::{Import, ImportKind, Progress, Summary, copy_merge, open_gz};

/// `results.benchmark` of NAS-Bench-Graph rows.
pub const BENCHMARK: &str = "nas-bench-graph";

const FILE: &str = "nas_bench_graph_light.csv.gz";

const RESULT_COLUMNS: &[&str] = &[
    "benchmark",
    "source_key",
    "task",
    "dataset",
    "metric",
    "nn",
    "value",
    "split",
];

/// One row of `nas_bench_graph_light.csv.gz`; `links` is read as a string (leading zeros).
#[derive(Deserialize)]
struct Row {
    dataset: String,
    arch_hash: u64,
    links: String,
    ops: String,
    valid_perf: Option<f64>,
    test_perf: Option<f64>,
    latency_s: Option<f64>,
    params: Option<f64>,
}

/// Streams every row of the table into `results`, in one transaction.
pub async fn import(
    pool: &sqlx::PgPool,
    dir: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Summary> {
    let path = dir.join(FILE);
    anyhow::ensure!(path.is_file(), "{} not found", path.display());
    let mut import = Import::begin(pool, ImportKind::NasBenchGraph, dir).await?;
    let p = progress.clone();
    let (read, added) = copy_merge(
        &mut import.tx,
        import.id,
        "results",
        RESULT_COLUMNS,
        move |sink| {
            let mut csv = csv::Reader::from_reader(open_gz(&path, "nas-bench-graph", &p)?);
            for row in csv.deserialize::<Row>() {
                let row = row.with_context(|| format!("reading {}", path.display()))?;
                let nn = format!("{}:{}", row.links, row.ops);
                let figures = [
                    ("valid_perf", "perf", Some("valid"), row.valid_perf),
                    ("test_perf", "perf", Some("test"), row.test_perf),
                    ("latency_s", "latency_s", None, row.latency_s),
                    ("params", "params", None, row.params),
                ];
                for (column, metric, split, value) in figures {
                    sink.text(BENCHMARK)
                        .text(&format!("{}:{}:{column}", row.dataset, row.arch_hash))
                        .text("node-classification")
                        .text(&row.dataset)
                        .text(metric)
                        .text(&nn);
                    sink.float(value).opt_text(split);
                    sink.end_row()?;
                }
            }
            Ok(())
        },
    )
    .await?;
    progress.done();
    let details = json!({"results": {"read": read, "added": added}});
    import
        .finish(pool, read, added, details, &["results"])
        .await
}
