//! `POST /v1/predictions` and `GET /v1/architectures/{id}/similar`: accuracy predictions from the
//! active predictors for uploaded ONNX models, stored architectures and NB201 cells, with the
//! uncertainty, the out-of-distribution score and the nearest measured architectures.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Error, Problem, Result};
use super::extract::{JsonBody, Path, Query};
use super::registry::{Loaded, Neighbour, ServedRecipe};
use crate::db::architectures::{self as arch_store, StoredGraph};
use crate::db::predictors::{self as store, Target};
use crate::generate::{nb201_arch_strings, nb201_model};
use crate::graph::BuildOptions;
use crate::predict::recipe::{CompleteRecipe, Domain, GraphDescriptor, Recipe, RecipePredictor};
use crate::predict::{CgGraphRef, PredictorKind};

/// Most architectures in one request.
pub const MAX_BATCH: usize = 10_000;
/// Most ONNX uploads in one JSON request (each is parsed into a graph in memory; the body
/// limit bounds their bytes).
pub const MAX_UPLOADS: usize = 1_000;
/// Most nearest neighbours per prediction.
const MAX_NEAREST: usize = 50;

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(predict))
        .routes(routes!(similar))
}

/// An NB201 cell: official index (0–15,624) or architecture string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Nb201Cell {
    Index(u32),
    Arch(String),
}

/// [`Nb201Cell`]s: indices 0–15,624 or architecture strings of NB201's five ops.
fn nb201_cells() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let op = "(none|skip_connect|nor_conv_1x1|nor_conv_3x3|avg_pool_3x3)";
    let arch = format!("^\\|{op}~0\\|\\+\\|{op}~0\\|{op}~1\\|\\+\\|{op}~0\\|{op}~1\\|{op}~2\\|$");
    let cell = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(15_624)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(arch)),
        );
    ArrayBuilder::new()
        .items(cell)
        .description(Some("NAS-Bench-201 cells (CIFAR-10 network)."))
        .build()
}

/// What to predict: a target (benchmark or source, dataset, metric; fields left out match
/// anything) and, for recipe-conditioned targets, the training condition.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TargetRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    benchmark: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<String>,
    /// Training epochs the accuracy is asked after. Recipe predictor: any (default: the typical
    /// recipe's). Benchmark predictors: the active one trained for this epoch (NB201: 12 or
    /// 200), else the nearest, with a warning (default: the longest-trained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    epoch: Option<f64>,
    /// Training hyperparameters: `lr`, `momentum`, `batch`, `dropout`, `transform` (a LEMUR
    /// transform name such as `norm_32_flip`). Missing ones take the typical recipe's value;
    /// unknown names are ignored and listed in `warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"lr": 0.01, "momentum": 0.9, "batch": 64, "dropout": 0.2, "transform": "norm_32_flip"}))]
    hyperparameters: Option<serde_json::Map<String, serde_json::Value>>,
}

impl TargetRequest {
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
    #[schema(schema_with = nb201_cells, example = json!([6111, "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"]))]
    nb201: Vec<Nb201Cell>,
    /// ONNX models, base64 (at most 1,000).
    #[serde(default)]
    #[schema(max_items = 1000)]
    onnx_base64: Vec<String>,
    /// What to predict, answered one `results` entry per target in this order (at most 1,000).
    /// Default: every active benchmark predictor, then LEMUR CIFAR-10 under its typical recipe.
    #[serde(default)]
    #[schema(max_items = 1000, min_items = 1)]
    targets: Option<Vec<TargetRequest>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PredictionQuery {
    /// Nearest measured architectures per prediction (default 5).
    #[param(minimum = 0, maximum = 50)]
    nearest: Option<usize>,
}

/// A measured architecture near the predicted one.
#[derive(Debug, Serialize, ToSchema)]
struct NearestMeasured {
    /// The stored architecture, when it is in this database.
    architecture_id: Option<i64>,
    /// Its name in its benchmark (recipe predictor: the LEMUR model).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The dataset it was measured on (recipe predictor).
    #[serde(skip_serializing_if = "Option::is_none")]
    dataset: Option<String>,
    /// Its measured value of the target (recipe predictor: its best accuracy over all trials).
    measured_accuracy: f64,
    /// Distance in the predictor's feature space.
    distance: f64,
}

/// One prediction.
#[derive(Debug, Serialize, ToSchema)]
struct ArchitecturePrediction {
    /// Position of the architecture in the request.
    input: usize,
    /// The stored architecture (also for an upload whose graph is already stored).
    architecture_id: Option<i64>,
    /// Predicted value of the target, in `unit`, always inside the metric's range.
    accuracy: f64,
    /// 90 % interval `[lo, hi]` in `unit` (its coverage was checked on held-out architectures;
    /// docs/predictor.md).
    interval: [f64; 2],
    /// Uncertainty in `unit`: the interval's width ÷ 3.29 (recipe predictor), or the ensemble
    /// members' spread, widened outside the domain (benchmark predictors).
    std: f64,
    /// `in`, `edge` or `out` of the predictor's domain; `out` answers have wider intervals.
    domain: Domain,
    /// Distance from the measured architectures (≤ 1 typical, ≫ 1 out of distribution).
    ood_score: f64,
    /// Normalised entropy of the fuzzy cluster memberships (0–1; benchmark predictors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    membership_entropy: Option<f64>,
    /// Measured architectures nearest to this one.
    nearest: Vec<NearestMeasured>,
    params: u64,
    macs: u64,
}

/// The unit of a target's values.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Unit {
    /// 0–1 (LEMUR).
    Fraction,
    /// 0–100 (NAS-Bench-201, NAS-Bench-Macro).
    Percent,
}

/// The predictions for one target.
#[derive(Debug, Serialize, ToSchema)]
struct PredictorResult {
    /// The registered predictor (null for the bundled recipe predictor compiled into the
    /// binary, which serves until a registered recipe predictor is activated).
    predictor_id: Option<i64>,
    /// `recipe` (conditioned on dataset and training recipe) or `graph` (a benchmark predictor).
    predictor_kind: PredictorKind,
    /// The target answered.
    target: Target,
    /// The target as requested (absent when the request named none).
    #[serde(skip_serializing_if = "Option::is_none")]
    requested: Option<TargetRequest>,
    /// The training recipe the predictions are for, with every field filled (recipe predictor).
    #[serde(skip_serializing_if = "Option::is_none")]
    recipe: Option<CompleteRecipe>,
    /// Recipe fields that were not given and took the typical value of the training data.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    defaulted: Vec<String>,
    unit: Unit,
    /// Ignored inputs and extrapolations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    predictions: Vec<ArchitecturePrediction>,
}

#[derive(Debug, Serialize, ToSchema)]
struct PredictionResponse {
    /// One entry per target, in request order.
    results: Vec<PredictorResult>,
}

/// An architecture of the request, resolved.
struct Item {
    architecture_id: Option<i64>,
    params: u64,
    macs: u64,
    /// The graph, when it was parsed from the request or generated.
    graph: Option<Arc<StoredGraph>>,
    /// Its recipe-predictor descriptor, when the registry's cache holds it.
    descriptor: Option<Arc<GraphDescriptor>>,
}

/// A target of the request, resolved to the predictor that answers it.
enum Resolved {
    Graph {
        loaded: Arc<Loaded>,
        requested: Option<TargetRequest>,
        warnings: Vec<String>,
    },
    Recipe {
        served: ServedRecipe,
        dataset: usize,
        recipe: CompleteRecipe,
        outside: bool,
        requested: Option<TargetRequest>,
        defaulted: Vec<String>,
        warnings: Vec<String>,
    },
}

/// Most targets in one request.
const MAX_TARGETS: usize = 1_000;

/// The targets some predictor covers, for error messages.
fn covered_targets(graph: &[Arc<Loaded>], recipe: Option<&RecipePredictor>) -> String {
    let mut covered: Vec<String> = recipe
        .map(|r| {
            r.datasets
                .iter()
                .map(|d| format!("lemur/{}/acc (with epoch and hyperparameters)", d.name))
                .collect()
        })
        .unwrap_or_default();
    covered.extend(graph.iter().map(|l| {
        let t = &l.target;
        format!("{}/{}/{}", t.benchmark, t.dataset, t.metric)
    }));
    covered.join(", ")
}

/// Resolves each requested target (or the default list) to a predictor and a condition.
fn resolve(
    snapshot: &[Arc<Loaded>],
    served: Option<ServedRecipe>,
    targets: Option<Vec<TargetRequest>>,
) -> Result<Vec<Resolved>> {
    let recipe = served.as_ref().map(|s| s.predictor.as_ref());
    let Some(targets) = targets else {
        let mut out: Vec<Resolved> = snapshot
            .iter()
            .map(|l| Resolved::Graph {
                loaded: l.clone(),
                requested: None,
                warnings: Vec::new(),
            })
            .collect();
        if let Some(served) = served {
            let (recipe, defaulted, warnings) = served.predictor.complete(0, &Recipe::default());
            out.push(Resolved::Recipe {
                served,
                dataset: 0,
                outside: false,
                recipe,
                requested: None,
                defaulted,
                warnings,
            });
        }
        if out.is_empty() {
            return Err(Error::Unavailable(
                "no predictor is active; train one (POST /v1/predictors) or activate one".into(),
            ));
        }
        return Ok(out);
    };
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(Error::Unprocessable(format!(
            "{} targets; give 1 to {MAX_TARGETS}",
            targets.len()
        )));
    }
    targets
        .into_iter()
        .enumerate()
        .map(|(i, target)| {
            let lemur_like = target.benchmark.as_deref().is_none_or(|b| b == "lemur")
                && target.metric.as_deref().is_none_or(|m| m == "acc");
            let recipe_dataset = recipe
                .zip(target.dataset.as_deref())
                .and_then(|(r, d)| lemur_like.then(|| r.dataset(d)).flatten().map(|d| (r, d)));
            if let Some((predictor, dataset)) = recipe_dataset {
                if let Some(e) = target.epoch
                    && !(e > 0.0 && e.is_finite())
                {
                    return Err(Error::Unprocessable(format!(
                        "targets[{i}].epoch must be a positive number"
                    )));
                }
                let empty = serde_json::Map::new();
                let (asked, mut warnings) = Recipe::from_hyperparameters(
                    target.epoch,
                    target.hyperparameters.as_ref().unwrap_or(&empty),
                );
                let (recipe, defaulted, range_warnings) = predictor.complete(dataset, &asked);
                let outside = !range_warnings.is_empty();
                warnings.extend(range_warnings);
                return Ok(Resolved::Recipe {
                    served: served
                        .clone()
                        .expect("a recipe dataset has a recipe predictor"),
                    dataset,
                    outside,
                    recipe,
                    requested: Some(target),
                    defaulted,
                    warnings,
                });
            }
            let Some(loaded) = graph_predictor_for(snapshot, &target) else {
                let asked = serde_json::to_string(&target).unwrap_or_default();
                return Err(Error::Unprocessable(format!(
                    "targets[{i}] {asked}: no predictor covers it; covered targets: {}",
                    covered_targets(snapshot, recipe)
                )));
            };
            let mut warnings = Vec::new();
            if let (Some(asked), Some(served)) = (target.epoch, loaded.target.epoch)
                && asked != f64::from(served)
            {
                warnings.push(format!(
                    "epoch {asked} is not served for this benchmark and dataset: answered for \
                     epoch {served}, the nearest with an active predictor"
                ));
            }
            if target
                .hyperparameters
                .as_ref()
                .is_some_and(|h| !h.is_empty())
            {
                warnings.push(
                    "hyperparameters ignored: this benchmark predictor has one fixed recipe".into(),
                );
            }
            Ok(Resolved::Graph {
                loaded: loaded.clone(),
                requested: Some(target),
                warnings,
            })
        })
        .collect()
}

/// The active benchmark predictor for a target: among those of its benchmark, dataset and
/// metric, the one trained for the epoch asked (NB201 has 12- and 200-epoch figures), else the
/// nearest epoch; without an epoch, the longest-trained.
fn graph_predictor_for<'a>(
    snapshot: &'a [Arc<Loaded>],
    target: &TargetRequest,
) -> Option<&'a Arc<Loaded>> {
    let epoch = |l: &Loaded| l.target.epoch.map(f64::from);
    let candidates = snapshot.iter().filter(|l| target.matches(&l.target));
    match target.epoch {
        Some(asked) => candidates.min_by(|a, b| {
            let gap = |l: &Loaded| epoch(l).map_or(f64::INFINITY, |e| (e - asked).abs());
            gap(a).total_cmp(&gap(b))
        }),
        None => candidates.max_by(|a, b| {
            let e = |l: &Loaded| epoch(l).unwrap_or(f64::NEG_INFINITY);
            // The oldest of equals, as before: max_by keeps the last maximum.
            e(a).total_cmp(&e(b)).then(b.id.cmp(&a.id))
        }),
    }
}

/// Predicts the accuracy of architectures. The body is one raw ONNX file
/// (`application/octet-stream`) or JSON `{architecture_ids | nb201 | onnx_base64, targets?}`
/// (up to 10,000 architectures and 1,000 targets). Each target is answered by the bundled
/// recipe predictor (LEMUR datasets, conditioned on `epoch` and `hyperparameters`) or by the
/// active benchmark predictor of its benchmark and dataset; every answer is inside the metric's
/// range with a 90 % interval and a domain verdict.
#[utoipa::path(post, path = "/v1/predictions", tag = "predictions", params(PredictionQuery),
    request_body(content(
        (PredictionRequest = "application/json"),
        (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 200, body = PredictionResponse),
        (status = 400, description = "not ONNX, bad base64, malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown architecture id", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body or node count over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid graph, NB201 cell, batch size, or a target no predictor covers (the detail lists the covered ones)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "no predictor at all", body = Problem, content_type = "application/problem+json")))]
async fn predict(
    State(ctx): State<ApiContext>,
    Query(query): Query<PredictionQuery>,
    request: Request,
) -> Result<Json<PredictionResponse>> {
    let nearest = query.nearest.unwrap_or(5);
    if nearest > MAX_NEAREST {
        return Err(Error::BadRequest(format!(
            "nearest must be at most {MAX_NEAREST}"
        )));
    }
    let snapshot = ctx.predictors.snapshot();
    let (items, targets) = if super::has_content_type(&request, "application/json") {
        let JsonBody(body): JsonBody<PredictionRequest> =
            JsonBody::from_request(request, &ctx).await?;
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
        if body.onnx_base64.len() > MAX_UPLOADS {
            return Err(Error::Unprocessable(format!(
                "{} ONNX uploads; at most {MAX_UPLOADS} per request (store them with \
                 POST /v1/architectures and predict by architecture_ids)",
                body.onnx_base64.len()
            )));
        }
        // Targets are checked before any architecture is parsed.
        let targets = resolve(&snapshot, ctx.predictors.recipe(), body.targets)?;
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
        (items, targets)
    } else {
        let targets = resolve(&snapshot, ctx.predictors.recipe(), None)?;
        let body = Bytes::from_request(request, &ctx).await?;
        (onnx_items(&ctx, vec![body]).await?, targets)
    };
    let describe = targets.iter().any(|t| matches!(t, Resolved::Recipe { .. }));
    let mut items = items;
    if describe {
        let cache = ctx.predictors.descriptors();
        for item in &mut items {
            item.descriptor = item.architecture_id.and_then(|id| cache.get(id));
        }
    }
    let items = Arc::new(load_missing_graphs(&ctx, items, &targets).await?);
    let registry = ctx.predictors.clone();
    let inference = ctx.metrics.predictor_inference.start_timer();
    let mut results = ctx
        .cpu
        .run(move || {
            // Described once, whatever the number of recipe targets; stored ones are kept.
            let descriptors: Vec<GraphDescriptor> = if describe {
                items
                    .iter()
                    .map(|item| match &item.descriptor {
                        Some(d) => GraphDescriptor::clone(d),
                        None => {
                            let graph = item
                                .graph
                                .as_ref()
                                .expect("graphs loaded for undescribed items");
                            let d = GraphDescriptor::new(graph.as_cg());
                            if let Some(id) = item.architecture_id {
                                registry.descriptors().insert(id, Arc::new(d.clone()));
                            }
                            d
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            targets
                .into_iter()
                .map(|target| answer(target, &items, &descriptors, nearest))
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Error::Internal(e.into()))??;
    inference.observe_duration();
    link_lemur_neighbours(&ctx, &mut results).await?;
    Ok(Json(PredictionResponse { results }))
}

/// Fills in the stored architecture of the LEMUR graphs that recipe answers name as neighbours
/// (alias `<nn>` for CIFAR-10, `<nn>_<dataset>` otherwise, as `import lemur-onnx` stores them):
/// one query for the names named.
async fn link_lemur_neighbours(ctx: &ApiContext, results: &mut [PredictorResult]) -> Result<()> {
    let neighbours = || {
        results
            .iter()
            .flat_map(|r| &r.predictions)
            .flat_map(|p| &p.nearest)
    };
    let aliases: Vec<String> = neighbours()
        .filter_map(|n| {
            Some(crate::lemur::graph_stem(
                n.name.as_deref()?,
                n.dataset.as_deref()?,
            ))
        })
        .collect();
    if aliases.is_empty() {
        return Ok(());
    }
    let ids: HashMap<String, i64> = arch_store::ids_by_alias(&ctx.pool, "lemur", &aliases)
        .await?
        .into_iter()
        .collect();
    for n in results
        .iter_mut()
        .flat_map(|r| &mut r.predictions)
        .flat_map(|p| &mut p.nearest)
    {
        if let (Some(name), Some(dataset)) = (&n.name, &n.dataset) {
            n.architecture_id = ids.get(&crate::lemur::graph_stem(name, dataset)).copied();
        }
    }
    Ok(())
}

/// How much wider than an in-domain one a benchmark predictor's interval is at the edge of its
/// domain and outside it (its OOD score is not calibrated on held-out families).
const GRAPH_DOMAIN_WIDENING: [f64; 3] = [1.0, 1.5, 3.0];

/// The predictions for one resolved target.
/// `descriptors` describes every item (when some target is a recipe target).
fn answer(
    target: Resolved,
    items: &[Item],
    descriptors: &[GraphDescriptor],
    nearest: usize,
) -> Result<PredictorResult> {
    match target {
        Resolved::Graph {
            loaded,
            requested,
            warnings,
        } => Ok(PredictorResult {
            predictor_id: Some(loaded.id),
            predictor_kind: PredictorKind::Graph,
            target: loaded.target.clone(),
            requested,
            recipe: None,
            defaulted: Vec::new(),
            unit: if loaded.index.upper_bound <= 1.0 {
                Unit::Fraction
            } else {
                Unit::Percent
            },
            warnings,
            predictions: answer_graph(&loaded, items, nearest)?,
        }),
        Resolved::Recipe {
            served,
            dataset,
            recipe,
            outside,
            requested,
            defaulted,
            warnings,
        } => {
            let predictor = &served.predictor;
            let answers =
                predictor.predict(descriptors, &[(dataset, recipe.clone(), outside)], nearest);
            let mut warnings = warnings;
            let out = answers.iter().filter(|p| !p.warnings.is_empty()).count();
            if let Some(first) = answers.iter().find_map(|p| p.warnings.first()) {
                warnings.push(format!("{out} of {} architectures: {first}", answers.len()));
            }
            let predictions = items
                .iter()
                .zip(answers)
                .enumerate()
                .map(|(i, (item, p))| ArchitecturePrediction {
                    input: i,
                    architecture_id: item.architecture_id,
                    accuracy: p.accuracy,
                    interval: p.interval,
                    std: p.std,
                    domain: p.domain,
                    ood_score: p.ood_score,
                    membership_entropy: None,
                    nearest: p
                        .nearest
                        .into_iter()
                        .map(|n| NearestMeasured {
                            // Filled in by `link_lemur_neighbours`.
                            architecture_id: None,
                            name: Some(n.name),
                            dataset: Some(n.dataset),
                            measured_accuracy: n.best_accuracy,
                            distance: n.distance,
                        })
                        .collect(),
                    params: item.params,
                    macs: item.macs,
                })
                .collect();
            Ok(PredictorResult {
                predictor_id: served.id,
                predictor_kind: PredictorKind::Recipe,
                target: Target {
                    benchmark: "lemur".into(),
                    dataset: predictor.datasets[dataset].name.clone(),
                    metric: "acc".into(),
                    epoch: Some(recipe.epoch.round() as i32),
                    split: None,
                    aggregate: None,
                },
                requested,
                recipe: Some(recipe),
                defaulted,
                unit: Unit::Fraction,
                warnings,
                predictions,
            })
        }
    }
}

/// Predictions of one benchmark predictor for every item: from its index where the
/// architecture is there, else computed (all uncomputed graphs in one call). Values are clipped
/// to the target's range, and the interval comes from the index's residuals, widened with the
/// OOD score.
fn answer_graph(
    loaded: &Loaded,
    items: &[Item],
    nearest: usize,
) -> Result<Vec<ArchitecturePrediction>> {
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
    let upper = loaded.index.upper_bound;
    let residuals = loaded.index.residual_quantiles;
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
            let domain = if !ood_score.is_finite() || ood_score > 2.0 {
                Domain::Out
            } else if ood_score > 1.0 {
                Domain::Edge
            } else {
                Domain::In
            };
            let widen = GRAPH_DOMAIN_WIDENING[domain.index()];
            let accuracy = if accuracy.is_finite() {
                accuracy.clamp(0.0, upper)
            } else {
                upper / 2.0
            };
            // Too few measured architectures for residuals: ±1.645 ensemble spreads.
            let [lo_residual, hi_residual] = residuals.unwrap_or([-1.645 * std, 1.645 * std]);
            let interval = [
                (accuracy + widen * lo_residual).clamp(0.0, upper),
                (accuracy + widen * hi_residual).clamp(0.0, upper),
            ];
            ArchitecturePrediction {
                input: i,
                architecture_id: item.architecture_id,
                accuracy,
                interval,
                std: std * widen,
                domain,
                ood_score,
                membership_entropy: Some(membership_entropy),
                nearest: loaded
                    .index
                    .nearest(embedding, nearest, item.architecture_id)
                    .into_iter()
                    .map(|n| NearestMeasured {
                        architecture_id: Some(n.architecture_id),
                        name: None,
                        dataset: None,
                        measured_accuracy: n.measured_accuracy,
                        distance: n.distance,
                    })
                    .collect(),
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
    let rows = arch_store::sizes(&ctx.pool, ids).await?;
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
                descriptor: None,
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
    let rows = arch_store::sizes_by_aliases(&ctx.pool, &namespaces, &values).await?;
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
                    descriptor: None,
                })
            }
            None => generate.push((i, ns, value)),
        }
    }
    if !generate.is_empty() {
        let max_nodes = ctx.config.max_nodes;
        let made = ctx
            .cpu
            .run(move || {
                use rayon::prelude::*;
                let stop = crate::cpu::Stop::current();
                generate
                    .into_par_iter()
                    .map(|(i, ns, value)| {
                        if stop.raised() {
                            return Err(Error::Unavailable("the request is gone".into()));
                        }
                        let arch = if ns == "nb201" {
                            let n: usize = value.parse().expect("index checked");
                            nb201_arch_strings().nth(n).expect("index < 15625")
                        } else {
                            value
                        };
                        let model = nb201_model(&arch, 10)
                            .map_err(|e| Error::Unprocessable(format!("nb201[{i}]: {e}")))?;
                        let analysed =
                            crate::ingest::analyse_model(model, BuildOptions { max_nodes })?;
                        Ok((i, Item::from(&analysed)))
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

impl From<&crate::ingest::Analysed> for Item {
    /// A parsed model: not (yet) known to be stored.
    fn from(analysed: &crate::ingest::Analysed) -> Self {
        let summary = &analysed.graph.summary;
        Self {
            architecture_id: None,
            params: summary.params,
            macs: summary.macs,
            graph: Some(Arc::new(StoredGraph::from(&analysed.graph))),
            descriptor: None,
        }
    }
}

/// Parses one ONNX model: its item and graph hash.
fn ingest_item(bytes: Bytes, max_nodes: usize) -> Result<(String, Item)> {
    let analysed = crate::ingest::analyse(bytes, BuildOptions { max_nodes })?;
    Ok((analysed.graph_hash.clone(), Item::from(&analysed)))
}

/// Uploaded ONNX models, parsed in parallel; those whose graph is stored get its id.
async fn onnx_items(ctx: &ApiContext, uploads: Vec<Bytes>) -> Result<Vec<Item>> {
    if uploads.is_empty() {
        return Ok(Vec::new());
    }
    let max_nodes = ctx.config.max_nodes;
    let parsed = ctx
        .cpu
        .run(move || {
            use rayon::prelude::*;
            uploads
                .par_iter()
                .map(|bytes| ingest_item(bytes.clone(), max_nodes))
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Error::Internal(e.into()))??;
    let hashes: Vec<&str> = parsed.iter().map(|(h, _)| h.as_str()).collect();
    let known: HashMap<String, i64> = arch_store::ids_by_hash(&ctx.pool, &hashes)
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

/// Loads the stored graphs of items that some target needs: a recipe target when the item's
/// descriptor is not cached, a benchmark predictor when the architecture is not in its index.
async fn load_missing_graphs(
    ctx: &ApiContext,
    mut items: Vec<Item>,
    targets: &[Resolved],
) -> Result<Vec<Item>> {
    let needs_graph = |item: &Item| {
        item.graph.is_none()
            && item.architecture_id.is_some_and(|id| {
                targets.iter().any(|t| match t {
                    Resolved::Graph { loaded, .. } => loaded.index.get(id).is_none(),
                    Resolved::Recipe { .. } => item.descriptor.is_none(),
                })
            })
    };
    let missing: Vec<i64> = items
        .iter()
        .filter(|item| needs_graph(item))
        .filter_map(|item| item.architecture_id)
        .collect();
    if missing.is_empty() {
        return Ok(items);
    }
    // One architecture may stand several times in a request (by id, NB201 cell, upload).
    let graphs: HashMap<i64, Arc<StoredGraph>> = store::graphs(&ctx.pool, &missing)
        .await?
        .into_iter()
        .map(|(id, g)| (id, Arc::new(g)))
        .collect();
    for item in items.iter_mut().filter(|item| needs_graph(item)) {
        let id = item
            .architecture_id
            .expect("only stored items miss their graph");
        match graphs.get(&id) {
            Some(g) => item.graph = Some(g.clone()),
            None => {
                return Err(Error::Unprocessable(format!(
                    "architecture {id} has no stored graph"
                )));
            }
        }
    }
    Ok(items)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SimilarQuery {
    /// How many (default 10).
    #[param(minimum = 1, maximum = 100)]
    k: Option<usize>,
    /// Which active predictor's embedding space (default: the first active one).
    #[param(minimum = 1)]
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
    params(("id" = i64, Path, minimum = 1), SimilarQuery),
    responses((status = 200, body = SimilarResponse),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "no active predictor", body = Problem, content_type = "application/problem+json")))]
async fn similar(
    State(ctx): State<ApiContext>,
    Path(id): Path<i64>,
    Query(query): Query<SimilarQuery>,
) -> Result<Json<SimilarResponse>> {
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
            let graph = arch_store::graph(&ctx.pool, id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no architecture with id {id}")))?;
            let loaded = loaded.clone();
            ctx.cpu
                .run(move || {
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
