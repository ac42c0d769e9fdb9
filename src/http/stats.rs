//! `/v1/stats`: distribution summaries of benchmark results and accuracy-vs-cost Pareto fronts.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Problem, Result};
use super::extract::MultiQuery;
use super::svg::Chart;
use crate::db::stats::{self as store, Cost, ParetoPoint, SummaryRow};

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

/// Count, best, mean and quartiles per task / dataset / metric (and split / epoch).
#[utoipa::path(get, path = "/v1/stats/summary", tag = "stats", params(SummaryQuery),
    responses((status = 200, body = Vec<SummaryRow>), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn summary(
    State(ctx): State<ApiContext>,
    MultiQuery(q): MultiQuery<SummaryQuery>,
) -> Result<Json<Vec<SummaryRow>>> {
    let rows = store::summary(&ctx.pool, [q.benchmark, q.task, q.dataset, q.metric]).await?;
    Ok(Json(rows))
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
    let points = store::pareto_points(
        &ctx.pool,
        q.x,
        &q.dataset,
        q.metric.as_deref().unwrap_or("acc"),
        q.benchmark.as_deref(),
        q.split.as_deref(),
        q.epoch,
    )
    .await?;
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
