//! Calibration: compute figures from predictions (`/v1/calibration/compute`), store them per
//! architecture and dataset, list and filter them, and answer the calibration benchmark's
//! questions (`/v1/calibration/analysis`).

use std::collections::BTreeMap;
use std::io::Cursor;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Error, Problem, Result, blocking};
use super::extract::{MultiQuery, Path, Query};
use super::svg::Chart;
use crate::calibration::analysis::{self, GroupEffect, PairCorrelation};
use crate::calibration::{
    BinRule, BrierScaling, CalibrationConfig, CalibrationError, CalibrationReport, EvaluationSplit,
    Predictions, Reliability, RowSumPolicy, ScoreMatrix, TemperatureScalingConfig, check_size,
};
use crate::db::architectures as arch_store;
use crate::db::calibration::{
    self as store, BINNED_METRICS, BestEntry, CalibrationRecord, CalibrationRow, Figures,
    ListFilter, ListOrder, PairGroup, SCALAR_METRICS, SeriesRow,
};

/// Largest body of predictions (JSON or `.npz`): 10^6 scores as JSON, more as a compressed
/// `.npz` (up to [`MAX_SCORES`](crate::calibration::MAX_SCORES)).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Most bin counts per request, and most bins over all of them: every bin count costs its edges
/// and a pass per class (`bins` 99001..100000 once took +666 MB).
pub const MAX_BIN_COUNTS: usize = 64;
pub const MAX_TOTAL_BINS: usize = 200_000;

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(super::body_limit(MAX_BODY_BYTES, routes!(compute)))
        .routes(routes!(list_calibration))
        .routes(routes!(analysis))
        .routes(super::body_limit(
            MAX_BODY_BYTES,
            routes!(put_calibration, get_calibration),
        ))
        .routes(routes!(architecture_datasets))
}

/// Predictions as JSON: exactly one of `probs` and `logits` (N×K), and N labels in `0..K`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PredictionsBody {
    /// N rows of K probabilities, each row summing to 1.
    #[schema(value_type = Option<Vec<Vec<f64>>>, min_items = 1)]
    probs: Option<ScoreMatrix>,
    /// N rows of K logits.
    #[schema(value_type = Option<Vec<Vec<f64>>>, min_items = 1)]
    logits: Option<ScoreMatrix>,
    /// N class indices in `0..K`.
    #[schema(min_items = 1)]
    labels: Vec<usize>,
    #[serde(flatten)]
    options: ComputeOptions,
}

/// What to compute; every field has the calibration benchmark's default.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ComputeOptions {
    /// Bin counts (default 5, 10, 15, 20, 25, 50, 100, 200, 500).
    bins: Option<Vec<usize>>,
    /// Equal-width bin edges: `right_closed` (default; Guo, uncertainty-calibration, the
    /// benchmark), `left_closed` (torchmetrics) or `numpy_histogram` (netcal).
    binning: Option<BinRule>,
    brier_scaling: Option<BrierScaling>,
    /// Bins of the reliability diagram (default 15).
    reliability_bins: Option<usize>,
    /// Fit a temperature on a random calibration split and report every figure again as `post`.
    temperature_scaling: Option<TemperatureRequest>,
    /// Rows of `probs` whose sum is off by more than this (default 1e-3) are rejected; smaller
    /// deviations are renormalised.
    max_renormalize_deviation: Option<f64>,
}

/// The split's seed: any `u64`.
fn split_seed_schema() -> utoipa::openapi::schema::Object {
    let mut seed = crate::training::seed_schema();
    seed.description = Some("Seed of the split (default 42).".into());
    seed
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TemperatureRequest {
    /// Fraction of samples used to fit T (default 0.2).
    calibration_fraction: Option<f64>,
    #[schema(schema_with = split_seed_schema)]
    seed: Option<u64>,
    /// `held_out` (default: pre and post on the samples not used to fit T) or `all`.
    evaluate_on: Option<EvaluationSplit>,
}

impl ComputeOptions {
    /// The engine's configuration, within the request caps on bins.
    fn config(&self) -> Result<CalibrationConfig> {
        let mut config = CalibrationConfig::default();
        if let Some(b) = &self.bins {
            let total = b.iter().fold(0usize, |acc, &n| acc.saturating_add(n));
            if b.len() > MAX_BIN_COUNTS || total > MAX_TOTAL_BINS {
                return Err(Error::Unprocessable(format!(
                    "{} bin counts with {total} bins in all; at most {MAX_BIN_COUNTS} bin counts and {MAX_TOTAL_BINS} bins",
                    b.len()
                )));
            }
            config.bin_counts = b.clone();
        }
        config.bin_rule = self.binning.unwrap_or_default();
        config.brier_scaling = self.brier_scaling.unwrap_or_default();
        if let Some(r) = self.reliability_bins {
            config.reliability_bins = r;
        }
        config.temperature_scaling = self.temperature_scaling.as_ref().map(|t| {
            let d = TemperatureScalingConfig::default();
            TemperatureScalingConfig {
                calibration_fraction: t.calibration_fraction.unwrap_or(d.calibration_fraction),
                seed: t.seed.unwrap_or(d.seed),
                evaluate_on: t.evaluate_on.unwrap_or(d.evaluate_on),
                ..d
            }
        });
        Ok(config)
    }

    fn row_policy(&self) -> RowSumPolicy {
        match self.max_renormalize_deviation {
            Some(max_deviation) => RowSumPolicy::RenormalizeWithin { max_deviation },
            None => RowSumPolicy::default(),
        }
    }
}

/// Query parameters of `compute`: the output format, and the options of an `.npz` upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ComputeQuery {
    /// `json` (default) or `svg` (the reliability diagram).
    #[param(inline)]
    format: Option<ReportFormat>,
    /// `.npz` uploads: bin counts (repeatable).
    #[serde(default)]
    bins: Vec<usize>,
    /// `.npz` uploads: bin rule.
    #[param(inline)]
    binning: Option<BinRule>,
    /// `.npz` uploads: Brier scaling.
    #[param(inline)]
    brier_scaling: Option<BrierScaling>,
    /// `.npz` uploads: fit a temperature and report `post` figures.
    #[serde(default)]
    temperature_scaling: bool,
    calibration_fraction: Option<f64>,
    #[param(schema_with = crate::training::seed_schema)]
    seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ReportFormat {
    #[default]
    Json,
    Svg,
}

impl ComputeQuery {
    fn options(&self) -> ComputeOptions {
        ComputeOptions {
            bins: (!self.bins.is_empty()).then(|| self.bins.clone()),
            binning: self.binning,
            brier_scaling: self.brier_scaling,
            reliability_bins: None,
            temperature_scaling: self.temperature_scaling.then_some(TemperatureRequest {
                calibration_fraction: self.calibration_fraction,
                seed: self.seed,
                evaluate_on: None,
            }),
            max_renormalize_deviation: None,
        }
    }
}

/// 413 for inputs over the size cap, 422 for the rest.
fn input_error(e: CalibrationError) -> Error {
    match e {
        CalibrationError::TooManyScores { .. } => Error::PayloadTooLarge(e.to_string()),
        _ => Error::Unprocessable(e.to_string()),
    }
}

/// Predictions validated into the engine's input.
fn predictions(body: PredictionsBody) -> Result<(Predictions, ComputeOptions)> {
    let policy = body.options.row_policy();
    let predictions = match (body.probs, body.logits) {
        (Some(p), None) => Predictions::from_probability_matrix(p, body.labels, policy),
        (None, Some(z)) => Predictions::from_logit_matrix(z, body.labels),
        _ => {
            return Err(Error::Unprocessable(
                "give exactly one of `probs` and `logits`".into(),
            ));
        }
    }
    .map_err(input_error)?;
    Ok((predictions, body.options))
}

/// Reads `probs` or `logits` (N×K float array) and `labels` (N integers) from an `.npz` file.
fn npz_predictions(bytes: &[u8], options: ComputeOptions) -> Result<(Predictions, ComputeOptions)> {
    let bad = |e: std::io::Error| Error::BadRequest(format!("not a readable .npz file: {e}"));
    let mut archive = npyz::npz::NpzArchive::new(Cursor::new(bytes)).map_err(bad)?;
    let mut scores = None;
    for name in ["probs", "logits"] {
        if let Some(array) = archive.by_name(name).map_err(bad)? {
            let shape = array.shape().to_vec();
            let [n, k] = shape[..] else {
                return Err(Error::Unprocessable(format!(
                    "`{name}` must be 2-D (N×K), got shape {shape:?}"
                )));
            };
            // The npy header gives the size: refuse before inflating the data.
            check_size(n, k).map_err(input_error)?;
            scores = Some((name, read_floats(array).map_err(bad)?, n, k));
            break;
        }
    }
    let Some((name, values, n, k)) = scores else {
        return Err(Error::Unprocessable(format!(
            "the .npz needs a `probs` or `logits` array; it has {:?}",
            archive.array_names().collect::<Vec<_>>()
        )));
    };
    let labels_array = archive
        .by_name("labels")
        .map_err(bad)?
        .ok_or_else(|| Error::Unprocessable("the .npz has no `labels` array".into()))?;
    let label_count = (labels_array.shape().iter()).fold(1u64, |acc, &d| acc.saturating_mul(d));
    if label_count != n {
        return Err(Error::Unprocessable(format!(
            "`labels` has shape {:?} for {n} rows of `{name}`",
            labels_array.shape()
        )));
    }
    let labels = read_floats(labels_array).map_err(bad)?;
    let labels: Vec<usize> = labels
        .iter()
        .map(|&l| (l >= 0.0 && l.fract() == 0.0).then_some(l as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::Unprocessable("labels must be non-negative integers".into()))?;
    let predictions = if name == "probs" {
        Predictions::from_probabilities(values, k as usize, labels, options.row_policy())
    } else {
        Predictions::from_logits(values, k as usize, labels)
    }
    .map_err(input_error)?;
    Ok((predictions, options))
}

/// Any numeric npy array as f64.
fn read_floats<R: std::io::Read>(array: npyz::NpyFile<R>) -> std::io::Result<Vec<f64>> {
    use npyz::TypeChar;
    let npyz::DType::Plain(ty) = array.dtype() else {
        return Err(std::io::Error::other("structured arrays are not supported"));
    };
    let convert = |v: Vec<f64>| Ok(v);
    match (ty.type_char(), ty.size_field()) {
        (TypeChar::Float, 8) => array.into_vec::<f64>(),
        (TypeChar::Float, 4) => convert(
            array
                .into_vec::<f32>()?
                .into_iter()
                .map(f64::from)
                .collect(),
        ),
        (TypeChar::Int, 8) => convert(
            array
                .into_vec::<i64>()?
                .into_iter()
                .map(|v| v as f64)
                .collect(),
        ),
        (TypeChar::Int, 4) => convert(
            array
                .into_vec::<i32>()?
                .into_iter()
                .map(f64::from)
                .collect(),
        ),
        (TypeChar::Uint, 1) => {
            convert(array.into_vec::<u8>()?.into_iter().map(f64::from).collect())
        }
        (c, s) => Err(std::io::Error::other(format!(
            "unsupported dtype {c:?}{s}: use float32/64 or int32/64"
        ))),
    }
}

/// Runs the engine off the async runtime (tens of milliseconds for N = 10,000, K = 100).
async fn evaluate(predictions: Predictions, options: &ComputeOptions) -> Result<CalibrationReport> {
    let config = options.config()?;
    blocking(move || crate::calibration::evaluate(&predictions, &config))
        .await?
        .map_err(|e| Error::Unprocessable(e.to_string()))
}

/// Reads predictions from a JSON body or an `.npz` upload (any other content type).
async fn read_predictions(
    ctx: &ApiContext,
    query: &ComputeQuery,
    request: Request,
) -> Result<(Predictions, ComputeOptions)> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        let Json(body) = Json::<PredictionsBody>::from_request(request, ctx).await?;
        predictions(body)
    } else {
        let bytes = Bytes::from_request(request, ctx).await?;
        npz_predictions(&bytes, query.options())
    }
}

/// Computes every calibration figure at every bin count, optionally before and after
/// temperature scaling. Body: JSON predictions, or an `.npz` file (`probs` or `logits`, and
/// `labels`) with options in the query string. `?format=svg` returns the reliability diagram.
#[utoipa::path(post, path = "/v1/calibration/compute", tag = "calibration", params(ComputeQuery),
    request_body(content((PredictionsBody = "application/json"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 200, description = "figures (bin counts as string keys), or the reliability diagram with `format=svg`", content(
            (CalibrationReport = "application/json"), (String = "image/svg+xml"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid predictions (NaN/Inf, wrong shapes, labels out of range, rows not summing to 1)", body = Problem, content_type = "application/problem+json")))]
async fn compute(
    State(ctx): State<ApiContext>,
    MultiQuery(query): MultiQuery<ComputeQuery>,
    request: Request,
) -> Result<Response> {
    let (predictions, options) = read_predictions(&ctx, &query, request).await?;
    let report = evaluate(predictions, &options).await?;
    Ok(match query.format.unwrap_or_default() {
        ReportFormat::Json => Json(report).into_response(),
        ReportFormat::Svg => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            reliability_svg(&report.reliability),
        )
            .into_response(),
    })
}

/// Reliability diagram: accuracy per confidence bin (bars) against the diagonal.
fn reliability_svg(rel: &Reliability) -> String {
    let mut chart = Chart::new(
        "Reliability diagram",
        "confidence",
        "accuracy",
        (0.0, 1.0),
        (0.0, 1.0),
    );
    let mut draw = |bins: &[crate::calibration::ReliabilityBin], colour: &str, label: &str| {
        for b in bins {
            if let Some(acc) = b.accuracy {
                chart.bar(b.lower, b.upper.max(b.lower + 0.004), acc, colour, 0.55);
            }
        }
        chart.legend(label, colour);
    };
    draw(&rel.pre, "#1f77b4", "before temperature scaling");
    if let Some(post) = &rel.post {
        draw(post, "#ff7f0e", "after temperature scaling");
    }
    chart.line(&[(0.0, 0.0), (1.0, 1.0)], "#555", true);
    chart.render()
}

/// Given figures (instead of predictions) for `PUT …/calibration/{dataset}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GivenFigures {
    pre: Figures,
    post: Option<Figures>,
    temperature: Option<f64>,
    /// Top-1 accuracy in 0..1 (default: `pre.accuracy`).
    accuracy: Option<f64>,
}

/// Computes calibration from predictions (same body as `/v1/calibration/compute`, JSON) or stores
/// given figures (`{"pre": {...}, "post": {...}, "temperature": …}`), replacing what was stored
/// for this architecture and dataset.
// The macro keeps one JSON schema of the two: `spec::predictions_or_figures` states both.
#[utoipa::path(put, path = "/v1/architectures/{id}/calibration/{dataset}", tag = "calibration",
    params(("id" = i64, Path, minimum = 1), ("dataset" = String, Path)),
    request_body(content((PredictionsBody = "application/json"), (GivenFigures = "application/json"), (Vec<u8> = "application/octet-stream"))),
    responses((status = 200, body = CalibrationRecord),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn put_calibration(
    State(ctx): State<ApiContext>,
    Path((id, dataset)): Path<(i64, String)>,
    MultiQuery(query): MultiQuery<ComputeQuery>,
    request: Request,
) -> Result<Json<CalibrationRecord>> {
    arch_store::get(&ctx.pool, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no architecture with id {id}")))?;
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let record = if is_json {
        let body = Bytes::from_request(request, &ctx).await?;
        /// Whether the body has `pre`, found without building a JSON tree of the predictions.
        #[derive(Deserialize)]
        struct Probe {
            pre: Option<serde::de::IgnoredAny>,
        }
        let probe: Probe = serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("invalid JSON: {e}")))?;
        if probe.pre.is_some() {
            let given: GivenFigures = serde_json::from_slice(&body)
                .map_err(|e| Error::Unprocessable(format!("invalid figures: {e}")))?;
            given_record(id, dataset, given)?
        } else {
            let parsed: PredictionsBody = serde_json::from_slice(&body)
                .map_err(|e| Error::Unprocessable(format!("invalid predictions: {e}")))?;
            let (predictions, options) = predictions(parsed)?;
            computed_record(id, dataset, predictions, &options).await?
        }
    } else {
        let bytes = Bytes::from_request(request, &ctx).await?;
        let (predictions, options) = npz_predictions(&bytes, query.options())?;
        computed_record(id, dataset, predictions, &options).await?
    };
    let mut tx = ctx.pool.begin().await?;
    store::store(&mut tx, &record).await?;
    tx.commit().await?;
    Ok(Json(record))
}

async fn computed_record(
    id: i64,
    dataset: String,
    predictions: Predictions,
    options: &ComputeOptions,
) -> Result<CalibrationRecord> {
    let n = predictions.n_samples() as i32;
    let config = options.config()?;
    let report = evaluate(predictions, options).await?;
    Ok(CalibrationRecord {
        architecture_id: id,
        dataset,
        accuracy: Some(report.pre.accuracy),
        temperature: report.temperature,
        n_samples: Some(n),
        source: "computed".into(),
        settings: serde_json::json!({
            "bin_rule": config.bin_rule, "brier_scaling": config.brier_scaling,
            "temperature_scaling": config.temperature_scaling,
        }),
        pre: Figures::from(&report.pre),
        post: report.post.as_ref().map(Figures::from),
        reliability: Some(report.reliability),
    })
}

fn given_record(id: i64, dataset: String, given: GivenFigures) -> Result<CalibrationRecord> {
    for figures in std::iter::once(&given.pre).chain(given.post.as_ref()) {
        for (metric, bins, v) in figures.rows() {
            if !v.is_finite() {
                return Err(Error::Unprocessable(format!(
                    "figure {metric}@{bins} = {v} is not finite"
                )));
            }
            if BINNED_METRICS.contains(&metric) && bins == 0 {
                return Err(Error::Unprocessable(format!(
                    "{metric}: bin counts must be positive"
                )));
            }
        }
    }
    Ok(CalibrationRecord {
        architecture_id: id,
        dataset,
        accuracy: given.accuracy.or(given.pre.accuracy),
        temperature: given.temperature,
        n_samples: None,
        source: "given".into(),
        settings: serde_json::json!({}),
        pre: given.pre,
        post: given.post,
        reliability: None,
    })
}

/// The stored calibration of an architecture on a dataset.
#[utoipa::path(get, path = "/v1/architectures/{id}/calibration/{dataset}", tag = "calibration",
    params(("id" = i64, Path, minimum = 1), ("dataset" = String, Path)),
    responses((status = 200, body = CalibrationRecord), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_calibration(
    State(ctx): State<ApiContext>,
    Path((id, dataset)): Path<(i64, String)>,
) -> Result<Json<CalibrationRecord>> {
    store::get(&ctx.pool, id, &dataset)
        .await?
        .map(Json)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no calibration stored for architecture {id} on `{dataset}`"
            ))
        })
}

/// Datasets with stored calibration for an architecture.
#[utoipa::path(get, path = "/v1/architectures/{id}/calibration", tag = "calibration", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = Vec<String>), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn architecture_datasets(
    State(ctx): State<ApiContext>,
    Path(id): Path<i64>,
) -> Result<Json<Vec<String>>> {
    arch_store::get(&ctx.pool, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no architecture with id {id}")))?;
    Ok(Json(store::datasets(&ctx.pool, id).await?))
}

/// Which figure a listing or analysis looks at (the names of [`BINNED_METRICS`] and
/// [`SCALAR_METRICS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Metric {
    #[default]
    Ece,
    EceEm,
    Cwce,
    CwceEm,
    Mce,
    Rmsce,
    Ksce,
    Kdece,
    Mmce,
    Nll,
    Brier,
    Accuracy,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Ece => "ece",
            Metric::EceEm => "ece_em",
            Metric::Cwce => "cwce",
            Metric::CwceEm => "cwce_em",
            Metric::Mce => "mce",
            Metric::Rmsce => "rmsce",
            Metric::Ksce => "ksce",
            Metric::Kdece => "kdece",
            Metric::Mmce => "mmce",
            Metric::Nll => "nll",
            Metric::Brier => "brier",
            Metric::Accuracy => "accuracy",
        }
    }

    /// Whether the metric is stored per bin count (otherwise with `bins = 0`).
    fn binned(self) -> bool {
        BINNED_METRICS.contains(&self.name())
    }
}

/// Before or after temperature scaling.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Stage {
    #[default]
    Pre,
    Post,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Pre => "pre",
            Stage::Post => "post",
        }
    }
}

/// Order of a calibration listing; `-` sorts descending.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
enum CalibrationSort {
    /// Best calibrated first.
    #[default]
    #[serde(rename = "value")]
    Value,
    #[serde(rename = "-value")]
    ValueDesc,
    #[serde(rename = "accuracy")]
    Accuracy,
    #[serde(rename = "-accuracy")]
    AccuracyDesc,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    dataset: Option<String>,
    /// Architecture family / search space (e.g. `nb201`).
    family: Option<String>,
    /// Metric (default `ece`).
    #[param(inline)]
    metric: Option<Metric>,
    /// Bin count of bin-based metrics (default 15).
    bins: Option<i32>,
    /// `pre` (default) or `post` temperature scaling.
    #[param(inline)]
    stage: Option<Stage>,
    min_accuracy: Option<f64>,
    max_accuracy: Option<f64>,
    /// Default `value` (best calibrated first).
    #[param(inline)]
    sort: Option<CalibrationSort>,
    /// Default 50.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// Lists stored calibration figures of one metric, filtered and sorted.
#[utoipa::path(get, path = "/v1/calibration", tag = "calibration", params(ListQuery),
    responses((status = 200, body = Vec<CalibrationRow>), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_calibration(
    State(ctx): State<ApiContext>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<CalibrationRow>>> {
    let metric = q.metric.unwrap_or_default();
    let bins = if metric.binned() {
        q.bins.unwrap_or(15)
    } else {
        0
    };
    let stage = q.stage.unwrap_or_default().name();
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) || q.offset.is_some_and(|o| o < 0) {
        return Err(Error::BadRequest(
            "limit must be 1–1000 and offset ≥ 0".into(),
        ));
    }
    let order = match q.sort.unwrap_or_default() {
        CalibrationSort::Value => ListOrder::Value,
        CalibrationSort::ValueDesc => ListOrder::ValueDesc,
        CalibrationSort::Accuracy => ListOrder::Accuracy,
        CalibrationSort::AccuracyDesc => ListOrder::AccuracyDesc,
    };
    let filter = ListFilter {
        metric: metric.name(),
        bins,
        stage,
        dataset: q.dataset,
        family: q.family,
        min_accuracy: q.min_accuracy,
        max_accuracy: q.max_accuracy,
        order,
        limit,
        offset: q.offset.unwrap_or(0),
    };
    Ok(Json(store::list(&ctx.pool, filter).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AnalysisQuery {
    /// `datasets`: rank agreement of a metric across datasets; `bins`: between bin counts of a
    /// metric; `metrics`: between metrics; `accuracy`: each metric against accuracy;
    /// `temperature`: effect of temperature scaling per architecture group; `best`:
    /// best-calibrated architectures per dataset with their op composition.
    #[param(inline)]
    kind: AnalysisKind,
    /// Metric (default `ece`); `kind=bins` needs a binned one (ece, ece_em, cwce, cwce_em, mce,
    /// rmsce).
    #[param(inline)]
    metric: Option<Metric>,
    /// Bin count (default 15).
    bins: Option<i32>,
    /// `pre` (default) or `post`.
    #[param(inline)]
    stage: Option<Stage>,
    /// Restrict to one dataset (required for `bins`, `metrics`, `accuracy`).
    dataset: Option<String>,
    /// `temperature`: group by `family` (default) or by the count of op label `op` (then
    /// required).
    #[param(inline)]
    group_by: Option<GroupBy>,
    op: Option<String>,
    /// `best`: architectures per dataset (default 10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum AnalysisKind {
    Datasets,
    Bins,
    Metrics,
    Accuracy,
    Temperature,
    Best,
}

/// What `kind=temperature` groups architectures by.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum GroupBy {
    #[default]
    Family,
    Op,
}

/// The answer of an analysis; the field for its `kind` is set.
#[derive(Debug, Serialize, ToSchema)]
struct Analysis {
    #[schema(inline)]
    kind: AnalysisKind,
    #[schema(inline)]
    metric: Metric,
    bins: i32,
    stage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlations: Option<Vec<PairCorrelation>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<GroupEffect>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    best: Option<Vec<BestEntry>>,
}

/// The calibration benchmark's questions, answered over the stored figures.
#[utoipa::path(get, path = "/v1/calibration/analysis", tag = "calibration", params(AnalysisQuery),
    responses((status = 200, body = Analysis), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn analysis(
    State(ctx): State<ApiContext>,
    Query(q): Query<AnalysisQuery>,
) -> Result<Json<Analysis>> {
    let metric_kind = q.metric.unwrap_or_default();
    let (metric, binned) = (metric_kind.name(), metric_kind.binned());
    let bins = if binned { q.bins.unwrap_or(15) } else { 0 };
    let stage = q.stage.unwrap_or_default().name();
    let need_dataset = || {
        q.dataset.clone().ok_or_else(|| {
            Error::BadRequest(format!("kind `{}` needs `dataset`", kind_name(q.kind)))
        })
    };
    let mut out = Analysis {
        kind: q.kind,
        metric: metric_kind,
        bins,
        stage: stage.to_string(),
        correlations: None,
        groups: None,
        best: None,
    };
    let pool = &ctx.pool;
    match q.kind {
        AnalysisKind::Datasets => {
            let rows = store::series_by_dataset(pool, metric, bins, stage).await?;
            out.correlations =
                Some(correlate_series(&ctx.cpu, series_map(rows, |d| d), None).await?);
        }
        AnalysisKind::Bins => {
            if !binned {
                return Err(Error::BadRequest(format!("`{metric}` has no bins")));
            }
            // two halves of the bin-count range, fetched concurrently (two backends)
            let dataset = need_dataset()?;
            let half = |range| store::series_by_bins(pool, metric, stage, &dataset, range);
            let (mut rows, high) = tokio::try_join!(half((i32::MIN, 20)), half((21, i32::MAX)))?;
            rows.extend(high);
            // Keys sort numerically: zero-padded bin counts.
            let series = series_map(rows, |b| format!("{b:06}"));
            let mut pairs = correlate_series(&ctx.cpu, series, None).await?;
            for p in &mut pairs {
                p.a = format!("{metric}@{}", p.a.trim_start_matches('0'));
                p.b = format!("{metric}@{}", p.b.trim_start_matches('0'));
            }
            out.correlations = Some(pairs);
        }
        AnalysisKind::Metrics => {
            let series = figures_at(pool, stage, &need_dataset()?, bins).await?;
            out.correlations = Some(correlate_series(&ctx.cpu, series, None).await?);
        }
        AnalysisKind::Accuracy => {
            let dataset = need_dataset()?;
            let runs = store::accuracies(pool, &dataset);
            let (series, (ids, values)) =
                tokio::try_join!(figures_at(pool, stage, &dataset, bins), async {
                    Ok(runs.await?)
                })?;
            let accuracy = analysis::Series {
                ids: ids.unwrap_or_default(),
                values: values.unwrap_or_default(),
            };
            out.correlations = Some(correlate_series(&ctx.cpu, series, Some(accuracy)).await?);
        }
        AnalysisKind::Temperature => {
            let group = match (q.group_by.unwrap_or_default(), &q.op) {
                (GroupBy::Family, _) => PairGroup::Family,
                (GroupBy::Op, Some(op)) => PairGroup::OpCount(op),
                (GroupBy::Op, None) => {
                    return Err(Error::BadRequest(
                        "group_by=op needs `op` (an op label, e.g. Conv)".into(),
                    ));
                }
            };
            let triples =
                store::temperature_pairs(pool, group, metric, bins, q.dataset.as_deref()).await?;
            out.groups = Some(analysis::temperature_effect(&triples));
        }
        AnalysisKind::Best => {
            let limit = q.limit.unwrap_or(10);
            if !(1..=100).contains(&limit) {
                return Err(Error::BadRequest("limit must be 1–100".into()));
            }
            let best = store::best(pool, metric, bins, stage, q.dataset.clone(), limit).await?;
            out.best = Some(best);
        }
    }
    Ok(Json(out))
}

fn kind_name(kind: AnalysisKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn series_map<K>(
    rows: Vec<SeriesRow<K>>,
    key: impl Fn(K) -> String,
) -> BTreeMap<String, analysis::Series> {
    rows.into_iter()
        .map(|(k, ids, values)| (key(k), analysis::Series { ids, values }))
        .collect()
}

/// Every pair of series, or each series against `reference` ("accuracy"), on the CPU pool
/// (the rank correlations use all cores for a few tens of milliseconds).
async fn correlate_series(
    cpu: &crate::cpu::CpuPool,
    series: BTreeMap<String, analysis::Series>,
    reference: Option<analysis::Series>,
) -> Result<Vec<PairCorrelation>> {
    Ok(cpu
        .run(move || match reference {
            None => analysis::pairwise_series(series),
            Some(r) => analysis::against(series, "accuracy", r),
        })
        .await?)
}

/// Every calibration figure (accuracy excluded) of a dataset and stage at one bin count, as
/// `(metric@bins or metric, architecture, value)`.
async fn figures_at(
    pool: &sqlx::PgPool,
    stage: &str,
    dataset: &str,
    bins: i32,
) -> Result<BTreeMap<String, analysis::Series>> {
    let metrics: Vec<&'static str> = BINNED_METRICS
        .iter()
        .chain(SCALAR_METRICS.iter())
        .copied()
        .filter(|m| *m != "accuracy")
        .collect();
    // two halves of the metric list, fetched concurrently (two backends)
    let (first, second) = metrics.split_at(metrics.len() / 2);
    let half = |names| store::series_by_metric(pool, stage, dataset, bins, names);
    let (mut rows, rest) = tokio::try_join!(half(first.to_vec()), half(second.to_vec()))?;
    rows.extend(rest);
    Ok(series_map(rows, |k| k))
}
