//! `/v1/benchmarks`: what benchmark data archdb holds, and NAS-Bench-201 cells the way the
//! NATS-Bench API's `get_more_info` answers (every figure of a cell, per-seed runs, its graph).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Error, Problem, Result};
use super::extract::Path;
use crate::db::architectures as arch_store;
use crate::db::benchmarks::{self as store, BenchmarkSummary, CellFigure};
use crate::generate::nb201::nb201_index;
use crate::generate::nb201_arch_strings;
use crate::import::nb201::{ARCH_ALIAS, BENCHMARK as NB201};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_benchmarks))
        .routes(routes!(nb201_cell))
}

/// Benchmarks with their row counts, datasets and metrics.
#[utoipa::path(get, path = "/v1/benchmarks", tag = "benchmarks", responses((status = 200, body = Vec<BenchmarkSummary>)))]
async fn list_benchmarks(State(ctx): State<ApiContext>) -> Result<Json<Vec<BenchmarkSummary>>> {
    Ok(Json(store::summaries(&ctx.pool).await?))
}

/// A NAS-Bench-201 cell: its graph and every figure (seed means and single runs).
#[derive(Debug, Serialize, ToSchema)]
struct Nb201Cell {
    index: i64,
    arch_str: String,
    /// The cell's CIFAR-10 network (`/v1/architectures/{id}`).
    architecture_id: i64,
    params: i64,
    macs: i64,
    /// Seed means, as NATS-Bench `get_more_info(..., is_random=False)` reports them.
    figures: Vec<CellFigure>,
    /// Single training runs (seeds 777/888/999).
    per_seed: Vec<CellFigure>,
    /// Per-epoch curves where the data has them (NATS-Bench's sample runs: cells 0, 11, 284).
    learning_curves: Vec<LearningCurve>,
}

/// One run's metric per epoch (values[i] is epoch i + 1).
#[derive(Debug, Serialize, ToSchema)]
struct LearningCurve {
    dataset: String,
    split: Option<String>,
    /// `acc` (percent) or `loss`.
    metric: String,
    seed: Option<i32>,
    /// Training budget of the run, in epochs.
    budget: Option<i32>,
    values: Vec<f64>,
}

/// A NAS-Bench-201 cell by official index (`6111`) or architecture string
/// (`|nor_conv_3x3~0|+|…|`): every figure archdb holds for it, as NATS-Bench's `get_more_info`.
#[utoipa::path(get, path = "/v1/benchmarks/nb201/{key}", tag = "benchmarks", params(("key" = String, Path, description = "index 0–15624 or arch string")),
    responses((status = 200, body = Nb201Cell), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn nb201_cell(
    State(ctx): State<ApiContext>,
    Path(key): Path<String>,
) -> Result<Json<Nb201Cell>> {
    // Index and arch string determine each other (official NATS order); isomorphic cells share
    // one architecture, so the cell's own string must come from the key, not from the graph.
    let (index, arch_str) = if key.starts_with('|') {
        let index = nb201_index(&key).map_err(|e| Error::NotFound(e.to_string()))?;
        (index as i64, key.clone())
    } else {
        let index: usize = key.parse().map_err(|_| {
            Error::NotFound(format!(
                "`{key}` is neither an NB201 index (0–15624) nor an arch string"
            ))
        })?;
        let arch = nb201_arch_strings()
            .nth(index)
            .ok_or_else(|| Error::NotFound(format!("no NAS-Bench-201 cell {index} (0–15624)")))?;
        (index as i64, arch)
    };
    let found = arch_store::size_by_alias(&ctx.pool, ARCH_ALIAS, &arch_str).await?;
    let Some((architecture_id, params, macs)) = found else {
        return Err(Error::NotFound(format!(
            "NAS-Bench-201 cell {index} is not stored (import the nb201 data)"
        )));
    };
    let figures = store::figures(&ctx.pool, NB201, &arch_str).await?;
    let (curve_points, figures): (Vec<CellFigure>, Vec<CellFigure>) = figures
        .into_iter()
        .partition(|f| f.metric.starts_with("curve_"));
    let (per_seed, figures) = figures.into_iter().partition(|f| f.seed.is_some());
    let mut learning_curves: Vec<LearningCurve> = Vec::new();
    for point in curve_points {
        let metric = point.metric.trim_start_matches("curve_").to_string();
        let same = |c: &LearningCurve| {
            c.dataset == point.dataset
                && c.split == point.split
                && c.metric == metric
                && c.seed == point.seed
                && c.budget == point.budget
        };
        match learning_curves.iter_mut().rev().find(|c| same(c)) {
            Some(c) => c.values.push(point.value.unwrap_or(f64::NAN)),
            None => learning_curves.push(LearningCurve {
                dataset: point.dataset,
                split: point.split,
                metric,
                seed: point.seed,
                budget: point.budget,
                values: vec![point.value.unwrap_or(f64::NAN)],
            }),
        }
    }
    Ok(Json(Nb201Cell {
        index,
        arch_str,
        architecture_id,
        params,
        macs,
        figures,
        per_seed,
        learning_curves,
    }))
}
