//! `/v1/stats`: distribution summaries of benchmark results and accuracy-vs-cost Pareto fronts.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Problem, Result};
use super::extract::MultiQuery;
use super::svg::Chart;

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(pareto))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SummaryQuery {
    #[serde(default)]
    benchmark: Vec<String>,
    #[serde(default)]
    task: Vec<String>,
    #[serde(default)]
    dataset: Vec<String>,
    #[serde(default)]
    metric: Vec<String>,
}

/// Distribution of one (benchmark, task, dataset, metric, split, epoch) group of values.
#[derive(Debug, Serialize, FromRow, ToSchema)]
struct SummaryRow {
    benchmark: String,
    task: String,
    dataset: String,
    metric: String,
    split: Option<String>,
    epoch: Option<i32>,
    count: i64,
    /// Distinct models.
    models: i64,
    best: Option<f64>,
    worst: Option<f64>,
    mean: Option<f64>,
    p25: Option<f64>,
    median: Option<f64>,
    p75: Option<f64>,
}

/// Count, best, mean and quartiles per task / dataset / metric (and split / epoch).
#[utoipa::path(get, path = "/v1/stats/summary", tag = "stats", params(SummaryQuery),
    responses((status = 200, body = Vec<SummaryRow>), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn summary(
    State(ctx): State<ApiContext>,
    MultiQuery(q): MultiQuery<SummaryQuery>,
) -> Result<Json<Vec<SummaryRow>>> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
        "select benchmark, task, dataset, metric, split, epoch, count(value) as count, count(distinct nn) as models,
                max(value) as best, min(value) as worst, avg(value) as mean,
                percentile_cont(0.25) within group (order by value) as p25,
                percentile_cont(0.5) within group (order by value) as median,
                percentile_cont(0.75) within group (order by value) as p75
         from results where seed is null",
    );
    for (column, values) in [
        ("benchmark", q.benchmark),
        ("task", q.task),
        ("dataset", q.dataset),
        ("metric", q.metric),
    ] {
        if !values.is_empty() {
            sql.push(format!(" and {column} = any("))
                .push_bind(values)
                .push(")");
        }
    }
    sql.push(" group by benchmark, task, dataset, metric, split, epoch order by benchmark, task, dataset, metric, split, epoch");
    Ok(Json(sql.build_query_as().fetch_all(&ctx.pool).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ParetoQuery {
    dataset: String,
    /// Cost axis: `params` (default) or `macs` of the stored graph, or `latency` (results metric
    /// `latency`).
    #[serde(default)]
    #[param(inline)]
    x: Cost,
    /// Quality axis; only `accuracy` (the best value of `metric` per model).
    #[serde(default)]
    #[param(inline)]
    y: Quality,
    /// Result metric on the y axis (default `acc`).
    metric: Option<String>,
    benchmark: Option<String>,
    split: Option<String>,
    epoch: Option<i32>,
    /// `json` (default) or `svg`.
    #[param(inline)]
    format: Option<PlotFormat>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Cost {
    #[default]
    Params,
    Macs,
    Latency,
}

impl Cost {
    fn name(self) -> &'static str {
        match self {
            Cost::Params => "params",
            Cost::Macs => "macs",
            Cost::Latency => "latency",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Quality {
    #[default]
    Accuracy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum PlotFormat {
    #[default]
    Json,
    Svg,
}

/// One model on the plot.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
struct ParetoPoint {
    nn: String,
    architecture_id: Option<i64>,
    x: f64,
    y: f64,
}

#[derive(Debug, Serialize, ToSchema)]
struct ParetoFront {
    x: String,
    y: String,
    /// Models with both coordinates.
    points: usize,
    /// Models no other model beats on both axes (lower x, higher y), by increasing x.
    front: Vec<ParetoPoint>,
}

/// Accuracy against cost: the models on the Pareto front (`format=svg` plots every model and
/// the front).
#[utoipa::path(get, path = "/v1/stats/pareto", tag = "stats", params(ParetoQuery),
    responses((status = 200, description = "the front (JSON), or the plot with `format=svg`", content((ParetoFront = "application/json"), (String = "image/svg+xml"))),
              (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn pareto(
    State(ctx): State<ApiContext>,
    MultiQuery(q): MultiQuery<ParetoQuery>,
) -> Result<Response> {
    let Quality::Accuracy = q.y;
    let x_expr = match q.x {
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
    sql.push_bind(q.dataset)
        .push(" and r.metric = ")
        .push_bind(q.metric.unwrap_or_else(|| "acc".into()));
    if let Some(b) = q.benchmark {
        sql.push(" and r.benchmark = ").push_bind(b);
    }
    if let Some(s) = q.split {
        sql.push(" and r.split = ").push_bind(s);
    }
    if let Some(e) = q.epoch {
        sql.push(" and r.epoch = ").push_bind(e);
    }
    sql.push(" group by r.nn) p where x is not null order by x, y desc");
    let points: Vec<ParetoPoint> = sql.build_query_as().fetch_all(&ctx.pool).await?;
    let front = pareto_front(&points);
    if q.format == Some(PlotFormat::Svg) {
        let span = |f: fn(&ParetoPoint) -> f64| {
            points
                .iter()
                .map(f)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                })
        };
        let (xs, ys) = (span(|p| p.x), span(|p| p.y));
        let mut chart = Chart::new(
            "Pareto front",
            q.x.name(),
            "accuracy",
            if points.is_empty() { (0.0, 1.0) } else { xs },
            if points.is_empty() { (0.0, 1.0) } else { ys },
        );
        chart.points(
            &points.iter().map(|p| (p.x, p.y)).collect::<Vec<_>>(),
            "#9aa",
            2.0,
        );
        chart.line(
            &front.iter().map(|p| (p.x, p.y)).collect::<Vec<_>>(),
            "#d62728",
            false,
        );
        chart.points(
            &front.iter().map(|p| (p.x, p.y)).collect::<Vec<_>>(),
            "#d62728",
            3.5,
        );
        chart.legend(&format!("{} models", points.len()), "#9aa");
        chart.legend(&format!("Pareto front ({})", front.len()), "#d62728");
        return Ok(([(header::CONTENT_TYPE, "image/svg+xml")], chart.render()).into_response());
    }
    Ok(Json(ParetoFront {
        x: q.x.name().to_string(),
        y: "accuracy".to_string(),
        points: points.len(),
        front,
    })
    .into_response())
}

/// Points sorted by x ascending (ties by y descending): keep each that beats every cheaper one.
fn pareto_front(points: &[ParetoPoint]) -> Vec<ParetoPoint> {
    let mut best = f64::NEG_INFINITY;
    points
        .iter()
        .filter(|p| {
            let keep = p.y > best;
            best = best.max(p.y);
            keep
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_keeps_only_undominated_points() {
        let p = |x: f64, y: f64| ParetoPoint {
            nn: format!("{x}/{y}"),
            architecture_id: None,
            x,
            y,
        };
        let front = pareto_front(&[
            p(1.0, 0.5),
            p(1.0, 0.4),
            p(2.0, 0.45),
            p(3.0, 0.7),
            p(4.0, 0.7),
            p(5.0, 0.9),
        ]);
        let xy: Vec<(f64, f64)> = front.iter().map(|q| (q.x, q.y)).collect();
        assert_eq!(xy, vec![(1.0, 0.5), (3.0, 0.7), (5.0, 0.9)]);
    }
}
