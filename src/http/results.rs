//! `/v1/results` (benchmark results with LEMUR `data()` parity, top models, pairs) and
//! `/v1/lemur/…` (MinHash-similar models, on-device runs). Answers stream from the database as
//! a JSON array, JSON lines or CSV, so a full dump never sits in memory.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{Connection, Row};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::auth::Caller;
use super::error::{Error, Problem, Result};
use super::extract::Strict;
use crate::db::results::{
    self as store, Column, Filter, Kind, Output, PairSpec, RowQuery, Selection,
};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_results))
        .routes(routes!(top_models))
        .routes(routes!(pairs))
        .routes(routes!(similar))
        .routes(routes!(runs))
}

/// Which rows: LEMUR `data()`'s filters (each repeatable = IN) and data_withnonnullvalue's
/// required fields.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FilterParams {
    /// Benchmark / source: `lemur`, `nb201`, `nb-macro`, `naslib-zc`, `nas-bench-graph`.
    #[serde(default)]
    benchmark: Vec<String>,
    /// e.g. `img-classification`. Exact, case-sensitive.
    #[serde(default)]
    task: Vec<String>,
    /// e.g. `cifar-10`.
    #[serde(default)]
    dataset: Vec<String>,
    /// e.g. `acc`.
    #[serde(default)]
    metric: Vec<String>,
    /// Model name, e.g. `AlexNet`.
    #[serde(default)]
    nn: Vec<String>,
    #[serde(default)]
    epoch: Vec<i32>,
    /// Model-name prefix (LEMUR `nn_prefixes`): exact and case-sensitive, `_` and `%` are
    /// plain characters. Rows matching any prefix are kept.
    #[serde(default)]
    nn_prefix: Vec<String>,
    /// Field that must not be null (LEMUR `require_stat_nonnull`): id, task, dataset, metric,
    /// nn, epoch, accuracy, duration, transform, prm, split, seed, architecture_id.
    #[serde(default)]
    #[param(schema_with = require_schema)]
    require: Vec<String>,
    /// Hyperparameter that must be present and not null (LEMUR `require_prm_nonnull`).
    #[serde(default)]
    require_prm: Vec<String>,
}

impl FilterParams {
    fn filter(&self) -> Result<Filter> {
        let require = self
            .require
            .iter()
            .map(|f| {
                store::require_column(f).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "unknown field `{f}` in require (id, task, dataset, metric, nn, epoch, \
                         accuracy, duration, transform, prm, split, seed, architecture_id)"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Filter {
            benchmark: self.benchmark.clone(),
            task: self.task.clone(),
            dataset: self.dataset.clone(),
            metric: self.metric.clone(),
            nn: self.nn.clone(),
            epoch: self.epoch.clone(),
            nn_prefix: self.nn_prefix.clone(),
            require,
            require_prm: self.require_prm.clone(),
        })
    }
}

/// LEMUR's row selection.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SelectParams {
    /// Keep only the rows with the highest accuracy of their (task, dataset, metric, nn,
    /// epoch); ties are kept. Applied after `unique_nn`.
    #[serde(default)]
    only_best_accuracy: bool,
    /// One row per model: its best accuracy over the filtered rows (ties: lower epoch first).
    #[serde(default)]
    unique_nn: bool,
    /// At most this many rows (in LEMUR's order). Absent: the server's dump cap (100000 by
    /// default, `x-archdb-row-cap` names it); 0: all rows. More than the cap needs a bearer
    /// token when the server has one.
    #[param(minimum = 0)]
    max_rows: Option<i64>,
}

impl SelectParams {
    fn selection(&self) -> Selection {
        Selection {
            unique_nn: self.unique_nn,
            only_best: self.only_best_accuracy,
        }
    }

    fn max_rows(&self) -> Result<Option<i64>> {
        match self.max_rows {
            Some(n) if n < 0 => Err(Error::BadRequest("max_rows must not be negative".into())),
            Some(0) | None => Ok(None),
            Some(n) => Ok(Some(n)),
        }
    }

    /// The rows a dump returns: `max_rows`, or the server's cap when it is absent. All rows or
    /// more than the cap only for a caller with a token, when the server has one.
    fn dump_rows(&self, ctx: &ApiContext, caller: Caller) -> Result<Limit> {
        let cap = ctx.config.dump_rows;
        let wanted = match self.max_rows {
            None => return Ok(Limit::Capped(cap)),
            Some(_) => self.max_rows()?,
        };
        let within_cap = wanted.is_some_and(|n| n <= cap);
        if !within_cap && ctx.tokens.any() && caller == Caller::Anonymous {
            return Err(Error::Unauthorized);
        }
        Ok(wanted.map_or(Limit::All, Limit::Asked))
    }
}

/// How many rows a dump returns.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// All of them (`max_rows=0`).
    All,
    /// As many as the client asked for.
    Asked(i64),
    /// The server's cap, since the client did not say.
    Capped(i64),
}

impl Limit {
    fn rows(self) -> Option<i64> {
        match self {
            Limit::All => None,
            Limit::Asked(n) | Limit::Capped(n) => Some(n),
        }
    }
}

/// Optional columns.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ColumnParams {
    /// Add `nn_code`, `nn_id`, `metric_code`, `metric_id`, `transform_code`, `transform_id`
    /// (LEMUR code and code ids; transform and metric code are not shipped, so null).
    #[serde(default)]
    include_code: bool,
    /// Add LEMUR's 29 `nn_*` architecture statistics (one statistics row per model).
    #[serde(default)]
    include_nn_stats: bool,
    /// `false`: `prm` is `{}`.
    #[serde(default = "yes")]
    include_prm: bool,
    /// nn statistic (alias `nn_flops` or raw `flops`) that must not be null: only rows with
    /// statistics for their own (nn, prm_id), returning just these `nn_*` columns.
    #[serde(default)]
    #[param(schema_with = nn_stat_schema)]
    require_nn_stat: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `/v1/results` only: hyperparameters as columns.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PrmColumns {
    /// Also return each hyperparameter as its own column (a name that would shadow a column
    /// gets a `prm_` prefix).
    #[serde(default)]
    prm_as_columns: bool,
}

impl ColumnParams {
    fn output(&self, prm_as_columns: bool) -> Result<Output> {
        let require_nn_stat = self
            .require_nn_stat
            .iter()
            .map(|c| {
                store::nn_stat_column(c).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "unknown nn statistic `{c}` in require_nn_stat (e.g. nn_flops, nn_total_params)"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Output {
            code: self.include_code,
            nn_stats: self.include_nn_stats,
            prm: self.include_prm,
            prm_as_columns,
            require_nn_stat,
        })
    }
}

/// Response format.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    /// One JSON array of row objects.
    #[default]
    Json,
    /// One JSON object per line (`application/x-ndjson`).
    Jsonl,
    /// CSV with a header row; `prm` is JSON text, nulls are empty.
    Csv,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FormatParam {
    /// `json` (default), `jsonl` or `csv`.
    #[param(inline)]
    format: Option<Format>,
}

/// A result row as `GET /v1/results` returns it (more columns with `include_code`,
/// `include_nn_stats`, `prm_as_columns`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // documents the streamed rows for OpenAPI only
struct ResultRow {
    /// The row's key in its benchmark (LEMUR stat id).
    id: String,
    benchmark: String,
    task: String,
    dataset: String,
    metric: String,
    nn: String,
    epoch: Option<i64>,
    /// The metric's value (LEMUR `accuracy`).
    accuracy: Option<f64>,
    /// Training time in nanoseconds.
    duration: Option<i64>,
    split: Option<String>,
    seed: Option<i64>,
    /// Hyperparameter-set id (LEMUR `prm_id`).
    prm_id: Option<String>,
    /// Hyperparameters, exactly as LEMUR returns `prm` (including `transform`).
    prm: serde_json::Value,
    transform: Option<String>,
    /// The model's computation graph (`/v1/architectures/{id}`), where one is stored.
    architecture_id: Option<i64>,
}

/// Benchmark results (LEMUR `data()` / `data_withnonnullvalue()`)
///
/// Same filters, same selection (`unique_nn`, then `only_best_accuracy`, then `max_rows`), same
/// order (task, dataset, metric, nn, epoch) and LEMUR's column names, plus
/// data_withnonnullvalue's `require*`, `include_prm` and `prm_as_columns`. Streams all matching
/// rows unless `max_rows` is set. Differences from LEMUR: docs/lemur.md.
#[utoipa::path(get, path = "/v1/results", tag = "results",
    params(FilterParams, SelectParams, ColumnParams, PrmColumns, FormatParam),
    responses(
        (status = 200, description = "rows in LEMUR order", content(
            (Vec<ResultRow> = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"))),
        (status = 400, description = "unknown or malformed parameter", body = Problem, content_type = "application/problem+json")))]
async fn list_results(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Strict((filter, select, columns, prm, format)): Strict<(
        FilterParams,
        SelectParams,
        ColumnParams,
        PrmColumns,
        FormatParam,
    )>,
) -> Result<Response> {
    let filter = filter.filter()?;
    let output = columns.output(prm.prm_as_columns)?;
    let format = format.format.unwrap_or_default();
    let limit = select.dump_rows(&ctx, caller)?;
    let keys = if output.prm_as_columns {
        store::prm_keys(&ctx.pool, &filter, select.selection(), limit.rows()).await?
    } else {
        Vec::new()
    };
    let query = store::data(&filter, select.selection(), &output, &keys, limit.rows());
    stream_rows(&ctx, query, format, Cost::Dump(limit)).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TopParams {
    /// How many models (JoinConf `num_joint_nns`).
    #[param(minimum = 1, maximum = 100000)]
    n: i64,
}

/// The best models (LEMUR JoinConf "Var-N")
///
/// The best row of each model among the filtered rows, best models first, `n` distinct models.
#[utoipa::path(get, path = "/v1/results/top-models", tag = "results",
    params(TopParams, FilterParams, ColumnParams, FormatParam),
    responses(
        (status = 200, description = "one row per model, best first", content(
            (Vec<ResultRow> = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"))),
        (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn top_models(
    State(ctx): State<ApiContext>,
    Strict((top, filter, columns, format)): Strict<(
        TopParams,
        FilterParams,
        ColumnParams,
        FormatParam,
    )>,
) -> Result<Response> {
    let n = top.n;
    if !(1..=100_000).contains(&n) {
        return Err(Error::BadRequest("n must be between 1 and 100000".into()));
    }
    let output = columns.output(false)?;
    let query = store::top_models(&filter.filter()?, &output, n);
    stream_rows(
        &ctx,
        query,
        format.format.unwrap_or_default(),
        Cost::Bounded,
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PairParams {
    /// Column the partner shares (JoinConf `same_columns`): task, dataset, metric, nn, epoch.
    /// At least one.
    #[param(schema_with = same_schema)]
    same: Vec<String>,
    /// Column the partner differs in (JoinConf `diff_columns`).
    #[serde(default)]
    #[param(schema_with = diff_schema)]
    diff: Vec<String>,
    /// The partner has a higher accuracy (JoinConf `enhance_nn`).
    #[serde(default)]
    better: bool,
    /// Leave out rows that have no partner (LEMUR keeps them with null `*_2` columns).
    #[serde(default)]
    require_partner: bool,
    /// Any text: makes the random choice of partners repeatable.
    seed: Option<String>,
}

/// [`SelectParams`] with the pairs' bound on `max_rows`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PairSelect {
    /// As for `/v1/results`.
    #[serde(default)]
    only_best_accuracy: bool,
    /// As for `/v1/results`.
    #[serde(default)]
    unique_nn: bool,
    /// Rows with a partner (default 100; 0 is the default too).
    #[param(minimum = 0, maximum = 1000)]
    max_rows: Option<i64>,
}

impl From<PairSelect> for SelectParams {
    fn from(p: PairSelect) -> Self {
        SelectParams {
            only_best_accuracy: p.only_best_accuracy,
            unique_nn: p.unique_nn,
            max_rows: p.max_rows,
        }
    }
}

/// Most rows of a pairs answer: each costs a scan of the filtered rows.
const MAX_PAIRS: i64 = 1000;

/// The columns `same` and `diff` name.
const PAIR_COLUMNS: [&str; 5] = ["task", "dataset", "metric", "nn", "epoch"];

fn pair_column(c: &str) -> Result<&'static str> {
    PAIR_COLUMNS.into_iter().find(|k| *k == c).ok_or_else(|| {
        Error::BadRequest(format!(
            "unknown column `{c}` in same/diff (task, dataset, metric, nn, epoch)"
        ))
    })
}

/// Rows with a partner row, e.g. a better model (LEMUR JoinConf pairwise)
///
/// Each of the first `max_rows` rows (default 100, at most 1000) with one random partner row
/// (`*_2` columns) that shares the `same` columns, differs in the `diff` columns and, with
/// `better`, has a higher accuracy, e.g. `same=task&same=dataset&same=metric&same=epoch&diff=nn&
/// better=true` for (model, better model) pairs.
#[utoipa::path(get, path = "/v1/results/pairs", tag = "results",
    params(PairParams, FilterParams, PairSelect, ColumnParams, FormatParam),
    responses(
        (status = 200, description = "rows with their partner's columns suffixed `_2`", content(
            (Vec<ResultRow> = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"))),
        (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn pairs(
    State(ctx): State<ApiContext>,
    Strict((p, filter, select, columns, format)): Strict<(
        PairParams,
        FilterParams,
        PairSelect,
        ColumnParams,
        FormatParam,
    )>,
) -> Result<Response> {
    let spec = PairSpec {
        same: p
            .same
            .iter()
            .map(|c| pair_column(c))
            .collect::<Result<_>>()?,
        diff: p
            .diff
            .iter()
            .map(|c| pair_column(c))
            .collect::<Result<_>>()?,
        better: p.better,
        require_partner: p.require_partner,
        seed: p.seed,
    };
    if spec.same.is_empty() {
        return Err(Error::BadRequest(
            "pairs need at least one `same` column (e.g. same=task&same=dataset)".into(),
        ));
    }
    let select = SelectParams::from(select);
    let max_rows = select.max_rows()?.unwrap_or(100);
    if max_rows > MAX_PAIRS {
        return Err(Error::BadRequest(format!(
            "max_rows must be at most {MAX_PAIRS} for pairs"
        )));
    }
    let output = columns.output(false)?;
    let query = store::pairs(
        &filter.filter()?,
        select.selection(),
        &output,
        &spec,
        max_rows,
    );
    stream_rows(
        &ctx,
        query,
        format.format.unwrap_or_default(),
        Cost::Bounded,
    )
    .await
}

/// LEMUR's similarity bands (`SIM_BANDS`), half-open `[min, max)`, from the most similar down.
const BANDS: [(&str, f64, f64); 6] = [
    ("very_high", 0.98, 1.0000001),
    ("high", 0.95, 0.98),
    ("medium", 0.85, 0.95),
    ("low", 0.60, 0.85),
    ("very_low_near", 0.30, 0.60),
    ("very_low_far", 0.0, 0.30),
];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SimilarParams {
    /// The model to compare with. Absent: the first of the 50 most accurate models that has at
    /// least `n` neighbours in the band (trying lower bands when none has).
    anchor_nn: Option<String>,
    /// LEMUR's similarity band (default: all of [0, 1]).
    #[param(schema_with = band_schema)]
    band: Option<String>,
    /// Lower Jaccard bound (inclusive); overrides the band's.
    min_jaccard: Option<f64>,
    /// Upper Jaccard bound (exclusive); overrides the band's.
    max_jaccard: Option<f64>,
    /// Models wanted (JoinConf `num_joint_nns`), default 10; `n × overfetch` at most 100000.
    #[param(minimum = 1, maximum = 100000)]
    n: Option<usize>,
    /// Rows returned: up to `n × overfetch` (default 10).
    #[param(minimum = 1, maximum = 100000)]
    overfetch: Option<usize>,
}

/// Models with code similar to an anchor's (LEMUR JoinConf `anchor_band_db_minhash`)
///
/// Models whose code MinHash Jaccard similarity (7-token shingles) to the anchor model lies in
/// the band, each with its best row among the filtered LEMUR rows, most accurate first, with
/// `anchor_jaccard` and `anchor_nn`.
#[utoipa::path(get, path = "/v1/lemur/similar", tag = "lemur", operation_id = "lemur_similar",
    params(SimilarParams, FilterParams, ColumnParams, FormatParam),
    responses(
        (status = 200, description = "best rows of the similar models", content(
            (Vec<ResultRow> = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown anchor, or no anchor with neighbours", body = Problem, content_type = "application/problem+json")))]
async fn similar(
    State(ctx): State<ApiContext>,
    Strict((s, filter, columns, format)): Strict<(
        SimilarParams,
        FilterParams,
        ColumnParams,
        FormatParam,
    )>,
) -> Result<Response> {
    let band = match s.band.as_deref() {
        None => 0,
        Some(b) => BANDS
            .iter()
            .position(|(name, ..)| *name == b)
            .ok_or_else(|| {
                let names: Vec<&str> = BANDS.iter().map(|(n, ..)| *n).collect();
                Error::BadRequest(format!("unknown band `{b}` ({})", names.join(", ")))
            })?,
    };
    let n = s.n.unwrap_or(10);
    let overfetch = s.overfetch.unwrap_or(10);
    if n == 0 || overfetch == 0 || n.saturating_mul(overfetch) > 100_000 {
        return Err(Error::BadRequest(
            "n and overfetch must be at least 1, n × overfetch at most 100000".into(),
        ));
    }
    // Without a band: everything from 0 to 1; a band may be overridden by explicit bounds.
    let bounds = |i: usize| -> (f64, f64) {
        let (_, lo, hi) = if s.band.is_some() {
            BANDS[i]
        } else {
            ("", 0.0, 1.0000001)
        };
        (s.min_jaccard.unwrap_or(lo), s.max_jaccard.unwrap_or(hi))
    };
    let candidates = store::similarity_candidates(&ctx.pool, &filter.filter()?).await?;
    let jaccard = |a: &[i32], b: &[i32]| {
        a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
    };
    let neighbours = |anchor: &store::Candidate, (lo, hi): (f64, f64)| -> Vec<(i64, f64)> {
        candidates
            .iter()
            .filter(|c| c.nn != anchor.nn)
            .map(|c| (c.id, jaccard(&anchor.minhash, &c.minhash)))
            .filter(|(_, j)| *j >= lo && *j < hi)
            .collect()
    };
    let chosen = match &s.anchor_nn {
        Some(name) => {
            let anchor = candidates.iter().find(|c| &c.nn == name).ok_or_else(|| {
                Error::NotFound(format!(
                    "no LEMUR model `{name}` with code among the filtered rows"
                ))
            })?;
            Some((anchor, neighbours(anchor, bounds(band))))
        }
        None => {
            let explicit = s.min_jaccard.is_some() || s.max_jaccard.is_some() || s.band.is_none();
            let tries = if explicit {
                band..band + 1
            } else {
                band..BANDS.len()
            };
            tries.into_iter().find_map(|b| {
                candidates.iter().take(50).find_map(|anchor| {
                    let found = neighbours(anchor, bounds(b));
                    (found.len() >= n).then_some((anchor, found))
                })
            })
        }
    };
    let (anchor, mut found) = chosen.ok_or_else(|| {
        Error::NotFound(format!(
            "no anchor among the 50 most accurate models has {n} neighbours in the band"
        ))
    })?;
    // The candidates are sorted by accuracy, so the first ones are the rows LEMUR keeps.
    found.truncate(n * overfetch);
    let (ids, js) = found.into_iter().unzip();
    let output = columns.output(false)?;
    let query = store::similar_rows(&output, &anchor.nn, ids, js);
    stream_rows(
        &ctx,
        query,
        format.format.unwrap_or_default(),
        Cost::Bounded,
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RunParams {
    /// Model name (repeatable).
    #[serde(default)]
    model_name: Vec<String>,
    /// Device, e.g. `sdk_gphone64_x86_64` (repeatable).
    #[serde(default)]
    device_type: Vec<String>,
    /// At most this many rows. Absent: the server's dump cap; 0: all (more than the cap needs a
    /// bearer token when the server has one).
    #[param(minimum = 0)]
    max_rows: Option<i64>,
}

/// On-device runs (LEMUR `run_data`)
///
/// Android runtime records by model and device, ordered by model.
#[utoipa::path(get, path = "/v1/lemur/runs", tag = "lemur",
    params(RunParams, FormatParam),
    responses(
        (status = 200, description = "run records ordered by model", content(
            (Vec<serde_json::Value> = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"))),
        (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn runs(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Strict((r, format)): Strict<(RunParams, FormatParam)>,
) -> Result<Response> {
    let limit = SelectParams {
        max_rows: r.max_rows,
        ..SelectParams::default()
    }
    .dump_rows(&ctx, caller)?;
    let query = store::runs(&r.model_name, &r.device_type, limit.rows());
    stream_rows(
        &ctx,
        query,
        format.format.unwrap_or_default(),
        Cost::Dump(limit),
    )
    .await
}

/// Bytes buffered before a chunk is sent.
const CHUNK: usize = 64 * 1024;

/// What a streamed query may cost.
#[derive(Debug, Clone, Copy)]
enum Cost {
    /// A dump: it may run as long as the client keeps reading, up to the streaming timeout.
    Dump(Limit),
    /// An answer of bounded size that is expensive to compute (pairs, top models, similar):
    /// the request statement timeout applies.
    Bounded,
}

/// Runs the query on a connection of the streaming pool, on its own task, and streams the
/// encoded rows. An error before the first chunk is an ordinary problem+json answer; a later one
/// cuts the response short. The query's time is bounded by `statement_timeout`; when the client
/// goes away or stops taking chunks for `stream_stall_secs`, the connection is closed, which
/// ends the query on the server (`client_connection_check_interval`).
async fn stream_rows(
    ctx: &ApiContext,
    query: RowQuery,
    format: Format,
    cost: Cost,
) -> Result<Response> {
    let mut conn = ctx.stream_pool.acquire().await.map_err(|e| match e {
        sqlx::Error::PoolTimedOut => Error::Busy(format!(
            "all {} streaming connections are busy; retry shortly",
            ctx.config.stream_pool_size
        )),
        e => e.into(),
    })?;
    let timeout = match cost {
        Cost::Dump(_) => ctx.config.stream_timeout_secs,
        Cost::Bounded => ctx.config.statement_timeout_secs,
    };
    sqlx::query("select set_config('statement_timeout', $1, false)")
        .bind((timeout * 1000).to_string())
        .execute(&mut *conn)
        .await?;
    let stall = std::time::Duration::from_secs(ctx.config.stream_stall_secs);
    let (sender, mut chunks) = mpsc::channel::<std::result::Result<Bytes, Error>>(4);
    tokio::spawn(async move {
        let RowQuery { mut sql, columns } = query;
        let mut encoder = Encoder::new(format, columns);
        let finished = {
            let mut rows = sql.build().fetch(&mut *conn);
            loop {
                let Some(row) = rows.next().await else {
                    break true;
                };
                let chunk = match row.and_then(|r| encoder.row(&r)) {
                    Ok(()) if encoder.buf.len() < CHUNK => continue,
                    Ok(()) => Ok(encoder.take()),
                    Err(e) => Err(Error::from(e)),
                };
                let failed = chunk.is_err();
                // Err: the client went away or stopped reading.
                if tokio::time::timeout(stall, sender.send(chunk))
                    .await
                    .map_or(true, |s| s.is_err())
                    || failed
                {
                    break false;
                }
            }
        };
        if finished {
            encoder.finish();
            let _ = sender.send(Ok(encoder.take())).await;
        } else {
            // Closing the connection stops the query; returned to the pool it would first be
            // drained of every remaining row.
            let _ = conn.detach().close_hard().await;
        }
    });
    let first = match chunks.recv().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(Error::Internal(anyhow::anyhow!(
                "result stream ended early"
            )));
        }
    };
    let rest = stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| {
            let chunk = chunk.map_err(|e| {
                tracing::warn!(error = %e, "result stream cut short");
                std::io::Error::other(e.to_string())
            });
            (chunk, chunks)
        })
    });
    let body = Body::from_stream(stream::once(async { Ok(first) }).chain(rest));
    let content_type = match format {
        Format::Json => "application/json",
        Format::Jsonl => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Cost::Dump(Limit::Capped(cap)) = cost {
        response
            .headers_mut()
            .insert("x-archdb-row-cap", HeaderValue::from(cap));
    }
    Ok(response)
}

/// Writes rows as a JSON array, JSON lines or CSV.
struct Encoder {
    format: Format,
    columns: Vec<Column>,
    /// `"name":` for JSON, pre-escaped.
    keys: Vec<Vec<u8>>,
    buf: Vec<u8>,
    rows: u64,
}

impl Encoder {
    fn new(format: Format, columns: Vec<Column>) -> Self {
        let keys = columns
            .iter()
            .map(|c| {
                let mut k = serde_json::to_vec(&c.name).unwrap_or_default();
                k.push(b':');
                k
            })
            .collect();
        let mut buf = Vec::with_capacity(CHUNK * 2);
        match format {
            Format::Json => buf.push(b'['),
            Format::Jsonl => {}
            Format::Csv => {
                for (i, c) in columns.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    csv_field(&mut buf, &c.name);
                }
                buf.extend_from_slice(b"\r\n");
            }
        }
        Self {
            format,
            columns,
            keys,
            buf,
            rows: 0,
        }
    }

    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK * 2),
        ))
    }

    fn finish(&mut self) {
        if self.format == Format::Json {
            self.buf.push(b']');
        }
    }

    fn row(&mut self, row: &PgRow) -> sqlx::Result<()> {
        let json = self.format != Format::Csv;
        if json {
            if self.format == Format::Json && self.rows > 0 {
                self.buf.push(b',');
            }
            self.buf.push(b'{');
        }
        for (i, column) in self.columns.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            if json {
                self.buf.extend_from_slice(&self.keys[i]);
            }
            write_value(&mut self.buf, row, i, column.kind, json)?;
        }
        self.buf
            .extend_from_slice(if json { b"}" as &[u8] } else { b"\r\n" });
        if self.format == Format::Jsonl {
            self.buf.push(b'\n');
        }
        self.rows += 1;
        Ok(())
    }
}

/// Writes column `i` of `row` as a JSON value or a CSV field (null: `null` / empty).
fn write_value(
    buf: &mut Vec<u8>,
    row: &PgRow,
    i: usize,
    kind: Kind,
    json: bool,
) -> sqlx::Result<()> {
    let null: &[u8] = if json { b"null" } else { b"" };
    match kind {
        Kind::Text => match row.try_get::<Option<&str>, _>(i)? {
            Some(s) if json => serde_json::to_writer(&mut *buf, s).map_err(json_error)?,
            Some(s) => csv_field(buf, s),
            None => buf.extend_from_slice(null),
        },
        Kind::Int => match row.try_get::<Option<i64>, _>(i)? {
            Some(v) => buf.extend_from_slice(v.to_string().as_bytes()),
            None => buf.extend_from_slice(null),
        },
        Kind::Float => match row.try_get::<Option<f64>, _>(i)? {
            Some(v) if v.is_finite() => serde_json::to_writer(&mut *buf, &v).map_err(json_error)?,
            Some(v) if !json => buf.extend_from_slice(v.to_string().as_bytes()),
            _ => buf.extend_from_slice(null),
        },
        Kind::Bool => match row.try_get::<Option<bool>, _>(i)? {
            Some(v) => buf.extend_from_slice(if v { b"true" } else { b"false" }),
            None => buf.extend_from_slice(null),
        },
        Kind::Json => match row.try_get::<Option<&str>, _>(i)? {
            Some(s) if json => buf.extend_from_slice(s.as_bytes()),
            // In CSV a JSON string is written as its text, anything else as JSON.
            Some(s) => match serde_json::from_str::<String>(s) {
                Ok(text) => csv_field(buf, &text),
                Err(_) => csv_field(buf, s),
            },
            None => buf.extend_from_slice(null),
        },
    }
    Ok(())
}

fn json_error(e: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// An RFC 4180 field: quoted when it holds a comma, quote or line break.
fn csv_field(buf: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        buf.push(b'"');
        buf.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        buf.push(b'"');
    } else {
        buf.extend_from_slice(s.as_bytes());
    }
}

/// A repeatable parameter whose values are `names`, at least `min_items` of them.
fn names_schema<'a>(
    names: impl IntoIterator<Item = &'a str>,
    min_items: usize,
) -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let names: Vec<&str> = names.into_iter().collect();
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names)),
        )
        .min_items((min_items > 0).then_some(min_items))
        .build()
}

fn require_schema() -> utoipa::openapi::Array {
    names_schema(store::REQUIRE_FIELDS, 0)
}

fn nn_stat_schema() -> utoipa::openapi::Array {
    names_schema(store::nn_stat_names(), 0)
}

fn same_schema() -> utoipa::openapi::Array {
    names_schema(PAIR_COLUMNS, 1)
}

fn diff_schema() -> utoipa::openapi::Array {
    names_schema(PAIR_COLUMNS, 0)
}

fn band_schema() -> utoipa::openapi::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(BANDS.iter().map(|(name, ..)| *name)))
        .build()
}
