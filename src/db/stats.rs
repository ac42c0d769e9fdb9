//! Distribution summaries of benchmark results and the points of accuracy-vs-cost plots.

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;

/// Distribution of one (benchmark, task, dataset, metric, split, epoch) group of values.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct SummaryRow {
    pub benchmark: String,
    pub task: String,
    pub dataset: String,
    pub metric: String,
    pub split: Option<String>,
    pub epoch: Option<i32>,
    pub count: i64,
    /// Distinct models.
    pub models: i64,
    pub best: Option<f64>,
    pub worst: Option<f64>,
    pub mean: Option<f64>,
    pub p25: Option<f64>,
    pub median: Option<f64>,
    pub p75: Option<f64>,
}

/// Summaries per group of the results whose benchmark, task, dataset and metric are among the
/// given values (an empty list: any).
pub async fn summary(pool: &PgPool, filters: [Vec<String>; 4]) -> sqlx::Result<Vec<SummaryRow>> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
        "select benchmark, task, dataset, metric, split, epoch, count(value) as count, count(distinct nn) as models,
                max(value) as best, min(value) as worst, avg(value) as mean,
                percentile_cont(0.25) within group (order by value) as p25,
                percentile_cont(0.5) within group (order by value) as median,
                percentile_cont(0.75) within group (order by value) as p75
         from results where seed is null",
    );
    for (column, values) in ["benchmark", "task", "dataset", "metric"]
        .into_iter()
        .zip(filters)
    {
        if !values.is_empty() {
            sql.push(format!(" and {column} = any("))
                .push_bind(values)
                .push(")");
        }
    }
    sql.push(" group by benchmark, task, dataset, metric, split, epoch order by benchmark, task, dataset, metric, split, epoch");
    sql.build_query_as().fetch_all(pool).await
}

/// The cost axis of a Pareto plot.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cost {
    #[default]
    Params,
    Macs,
    Latency,
}

impl Cost {
    pub fn name(self) -> &'static str {
        match self {
            Cost::Params => "params",
            Cost::Macs => "macs",
            Cost::Latency => "latency",
        }
    }
}

/// One model on the plot.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct ParetoPoint {
    pub nn: String,
    pub architecture_id: Option<i64>,
    pub x: f64,
    pub y: f64,
}

/// Every model's best value of `metric` on `dataset` against its cost, by increasing cost.
pub async fn pareto_points(
    pool: &PgPool,
    cost: Cost,
    dataset: &str,
    metric: &str,
    benchmark: Option<&str>,
    split: Option<&str>,
    epoch: Option<i32>,
) -> sqlx::Result<Vec<ParetoPoint>> {
    let x_expr = match cost {
        Cost::Params => "a.params::float8",
        Cost::Macs => "a.macs::float8",
        Cost::Latency => {
            "(select min(l.value) from results l where l.nn = r.nn and l.metric = 'latency')"
        }
    };
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "select nn, architecture_id, x, y from (
           select r.nn, max(r.architecture_id) as architecture_id, max({x_expr}) as x, max(r.value) as y
           from results r left join architectures a on a.id = r.architecture_id
           where r.value is not null and r.dataset = "
    ));
    sql.push_bind(dataset.to_string())
        .push(" and r.metric = ")
        .push_bind(metric.to_string());
    if let Some(b) = benchmark {
        sql.push(" and r.benchmark = ").push_bind(b.to_string());
    }
    if let Some(s) = split {
        sql.push(" and r.split = ").push_bind(s.to_string());
    }
    if let Some(e) = epoch {
        sql.push(" and r.epoch = ").push_bind(e);
    }
    sql.push(" group by r.nn) p where x is not null order by x, y desc");
    sql.build_query_as().fetch_all(pool).await
}
