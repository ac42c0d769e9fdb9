//! `POST /v1/predictions` and `GET /v1/architectures/{id}/similar`: accuracy predictions from the
//! active predictors for uploaded ONNX models, stored architectures and NB201 cells, with the
//! uncertainty, the out-of-distribution score and the nearest measured architectures.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Error, Problem, Result};
use crate::db::architectures::StoredGraph;
use crate::db::predictors::{self as store, Target};
use crate::generate::{nb201_arch_strings, nb201_model};
use crate::graph::BuildOptions;
use crate::predict::CgGraphRef;
use crate::predict::registry::{Loaded, Neighbour};

/// Most architectures in one request.
pub const MAX_BATCH: usize = 10_000;
/// Most nearest neighbours per prediction.
const MAX_NEAREST: usize = 50;

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(predict))
        .routes(routes!(similar))
}

/// An NB201 cell: official index (0–15,624) or architecture string.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
enum Nb201Cell {
    Index(u32),
    Arch(String),
}

/// Which active predictors to ask (fields left out match anything).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TargetSelector {
    #[serde(default)]
    benchmark: Option<String>,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    metric: Option<String>,
}

impl TargetSelector {
    fn matches(&self, t: &Target) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.benchmark, &t.benchmark)
            && eq(&self.dataset, &t.dataset)
            && eq(&self.metric, &t.metric)
    }
}

/// Architectures to predict (any mix of the three lists, answered in this order).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PredictionRequest {
    /// Stored architectures.
    #[serde(default)]
    architecture_ids: Vec<i64>,
    /// NAS-Bench-201 cells (CIFAR-10 network).
    #[serde(default)]
    #[schema(value_type = Vec<Object>, example = json!([6111, "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"]))]
    nb201: Vec<Nb201Cell>,
    /// ONNX models, base64.
    #[serde(default)]
    onnx_base64: Vec<String>,
    /// Which active predictors to use (default: every active one).
    #[serde(default)]
    targets: Option<Vec<TargetSelector>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PredictionQuery {
    /// Nearest measured architectures per prediction (0–50, default 5).
    nearest: Option<usize>,
}

/// One prediction.
#[derive(Debug, Serialize, ToSchema)]
struct ArchitecturePrediction {
    /// Position of the architecture in the request.
    input: usize,
    /// The stored architecture (also for an upload whose graph is already stored).
    architecture_id: Option<i64>,
    /// Predicted value of the target (its unit, e.g. % for NB201 accuracy).
    accuracy: f64,
    /// Spread of the ensemble members' predictions.
    std: f64,
    /// Nearest-centroid distance relative to the training architectures (≤ 1 typical, ≫ 1 out
    /// of distribution).
    ood_score: f64,
    /// Normalised entropy of the fuzzy cluster memberships (0–1).
    membership_entropy: f64,
    /// Measured architectures nearest in the encoder's embedding space.
    nearest: Vec<Neighbour>,
    params: u64,
    macs: u64,
}

/// The predictions of one predictor.
#[derive(Debug, Serialize, ToSchema)]
struct PredictorResult {
    predictor_id: i64,
    target: Target,
    predictions: Vec<ArchitecturePrediction>,
}

#[derive(Debug, Serialize, ToSchema)]
struct PredictionResponse {
    /// One entry per active predictor asked.
    results: Vec<PredictorResult>,
}

/// An architecture of the request, resolved.
struct Item {
    architecture_id: Option<i64>,
    params: u64,
    macs: u64,
    /// The graph, when it was parsed from the request or generated.
    graph: Option<Arc<StoredGraph>>,
}

/// Predicts the accuracy of architectures. The body is one raw ONNX file
/// (`application/octet-stream`) or JSON `{architecture_ids | nb201 | onnx_base64, targets?}`
/// (up to 10,000 architectures). Stored architectures measured for a predictor's target are
/// answered from its index (computed when the predictor was registered).
#[utoipa::path(post, path = "/v1/predictions", tag = "predictions", params(PredictionQuery),
    request_body(content(
        (PredictionRequest = "application/json"),
        (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 200, body = PredictionResponse),
        (status = 400, description = "not ONNX, bad base64, malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown architecture id", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body or node count over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid graph, NB201 cell or batch size", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "no active predictor (for the targets asked)", body = Problem, content_type = "application/problem+json")))]
async fn predict(
    State(ctx): State<ApiContext>,
    query: Result<Query<PredictionQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<PredictionResponse>> {
    let Query(query) = query?;
    let nearest = query.nearest.unwrap_or(5);
    if nearest > MAX_NEAREST {
        return Err(Error::BadRequest(format!(
            "nearest must be at most {MAX_NEAREST}"
        )));
    }
    let (items, selectors) = if super::has_content_type(&request, "application/json") {
        let Json(body): Json<PredictionRequest> = Json::from_request(request, &ctx).await?;
        let total = body.architecture_ids.len() + body.nb201.len() + body.onnx_base64.len();
        if total == 0 {
            return Err(Error::Unprocessable(
                "give architecture_ids, nb201 or onnx_base64".into(),
            ));
        }
        if total > MAX_BATCH {
            return Err(Error::Unprocessable(format!(
                "{total} architectures; at most {MAX_BATCH} per request"
            )));
        }
        let mut items = stored_items(&ctx, &body.architecture_ids).await?;
        items.extend(nb201_items(&ctx, &body.nb201).await?);
        let uploads = body
            .onnx_base64
            .iter()
            .enumerate()
            .map(|(i, s)| {
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map(Bytes::from)
                    .map_err(|e| Error::BadRequest(format!("onnx_base64[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        items.extend(onnx_items(&ctx, uploads).await?);
        (items, body.targets)
    } else {
        let body = Bytes::from_request(request, &ctx).await?;
        (onnx_items(&ctx, vec![body]).await?, None)
    };
    let snapshot = ctx.predictors.snapshot();
    let chosen: Vec<Arc<Loaded>> = snapshot
        .iter()
        .filter(|l| {
            selectors
                .as_ref()
                .is_none_or(|s| s.iter().any(|sel| sel.matches(&l.target)))
        })
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(Error::Unavailable(if snapshot.is_empty() {
            "no predictor is active; train one (POST /v1/predictors) or activate one".into()
        } else {
            "no active predictor matches the targets asked".into()
        }));
    }
    let items = Arc::new(load_missing_graphs(&ctx, items, &chosen).await?);
    let mut results = Vec::with_capacity(chosen.len());
    for loaded in chosen {
        let items = items.clone();
        let predictions = tokio::task::spawn_blocking(move || {
            answer(&loaded, &items, nearest).map(|p| (loaded, p))
        })
        .await
        .map_err(|e| Error::Internal(e.into()))??;
        results.push(PredictorResult {
            predictor_id: predictions.0.id,
            target: predictions.0.target.clone(),
            predictions: predictions.1,
        });
    }
    Ok(Json(PredictionResponse { results }))
}

/// Predictions of one predictor for every item: from its index where the architecture is
/// there, else computed (all uncomputed graphs in one call).
fn answer(loaded: &Loaded, items: &[Item], nearest: usize) -> Result<Vec<ArchitecturePrediction>> {
    let cached: Vec<Option<&store::IndexRow>> = items
        .iter()
        .map(|item| item.architecture_id.and_then(|id| loaded.index.get(id)))
        .collect();
    let todo: Vec<usize> = (0..items.len()).filter(|&i| cached[i].is_none()).collect();
    let refs: Vec<CgGraphRef> = todo
        .iter()
        .map(|&i| {
            items[i]
                .graph
                .as_ref()
                .expect("graphs loaded for uncached items")
                .as_cg()
        })
        .collect();
    let computed = loaded
        .predictor
        .predict(&refs)
        .map_err(|e| Error::Unprocessable(format!("cannot predict: {e}")))?;
    let mut computed = todo.into_iter().zip(computed).collect::<HashMap<_, _>>();
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let fresh = computed.remove(&i);
            let (accuracy, std, ood_score, membership_entropy, embedding) =
                match (cached[i], &fresh) {
                    (Some(row), _) => (
                        row.accuracy,
                        row.std,
                        row.ood_score,
                        row.membership_entropy,
                        &row.embedding,
                    ),
                    (None, Some(p)) => (
                        p.accuracy,
                        p.std,
                        p.ood_score,
                        p.membership_entropy,
                        &p.embedding,
                    ),
                    (None, None) => unreachable!("uncached items were computed above"),
                };
            ArchitecturePrediction {
                input: i,
                architecture_id: item.architecture_id,
                accuracy,
                std,
                ood_score,
                membership_entropy,
                nearest: loaded
                    .index
                    .nearest(embedding, nearest, item.architecture_id),
                params: item.params,
                macs: item.macs,
            }
        })
        .collect())
}

/// Stored architectures by id (404 naming the first unknown one).
async fn stored_items(ctx: &ApiContext, ids: &[i64]) -> Result<Vec<Item>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, i64, i64)> =
        sqlx::query_as("select id, params, macs from architectures where id = any($1)")
            .bind(ids)
            .fetch_all(&ctx.pool)
            .await?;
    let known: HashMap<i64, (i64, i64)> = rows.into_iter().map(|(id, p, m)| (id, (p, m))).collect();
    ids.iter()
        .map(|id| {
            let (params, macs) = known
                .get(id)
                .ok_or_else(|| Error::NotFound(format!("no architecture with id {id}")))?;
            Ok(Item {
                architecture_id: Some(*id),
                params: *params as u64,
                macs: *macs as u64,
                graph: None,
            })
        })
        .collect()
}

/// NB201 cells: the stored architecture where the benchmark is imported, else the generated
/// network (CIFAR-10 head).
async fn nb201_items(ctx: &ApiContext, cells: &[Nb201Cell]) -> Result<Vec<Item>> {
    if cells.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        keys.push(match cell {
            Nb201Cell::Index(n) if *n < 15_625 => ("nb201", n.to_string()),
            Nb201Cell::Index(n) => {
                return Err(Error::Unprocessable(format!(
                    "nb201[{i}]: index {n} is not in 0..15625"
                )));
            }
            Nb201Cell::Arch(s) => ("nb201-arch", s.clone()),
        });
    }
    let namespaces: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let values: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "select a.namespace, a.value, a.architecture_id, r.params, r.macs
           from architecture_aliases a
           join unnest($1::text[], $2::text[]) as k(ns, v) on a.namespace = k.ns and a.value = k.v
           join architectures r on r.id = a.architecture_id",
    )
    .bind(&namespaces)
    .bind(&values)
    .fetch_all(&ctx.pool)
    .await?;
    let found: HashMap<(String, String), (i64, i64, i64)> = rows
        .into_iter()
        .map(|(n, v, id, params, macs)| ((n, v), (id, params, macs)))
        .collect();
    let mut out: Vec<Option<Item>> = (0..cells.len()).map(|_| None).collect();
    let mut generate = Vec::new();
    for (i, (ns, value)) in keys.into_iter().enumerate() {
        match found.get(&(ns.to_string(), value.clone())) {
            Some(&(id, params, macs)) => {
                out[i] = Some(Item {
                    architecture_id: Some(id),
                    params: params as u64,
                    macs: macs as u64,
                    graph: None,
                })
            }
            None => generate.push((i, ns, value)),
        }
    }
    if !generate.is_empty() {
        let max_nodes = ctx.config.max_nodes;
        let made = tokio::task::spawn_blocking(move || {
            generate
                .into_iter()
                .map(|(i, ns, value)| {
                    let arch = if ns == "nb201" {
                        let n: usize = value.parse().expect("index checked");
                        nb201_arch_strings().nth(n).expect("index < 15625")
                    } else {
                        value
                    };
                    let model = nb201_model(&arch, 10)
                        .map_err(|e| Error::Unprocessable(format!("nb201[{i}]: {e}")))?;
                    let ingested = crate::ingest::ingest_model(model, BuildOptions { max_nodes })?;
                    Ok((i, Item::from(&ingested)))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Error::Internal(e.into()))??;
        for (i, item) in made {
            out[i] = Some(item);
        }
    }
    Ok(out
        .into_iter()
        .map(|i| i.expect("every cell resolved"))
        .collect())
}

impl From<&crate::ingest::Ingested> for Item {
    /// A parsed model: not (yet) known to be stored.
    fn from(ingested: &crate::ingest::Ingested) -> Self {
        let summary = &ingested.graph.summary;
        Self {
            architecture_id: None,
            params: summary.params,
            macs: summary.macs,
            graph: Some(Arc::new(StoredGraph::from(&ingested.graph))),
        }
    }
}

/// Parses one ONNX model: its item and graph hash.
fn ingest_item(bytes: Bytes, max_nodes: usize) -> Result<(String, Item)> {
    let ingested = crate::ingest::ingest(bytes, BuildOptions { max_nodes })?;
    Ok((ingested.graph_hash.clone(), Item::from(&ingested)))
}

/// Uploaded ONNX models, parsed in parallel; those whose graph is stored get its id.
async fn onnx_items(ctx: &ApiContext, uploads: Vec<Bytes>) -> Result<Vec<Item>> {
    if uploads.is_empty() {
        return Ok(Vec::new());
    }
    let max_nodes = ctx.config.max_nodes;
    let parsed = tokio::task::spawn_blocking(move || {
        let threads = crate::predict::model::default_threads().min(uploads.len());
        let per = uploads.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = uploads
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|bytes| ingest_item(bytes.clone(), max_nodes))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                out.extend(h.join().expect("parsing thread panicked")?);
            }
            Ok::<_, Error>(out)
        })
    })
    .await
    .map_err(|e| Error::Internal(e.into()))??;
    let hashes: Vec<&str> = parsed.iter().map(|(h, _)| h.as_str()).collect();
    let known: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "select graph_hash, id from architectures where graph_hash = any($1)",
    )
    .bind(&hashes)
    .fetch_all(&ctx.pool)
    .await?
    .into_iter()
    .collect();
    Ok(parsed
        .into_iter()
        .map(|(hash, mut item)| {
            item.architecture_id = known.get(&hash).copied();
            item
        })
        .collect())
}

/// Loads the stored graphs of items that some chosen predictor cannot answer from its index.
async fn load_missing_graphs(
    ctx: &ApiContext,
    mut items: Vec<Item>,
    chosen: &[Arc<Loaded>],
) -> Result<Vec<Item>> {
    let missing: Vec<i64> = items
        .iter()
        .filter(|item| item.graph.is_none())
        .filter_map(|item| item.architecture_id)
        .filter(|id| chosen.iter().any(|l| l.index.get(*id).is_none()))
        .collect();
    if missing.is_empty() {
        return Ok(items);
    }
    let mut graphs = store::graphs(&ctx.pool, &missing).await?;
    for item in items.iter_mut().filter(|i| i.graph.is_none()) {
        let Some(id) = item.architecture_id else {
            continue;
        };
        if let Some(g) = graphs.remove(&id) {
            item.graph = Some(Arc::new(g));
        } else if chosen.iter().any(|l| l.index.get(id).is_none()) {
            return Err(Error::Unprocessable(format!(
                "architecture {id} has no stored graph"
            )));
        }
    }
    Ok(items)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SimilarQuery {
    /// How many (1–100, default 10).
    k: Option<usize>,
    /// Which active predictor's embedding space (default: the first active one).
    predictor_id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SimilarResponse {
    architecture_id: i64,
    predictor_id: i64,
    target: Target,
    /// Measured architectures of the predictor's target, nearest first.
    similar: Vec<Neighbour>,
}

/// The measured architectures most similar to one, by distance between encoder embeddings.
#[utoipa::path(get, path = "/v1/architectures/{id}/similar", tag = "predictions",
    params(("id" = i64, Path), SimilarQuery),
    responses((status = 200, body = SimilarResponse),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "no active predictor", body = Problem, content_type = "application/problem+json")))]
async fn similar(
    State(ctx): State<ApiContext>,
    id: Result<Path<i64>, PathRejection>,
    query: Result<Query<SimilarQuery>, QueryRejection>,
) -> Result<Json<SimilarResponse>> {
    let Path(id) = id?;
    let Query(query) = query?;
    let k = query.k.unwrap_or(10);
    if !(1..=100).contains(&k) {
        return Err(Error::BadRequest("k must be in 1..=100".into()));
    }
    let snapshot = ctx.predictors.snapshot();
    let loaded = match query.predictor_id {
        Some(p) => snapshot
            .iter()
            .find(|l| l.id == p)
            .ok_or_else(|| Error::NotFound(format!("predictor {p} is not active")))?,
        None => snapshot
            .first()
            .ok_or_else(|| Error::Unavailable("no predictor is active".into()))?,
    }
    .clone();
    let embedding = match loaded.index.get(id) {
        Some(row) => row.embedding.clone(),
        None => {
            let graph = crate::db::architectures::graph(&ctx.pool, id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no architecture with id {id}")))?;
            let loaded = loaded.clone();
            tokio::task::spawn_blocking(move || {
                loaded
                    .predictor
                    .predict(&[graph.as_cg()])
                    .map(|mut p| p.remove(0).embedding)
            })
            .await
            .map_err(|e| Error::Internal(e.into()))?
            .map_err(|e| Error::Unprocessable(format!("cannot embed architecture {id}: {e}")))?
        }
    };
    Ok(Json(SimilarResponse {
        architecture_id: id,
        predictor_id: loaded.id,
        target: loaded.target.clone(),
        similar: loaded.index.nearest(&embedding, k, Some(id)),
    }))
}
