//! What benchmark data is held, and the stored figures of one benchmark model (NAS-Bench-201
//! cells, as `/v1/benchmarks/nb201/{key}` answers them).

use serde::Serialize;
use sqlx::{FromRow, PgPool};
use utoipa::ToSchema;

/// One benchmark's holdings.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct BenchmarkSummary {
    pub benchmark: String,
    /// Distinct models / architectures (`nn`).
    pub models: i64,
    pub rows: i64,
    /// Rows linked to a stored computation graph.
    pub rows_with_graph: i64,
    pub datasets: Vec<String>,
    pub metrics: Vec<String>,
    pub tasks: Vec<String>,
}

/// Every benchmark with its row counts, datasets, metrics and tasks, by name.
pub async fn summaries(pool: &PgPool) -> sqlx::Result<Vec<BenchmarkSummary>> {
    sqlx::query_as(
        "select benchmark, count(distinct nn) as models, count(*) as rows, count(architecture_id) as rows_with_graph,
                array_agg(distinct dataset::text) as datasets, array_agg(distinct metric::text) as metrics,
                array_agg(distinct task::text) as tasks
         from results group by benchmark order by benchmark",
    )
    .fetch_all(pool)
    .await
}

/// One figure of a cell.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct CellFigure {
    pub dataset: String,
    /// `train`, `valid`, `test`, `xvalid`, `xtest`, `ori-test` (NATS-Bench names).
    pub split: Option<String>,
    /// `acc` (percent), `loss`, `params_m` (millions).
    pub metric: String,
    /// Training budget in epochs (12 or 200).
    pub epoch: Option<i32>,
    pub value: Option<f64>,
    /// Training time of the run(s), seconds (NATS simulated timings).
    pub train_time_s: Option<f64>,
    /// Seed of a single run; null for the mean over seeds.
    pub seed: Option<i32>,
    /// The run's training budget (tells apart the 12- and 200-epoch curves of one seed).
    #[serde(skip)]
    pub budget: Option<i32>,
}

/// Every result row of model `nn` of `benchmark` as a figure, ordered by dataset, metric,
/// split, seed (seed means first), budget and epoch.
pub async fn figures(pool: &PgPool, benchmark: &str, nn: &str) -> sqlx::Result<Vec<CellFigure>> {
    sqlx::query_as(
        "select dataset, split, metric, epoch, value, duration::float8 / 1e9 as train_time_s, seed,
                (hyperparameters ->> 'epochs')::int as budget
         from results where benchmark = $1 and nn = $2
         order by dataset, metric, split, seed nulls first, budget, epoch",
    )
    .bind(benchmark)
    .bind(nn)
    .fetch_all(pool)
    .await
}
