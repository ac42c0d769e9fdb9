//! The tools. Each takes its endpoint's names (query parameters or JSON body fields; path
//! parameters as `id` and `cell`), answers the endpoint's JSON as structured content, and adds a
//! short text rendering for clients that show only text.

use std::sync::{Arc, LazyLock};

use axum::http::{Method, StatusCode};
use base64::Engine;
use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use super::rest::{Failure, Payload, Rest, segment, uri};
use super::schema;

/// Every tool archdb serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    SearchArchitectures,
    GetArchitecture,
    AddArchitecture,
    PredictAccuracy,
    RankCandidates,
    CompareArchitectures,
    QueryResults,
    Nb201Lookup,
    SimilarArchitectures,
    ParetoFront,
    ComputeCalibration,
    ListBenchmarks,
}

/// Page size of `search_architectures` when the call gives none (REST: 50).
const SEARCH_LIMIT: i64 = 10;
/// Rows of `query_results` when the call gives no `max_rows` (REST: all rows).
const RESULT_ROWS: i64 = 20;
/// Most rows `query_results` returns; bulk reads belong to `GET /v1/results?format=csv`.
const MAX_RESULT_ROWS: i64 = 1000;
/// How to get the rows `query_results` left out.
const MORE_ROWS: &str =
    "raise max_rows, up to 1000, or narrow the filters, e.g. nn, epoch, unique_nn=true";
/// Rows `query_results` counts to say how many it left out; above, it says "over".
const COUNT_CAP: u64 = 10_000;
/// Most architectures per `predict_accuracy` call (each answer carries its neighbours).
const MAX_PREDICT: usize = 100;
/// Lines of a list in a text rendering.
const TEXT_LINES: usize = 25;

impl ToolKind {
    pub const ALL: [ToolKind; 12] = [
        ToolKind::ListBenchmarks,
        ToolKind::SearchArchitectures,
        ToolKind::GetArchitecture,
        ToolKind::CompareArchitectures,
        ToolKind::AddArchitecture,
        ToolKind::PredictAccuracy,
        ToolKind::RankCandidates,
        ToolKind::SimilarArchitectures,
        ToolKind::QueryResults,
        ToolKind::Nb201Lookup,
        ToolKind::ParetoFront,
        ToolKind::ComputeCalibration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ToolKind::SearchArchitectures => "search_architectures",
            ToolKind::GetArchitecture => "get_architecture",
            ToolKind::AddArchitecture => "add_architecture",
            ToolKind::PredictAccuracy => "predict_accuracy",
            ToolKind::RankCandidates => "rank_candidates",
            ToolKind::CompareArchitectures => "compare_architectures",
            ToolKind::QueryResults => "query_results",
            ToolKind::Nb201Lookup => "nb201_lookup",
            ToolKind::SimilarArchitectures => "similar_architectures",
            ToolKind::ParetoFront => "pareto_front",
            ToolKind::ComputeCalibration => "compute_calibration",
            ToolKind::ListBenchmarks => "list_benchmarks",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    fn description(self) -> &'static str {
        match self {
            ToolKind::ListBenchmarks => {
                "What benchmark data this archdb holds: per benchmark (nb201 = NAS-Bench-201, nb-macro, lemur, naslib-zc, nas-bench-graph) the number of models and result rows and its datasets, metrics and tasks. Same JSON as GET /v1/benchmarks, under `result`. Call this first to learn valid `benchmark`/`dataset`/`metric` values for query_results and pareto_front."
            }
            ToolKind::SearchArchitectures => {
                "Find stored architectures (ONNX models ingested as computation graphs) by family, required ops (all must occur, e.g. op=[\"DepthwiseConv\"]) and params/MACs ranges; sort by id, params, macs, depth or num_nodes (prefix `-` for descending). Params are counts of weights, MACs multiply-accumulates per inference. Returns a page (default 10 here, REST default 50; `limit` up to 1000); when `next_cursor` is set, more match: call again with `cursor` = next_cursor. Same JSON as GET /v1/architectures. Next: get_architecture, compare_architectures or predict_accuracy with the ids."
            }
            ToolKind::GetArchitecture => {
                "One stored architecture by `id`: params, MACs, nodes, edges, depth, input shape, op counts and aliases (same JSON as GET /v1/architectures/{id}). The text answer adds the graph as compact text (GET /v1/architectures/{id}/text, ONNX-Net chain_slim by default; `variant` picks another encoding, `cg` is the computation graph with MACs per node) when the server has it. Next: similar_architectures, predict_accuracy."
            }
            ToolKind::CompareArchitectures => {
                "Compare 2–10 stored architectures side by side: params, MACs, depth and nodes with ratios to the first id, the op counts that differ, and each one's predicted accuracy from the active predictor (null when none answers). Use it to choose between candidates; look up measured figures with query_results or nb201_lookup."
            }
            ToolKind::AddArchitecture => {
                "Store an ONNX model: `onnx_base64` is the .onnx file in standard base64 (weights may be stripped; only the graph matters), with optional `name`, `family` and `source`. Answers the stored architecture (same JSON as POST /v1/architectures); the text says whether it is new or was already stored with the same computation graph (deduplicated by graph hash). Needs the server's API token when it has one. Next: predict_accuracy with architecture_ids=[id]."
            }
            ToolKind::PredictAccuracy => {
                "Predict accuracy in milliseconds, without training, for up to 100 architectures: stored ones (`architecture_ids`), NAS-Bench-201 cells (`nb201`: index 0–15624 or arch string like |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|) and ONNX files (`onnx_base64`). One result per active predictor (`targets` narrows them); `accuracy` is in the target's unit (percent for NB201 test accuracy), `std` the ensemble spread, `ood_score` ≫ 1 means out of the training distribution (trust it less), `nearest` the most similar measured architectures (`nearest` = how many, default 5). Same JSON as POST /v1/predictions. For larger batches under a budget use rank_candidates; confirm the best with nb201_lookup or query_results."
            }
            ToolKind::RankCandidates => {
                "Rank a batch of candidates (up to 10,000: `architecture_ids`, `nb201` cells, `onnx_base64` files, as for predict_accuracy) by predicted accuracy under a budget (`max_params` weights, `max_macs` multiply-accumulates) and return the best `top_k` (default 10) with params, MACs, predicted accuracy, spread and OOD score. Uses the first active predictor matching `targets`. The answer says how many candidates were within budget and how many were left out. Next: verify the top ones with nb201_lookup (true NB201 figures) or compare_architectures."
            }
            ToolKind::SimilarArchitectures => {
                "The measured architectures most similar to stored architecture `id` in the predictor's embedding space, nearest first, with their measured accuracy (`k`, default 10, up to 100). Same JSON as GET /v1/architectures/{id}/similar. Use it to find proven neighbours of a design; look them up with get_architecture."
            }
            ToolKind::QueryResults => {
                "Measured benchmark results with LEMUR data() semantics: filter by benchmark, task, dataset (e.g. cifar-10 for lemur, cifar10 for nb201), metric (acc = accuracy, percent for nb201, 0–1 for lemur), nn (model name), epoch, nn_prefix; `unique_nn` keeps each model's best row, `only_best_accuracy` the best rows per group. Returns at most `max_rows` rows (default 20 here, at most 1000; REST returns all by default) as GET /v1/results does, under `result`; when rows were left out the text says how many: raise max_rows or narrow the filters. Call list_benchmarks first for valid values."
            }
            ToolKind::Nb201Lookup => {
                "Every measured figure of one NAS-Bench-201 cell (`cell`: index 0–15624 or arch string |op~0|+|op~0|op~1|+|op~0|op~1|op~2| with ops none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3): seed-mean accuracy (percent) and loss per dataset (cifar10-valid, cifar10, cifar100, ImageNet16-120), split and epoch budget (12, 200), per-seed runs, params and MACs. Same JSON as GET /v1/benchmarks/nb201/{cell}. This is the ground truth to check predict_accuracy against."
            }
            ToolKind::ParetoFront => {
                "The accuracy-versus-cost Pareto front of measured models on a `dataset`: `x` = params, macs or latency; y = best `metric` (default acc) per model; optional benchmark, split, epoch. Returns the undominated models by increasing cost and how many models were considered. Same JSON as GET /v1/stats/pareto. Next: get_architecture on a front model's architecture_id."
            }
            ToolKind::ComputeCalibration => {
                "Calibration metrics of a classifier's predictions: give `probs` (or `logits`), N×K, and N integer `labels`; optional `bins` (bin counts), `binning`, `temperature_scaling`. Returns ECE (equal width / equal mass), classwise ECE, MCE, RMSCE, KSCE, MMCE, NLL, Brier and accuracy (0–1), before and after temperature scaling. Same JSON as POST /v1/calibration/compute."
            }
        }
    }

    fn input_schema(self) -> Value {
        let id = || json!({"type": "integer", "description": "Architecture id (from search_architectures)."});
        let props = |pairs: Vec<(&str, Value)>| -> Map<String, Value> {
            pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
        };
        let schema = match self {
            ToolKind::ListBenchmarks => schema::object(Map::new(), &[]),
            ToolKind::SearchArchitectures => {
                let mut p = schema::query_params("get", "/v1/architectures", &[]);
                p["limit"]["description"] = "Page size, 1–1000 (default 10 here).".into();
                schema::object(p, &[])
            }
            ToolKind::GetArchitecture => schema::object(
                props(vec![
                    ("id", id()),
                    (
                        "variant",
                        json!({"type": "string", "description": "Text encoding of the graph (GET /v1/architectures/{id}/text?variant=…): chain_slim (default) or another ONNX-Net variant, or cg."}),
                    ),
                ]),
                &["id"],
            ),
            ToolKind::CompareArchitectures => schema::object(
                props(vec![(
                    "ids",
                    json!({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 10, "uniqueItems": true,
                           "description": "Architecture ids; the first is the baseline of the ratios."}),
                )]),
                &["ids"],
            ),
            ToolKind::AddArchitecture => {
                let mut p = schema::query_params("post", "/v1/architectures", &[]);
                p.insert(
                    "onnx_base64".into(),
                    json!({"type": "string", "description": "The .onnx file, standard base64."}),
                );
                schema::object(p, &["onnx_base64"])
            }
            ToolKind::PredictAccuracy => {
                let mut p = prediction_inputs();
                p.extend(schema::query_params("post", "/v1/predictions", &[]));
                schema::object(p, &[])
            }
            ToolKind::RankCandidates => {
                let mut p = prediction_inputs();
                p.extend(props(vec![
                    ("max_params", json!({"type": "integer", "minimum": 0, "description": "Largest parameter count (weights) allowed."})),
                    ("max_macs", json!({"type": "integer", "minimum": 0, "description": "Largest MACs (multiply-accumulates per inference) allowed."})),
                    ("top_k", json!({"type": "integer", "minimum": 1, "maximum": 100, "description": "How many of the best to return (default 10)."})),
                ]));
                schema::object(p, &[])
            }
            ToolKind::SimilarArchitectures => {
                let mut p = schema::query_params("get", "/v1/architectures/{id}/similar", &[]);
                p.insert("id".into(), id());
                schema::object(p, &["id"])
            }
            ToolKind::QueryResults => {
                let mut p = schema::query_params("get", "/v1/results", &["format"]);
                p["max_rows"]["description"] =
                    "At most this many rows, 1–1000 (default 20 here), in LEMUR's order.".into();
                schema::object(p, &[])
            }
            ToolKind::Nb201Lookup => schema::object(
                props(vec![(
                    "cell",
                    json!({"type": ["integer", "string"], "description": "NB201 index 0–15624, or the arch string."}),
                )]),
                &["cell"],
            ),
            ToolKind::ParetoFront => schema::object(
                schema::query_params("get", "/v1/stats/pareto", &["format"]),
                &["dataset"],
            ),
            ToolKind::ComputeCalibration => {
                let (p, required) = schema::body_properties("post", "/v1/calibration/compute");
                let required: Vec<&str> = required.iter().map(String::as_str).collect();
                schema::object(p, &required)
            }
        };
        schema::self_contained(schema)
    }

    fn output_schema(self) -> Value {
        match self {
            ToolKind::ListBenchmarks => schema::response("get", "/v1/benchmarks", 200),
            ToolKind::SearchArchitectures => schema::response("get", "/v1/architectures", 200),
            ToolKind::GetArchitecture => schema::response("get", "/v1/architectures/{id}", 200),
            ToolKind::AddArchitecture => schema::response("post", "/v1/architectures", 201),
            ToolKind::PredictAccuracy => schema::response("post", "/v1/predictions", 200),
            ToolKind::SimilarArchitectures => {
                schema::response("get", "/v1/architectures/{id}/similar", 200)
            }
            ToolKind::QueryResults => schema::response("get", "/v1/results", 200),
            ToolKind::Nb201Lookup => schema::response("get", "/v1/benchmarks/nb201/{key}", 200),
            // The document shows only the SVG `200` of these two.
            ToolKind::ParetoFront => schema::component("ParetoFront"),
            ToolKind::ComputeCalibration => schema::component("CalibrationReport"),
            ToolKind::CompareArchitectures => schema::self_contained(json!({
                "type": "object",
                "required": ["architectures", "op_count_differences", "predictor"],
                "properties": {
                    "architectures": {"type": "array", "items": {
                        "type": "object",
                        "required": ["id", "params", "macs", "depth", "num_nodes", "params_ratio", "macs_ratio", "predicted"],
                        "properties": {
                            "id": {"type": "integer"}, "name": {"type": ["string", "null"]}, "family": {"type": ["string", "null"]},
                            "params": {"type": "integer"}, "macs": {"type": "integer"}, "depth": {"type": "integer"}, "num_nodes": {"type": "integer"},
                            "params_ratio": {"type": "number", "description": "params / the first architecture's params"},
                            "macs_ratio": {"type": "number", "description": "MACs / the first architecture's MACs"},
                            "predicted": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ArchitecturePrediction"}]}
                        }}},
                    "op_count_differences": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}},
                        "description": "op → its count in each architecture, for the ops whose counts differ"},
                    "predictor": {"type": ["object", "null"], "properties": {"predictor_id": {"type": "integer"}, "target": {"$ref": "#/components/schemas/Target"}}},
                    "prediction_note": {"type": ["string", "null"], "description": "why there are no predictions"}
                }
            })),
            ToolKind::RankCandidates => schema::self_contained(json!({
                "type": "object",
                "required": ["predictor_id", "target", "candidates", "within_budget", "ranked", "omitted"],
                "properties": {
                    "predictor_id": {"type": "integer"},
                    "target": {"$ref": "#/components/schemas/Target"},
                    "candidates": {"type": "integer", "description": "architectures predicted"},
                    "within_budget": {"type": "integer", "description": "of them, within max_params and max_macs"},
                    "omitted": {"type": "integer", "description": "within budget but below the top_k"},
                    "ranked": {"type": "array", "items": {
                        "type": "object",
                        "required": ["rank", "input", "accuracy", "std", "ood_score", "params", "macs"],
                        "properties": {
                            "rank": {"type": "integer"},
                            "input": {"type": "integer", "description": "position in architecture_ids + nb201 + onnx_base64"},
                            "architecture_id": {"type": ["integer", "null"]},
                            "nb201": {"type": ["integer", "string"], "description": "the cell as given"},
                            "onnx_index": {"type": "integer", "description": "index into onnx_base64"},
                            "accuracy": {"type": "number"}, "std": {"type": "number"}, "ood_score": {"type": "number"},
                            "params": {"type": "integer"}, "macs": {"type": "integer"}
                        }}}
                }
            })),
        }
    }

    fn writes(self) -> bool {
        self == ToolKind::AddArchitecture
    }

    fn definition(self) -> Tool {
        let object = |v: Value| match v {
            Value::Object(m) => Arc::new(m),
            _ => unreachable!("tool schemas are objects"),
        };
        let annotations = ToolAnnotations::new()
            .read_only(!self.writes())
            .destructive(false)
            .idempotent(true)
            .open_world(false);
        Tool::new(self.name(), self.description(), object(self.input_schema()))
            .with_raw_output_schema(object(self.output_schema()))
            .with_annotations(annotations)
    }
}

/// The architectures of a prediction request (POST /v1/predictions JSON fields).
fn prediction_inputs() -> Map<String, Value> {
    let (mut p, _) = schema::body_properties("post", "/v1/predictions");
    // The OpenAPI document types NB201 cells as objects; they are indices or arch strings.
    p["nb201"]["items"] = json!({"type": ["integer", "string"]});
    p
}

/// The tool list, built once from the OpenAPI document.
pub fn catalog() -> &'static [Tool] {
    static TOOLS: LazyLock<Vec<Tool>> =
        LazyLock::new(|| ToolKind::ALL.iter().map(|t| t.definition()).collect());
    &TOOLS
}

/// A successful call: the structured answer and its text rendering.
pub struct Answer {
    pub structured: Value,
    pub text: String,
}

/// Runs a tool; a failure carries its problem document and how to fix the call.
pub async fn call(
    kind: ToolKind,
    args: Map<String, Value>,
    rest: &Rest,
) -> Result<Answer, Failure> {
    check_arguments(kind, &args)?;
    run(kind, args, rest).await.map_err(|mut f| {
        if f.hint.is_empty() {
            f.hint = hint(kind, &f);
        }
        f
    })
}

/// Refuses unknown and missing arguments before anything runs (a typo would silently widen a
/// query).
fn check_arguments(kind: ToolKind, args: &Map<String, Value>) -> Result<(), Failure> {
    let tool = &catalog()[ToolKind::ALL
        .iter()
        .position(|&t| t == kind)
        .expect("listed")];
    let schema = &tool.input_schema;
    let known: Vec<&str> = schema["properties"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if let Some(unknown) = args.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Failure::invalid(
            format!("{} has no argument `{unknown}`", kind.name()),
            format!("use only these arguments: {}", known.join(", ")),
        ));
    }
    let missing = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|r| args.get(*r).is_none_or(Value::is_null));
    match missing {
        Some(name) => Err(Failure::invalid(
            format!("{} needs the argument `{name}`", kind.name()),
            format!("add `{name}` as the tool's inputSchema describes"),
        )),
        None => Ok(()),
    }
}

/// How to fix a call that the API refused.
fn hint(kind: ToolKind, failure: &Failure) -> String {
    let by_tool = match (failure.status(), kind) {
        (404, ToolKind::Nb201Lookup) => Some(
            "give an index 0–15624 or an arch string like |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|; if the cell is not stored, the NB201 data must be imported (archdb import nb201)",
        ),
        (404, _) => Some("use an id that exists: find ids with search_architectures"),
        (503, _) => Some(
            "no predictor is active for this target: list measured results with query_results instead, or ask the operator to train one (archdb train --activate)",
        ),
        _ => None,
    };
    by_tool
        .unwrap_or(match failure.status() {
            400 => "correct the argument named in the detail (names, types and allowed values are in this tool's inputSchema) and call again",
            401 => "this server needs its API token for this call: configure the MCP client to send `Authorization: Bearer <token>` to /mcp",
            413 => "the input is over the server's size limits: send a smaller model",
            422 => "the call was understood but its values are invalid (see the detail): correct them and call again",
            s if s >= 500 => "the server failed; try again later",
            _ => "see the detail and correct the call",
        })
        .to_string()
}

async fn run(kind: ToolKind, mut args: Map<String, Value>, rest: &Rest) -> Result<Answer, Failure> {
    match kind {
        ToolKind::ListBenchmarks => {
            let list = rest.get("/v1/benchmarks").await?;
            let text = lines(&list, "benchmarks", |b| {
                format!(
                    "{}: {} models, {} rows; datasets {}; metrics {}",
                    b["benchmark"].as_str().unwrap_or_default(),
                    b["models"],
                    b["rows"],
                    join(&b["datasets"]),
                    join(&b["metrics"])
                )
            });
            Ok(Answer {
                structured: json!({"result": list}),
                text,
            })
        }
        ToolKind::SearchArchitectures => {
            args.entry("limit").or_insert(SEARCH_LIMIT.into());
            let page = rest.get(&uri("/v1/architectures", &args)?).await?;
            let mut text = lines(&page["items"], "architectures", architecture_line);
            if let Some(cursor) = page["next_cursor"].as_str() {
                text.push_str(&format!(
                    "\nMore architectures match: call again with cursor=\"{cursor}\"."
                ));
            }
            Ok(Answer {
                structured: page,
                text,
            })
        }
        ToolKind::GetArchitecture => {
            let id = integer(&args, "id")?;
            let detail = rest.get(&format!("/v1/architectures/{id}")).await?;
            let variant = args.remove("variant");
            let mut query = Map::new();
            if let Some(v) = &variant {
                query.insert("variant".into(), v.clone());
            }
            let mut text = architecture_line(&detail);
            match rest
                .send(
                    Method::GET,
                    &uri(&format!("/v1/architectures/{id}/text"), &query)?,
                    Payload::Empty,
                )
                .await
            {
                Ok((_, body)) => {
                    let bytes = axum::body::to_bytes(body, usize::MAX)
                        .await
                        .unwrap_or_default();
                    let form = match serde_json::from_slice::<Value>(&bytes) {
                        Ok(Value::Object(o)) => o.get("text").map_or_else(
                            || Value::Object(o.clone()).to_string(),
                            |t| t.as_str().unwrap_or_default().to_string(),
                        ),
                        _ => String::from_utf8_lossy(&bytes).into_owned(),
                    };
                    text.push_str(&format!("\n\nGraph as text:\n{form}"));
                }
                // A variant the server does not know is the caller's to fix.
                Err(f) if variant.is_some() && f.status() == 400 => return Err(f),
                // Servers without the text route answer only the JSON.
                Err(f) => text.push_str(&format!("\n(no text form: {})", f.detail())),
            }
            Ok(Answer {
                structured: detail,
                text,
            })
        }
        ToolKind::CompareArchitectures => compare(&args, rest).await,
        ToolKind::AddArchitecture => {
            let onnx = decode_base64(
                &args.remove("onnx_base64").unwrap_or_default(),
                "onnx_base64",
            )?;
            let (status, arch) = rest
                .json(
                    Method::POST,
                    &uri("/v1/architectures", &args)?,
                    Payload::Onnx(onnx),
                )
                .await?;
            let verdict = if status == StatusCode::CREATED {
                "Stored as a new architecture"
            } else {
                "Already stored (same computation graph)"
            };
            let text = format!(
                "{verdict}: {}\nNext: predict_accuracy with architecture_ids=[{}].",
                architecture_line(&arch),
                arch["id"]
            );
            Ok(Answer {
                structured: arch,
                text,
            })
        }
        ToolKind::PredictAccuracy => {
            let count = ["architecture_ids", "nb201", "onnx_base64"]
                .iter()
                .map(|k| args.get(*k).and_then(Value::as_array).map_or(0, Vec::len))
                .sum::<usize>();
            if count > MAX_PREDICT {
                return Err(Failure::invalid(
                    format!("{count} architectures; predict_accuracy takes at most {MAX_PREDICT}"),
                    "use rank_candidates for larger batches (it returns only the best under a budget)",
                ));
            }
            let mut query = Map::new();
            if let Some(n) = args.remove("nearest") {
                query.insert("nearest".into(), n);
            }
            let (_, answer) = rest
                .json(
                    Method::POST,
                    &uri("/v1/predictions", &query)?,
                    Payload::Json(Value::Object(args)),
                )
                .await?;
            let mut text = String::new();
            for result in answer["results"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "Predictor {} ({}):\n",
                    result["predictor_id"],
                    target(&result["target"])
                ));
                text.push_str(&lines(
                    &result["predictions"],
                    "predictions",
                    prediction_line,
                ));
                text.push('\n');
            }
            Ok(Answer {
                structured: answer,
                text,
            })
        }
        ToolKind::RankCandidates => rank(args, rest).await,
        ToolKind::SimilarArchitectures => {
            let id = integer(&args, "id")?;
            args.remove("id");
            let answer = rest
                .get(&uri(&format!("/v1/architectures/{id}/similar"), &args)?)
                .await?;
            let text = format!(
                "Measured architectures nearest to {id} (predictor {}, {}):\n{}",
                answer["predictor_id"],
                target(&answer["target"]),
                lines(&answer["similar"], "neighbours", |n| format!(
                    "architecture {}: measured {}, distance {:.3}",
                    n["architecture_id"],
                    number(&n["measured_accuracy"]),
                    n["distance"].as_f64().unwrap_or(f64::NAN)
                ))
            );
            Ok(Answer {
                structured: answer,
                text,
            })
        }
        ToolKind::QueryResults => query_results(args, rest).await,
        ToolKind::Nb201Lookup => {
            let cell = match &args["cell"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(Failure::invalid(
                        "cell must be an integer index or an arch string",
                        "pass e.g. cell=6111",
                    ));
                }
            };
            let answer = rest
                .get(&format!("/v1/benchmarks/nb201/{}", segment(&cell)))
                .await?;
            Ok(Answer {
                text: nb201_text(&answer),
                structured: answer,
            })
        }
        ToolKind::ParetoFront => {
            let answer = rest.get(&uri("/v1/stats/pareto", &args)?).await?;
            let text = format!(
                "{} of {} models are on the front ({} vs accuracy, cheapest first):\n{}",
                answer["front"].as_array().map_or(0, Vec::len),
                answer["points"],
                answer["x"].as_str().unwrap_or_default(),
                lines(&answer["front"], "models", |p| format!(
                    "{} (architecture {}): x {}, accuracy {}",
                    p["nn"].as_str().unwrap_or_default(),
                    p["architecture_id"],
                    number(&p["x"]),
                    number(&p["y"])
                ))
            );
            Ok(Answer {
                structured: answer,
                text,
            })
        }
        ToolKind::ComputeCalibration => {
            let (_, report) = rest
                .json(
                    Method::POST,
                    "/v1/calibration/compute",
                    Payload::Json(Value::Object(args)),
                )
                .await?;
            let set = |s: &Value| {
                format!(
                    "accuracy {}, NLL {}, Brier {}, ECE by bins {}, MCE by bins {}",
                    number(&s["accuracy"]),
                    number(&s["nll"]),
                    number(&s["brier"]),
                    s["ece"],
                    s["mce"]
                )
            };
            let mut text = format!("Before temperature scaling: {}", set(&report["pre"]));
            if report["post"].is_object() {
                text.push_str(&format!(
                    "\nAfter (T = {}): {}",
                    number(&report["temperature"]),
                    set(&report["post"])
                ));
            }
            Ok(Answer {
                structured: report,
                text,
            })
        }
    }
}

async fn query_results(mut args: Map<String, Value>, rest: &Rest) -> Result<Answer, Failure> {
    let max_rows = match args.get("max_rows") {
        None | Some(Value::Null) => RESULT_ROWS,
        Some(v) => v
            .as_i64()
            .filter(|n| (1..=MAX_RESULT_ROWS).contains(n))
            .ok_or_else(|| {
                Failure::invalid(
                    format!(
                        "max_rows must be an integer from 1 to {MAX_RESULT_ROWS} here, got {v}"
                    ),
                    "for bulk reads use GET /v1/results?format=csv outside MCP",
                )
            })?,
    };
    args.insert("max_rows".into(), max_rows.into());
    let rows = rest.get(&uri("/v1/results", &args)?).await?;
    let returned = rows.as_array().map_or(0, Vec::len) as u64;
    // A full page may hide more rows: count them (up to COUNT_CAP), streaming, keeping none.
    let total = if returned == max_rows as u64 {
        let mut count = args.clone();
        count.insert("max_rows".into(), (COUNT_CAP + 1).into());
        count.insert("include_prm".into(), false.into());
        count.remove("prm_as_columns");
        count.insert("format".into(), "jsonl".into());
        rest.count_lines(&uri("/v1/results", &count)?).await?
    } else {
        returned
    };
    let mut text = if total > COUNT_CAP {
        format!("{returned} of over {COUNT_CAP} matching rows (the rest left out: {MORE_ROWS})")
    } else if total > returned {
        format!(
            "{returned} of {total} matching rows ({} left out: {MORE_ROWS})",
            total - returned
        )
    } else {
        format!("{returned} matching rows")
    };
    text.push_str(":\n");
    text.push_str(&lines(&rows, "rows", |r| {
        format!(
            "{} | {} | {} {} | epoch {} | {}",
            r["nn"].as_str().unwrap_or_default(),
            r["dataset"].as_str().unwrap_or_default(),
            r["metric"].as_str().unwrap_or_default(),
            r["split"].as_str().unwrap_or_default(),
            r["epoch"],
            number(&r["accuracy"])
        )
    }));
    Ok(Answer {
        structured: json!({"result": rows}),
        text,
    })
}

async fn compare(args: &Map<String, Value>, rest: &Rest) -> Result<Answer, Failure> {
    let ids: Vec<i64> = args["ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    if !(2..=10).contains(&ids.len()) || ids.len() != args["ids"].as_array().map_or(0, Vec::len) {
        return Err(Failure::invalid(
            "ids must be 2 to 10 integer architecture ids",
            "pass e.g. ids=[1, 2]",
        ));
    }
    let mut archs = Vec::new();
    for id in &ids {
        archs.push(rest.get(&format!("/v1/architectures/{id}")).await?);
    }
    let (predictor, predictions, note) = match rest
        .json(
            Method::POST,
            "/v1/predictions?nearest=0",
            Payload::Json(json!({"architecture_ids": ids})),
        )
        .await
    {
        Ok((_, answer)) => {
            let first = &answer["results"][0];
            (
                json!({"predictor_id": first["predictor_id"], "target": first["target"]}),
                first["predictions"].as_array().cloned().unwrap_or_default(),
                Value::Null,
            )
        }
        Err(f) => (Value::Null, vec![], Value::String(f.detail().to_string())),
    };
    let base = &archs[0];
    let ratio = |a: &Value, key: &str| {
        a[key].as_f64().unwrap_or(0.0) / base[key].as_f64().filter(|v| *v > 0.0).unwrap_or(1.0)
    };
    let rows: Vec<Value> = archs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let predicted = predictions.get(i).cloned().unwrap_or(Value::Null);
            json!({
                "id": a["id"], "name": a["name"], "family": a["family"], "params": a["params"], "macs": a["macs"],
                "depth": a["depth"], "num_nodes": a["num_nodes"],
                "params_ratio": ratio(a, "params"), "macs_ratio": ratio(a, "macs"), "predicted": predicted,
            })
        })
        .collect();
    let mut ops: Vec<&String> = archs
        .iter()
        .filter_map(|a| a["op_counts"].as_object())
        .flat_map(|o| o.keys())
        .collect();
    ops.sort();
    ops.dedup();
    let differences: Map<String, Value> = ops
        .into_iter()
        .filter_map(|op| {
            let counts: Vec<i64> = archs
                .iter()
                .map(|a| a["op_counts"][op].as_i64().unwrap_or(0))
                .collect();
            counts
                .iter()
                .any(|c| *c != counts[0])
                .then(|| (op.clone(), json!(counts)))
        })
        .collect();
    let mut text = lines(&json!(rows), "architectures", |r| {
        let predicted = match r["predicted"]["accuracy"].as_f64() {
            Some(a) => format!(
                "predicted {a:.2} ± {:.2}",
                r["predicted"]["std"].as_f64().unwrap_or(0.0)
            ),
            None => "no prediction".into(),
        };
        format!(
            "{}: {} params (×{:.2}), {} MACs (×{:.2}), depth {}, {}",
            r["id"],
            human(&r["params"]),
            r["params_ratio"].as_f64().unwrap_or(0.0),
            human(&r["macs"]),
            r["macs_ratio"].as_f64().unwrap_or(0.0),
            r["depth"],
            predicted
        )
    });
    if !differences.is_empty() {
        text.push_str(&format!(
            "\nOp counts that differ: {}",
            Value::Object(differences.clone())
        ));
    }
    if let Some(n) = note.as_str() {
        text.push_str(&format!("\nNo predictions: {n}"));
    }
    Ok(Answer {
        structured: json!({"architectures": rows, "op_count_differences": differences, "predictor": predictor, "prediction_note": note}),
        text,
    })
}

async fn rank(mut args: Map<String, Value>, rest: &Rest) -> Result<Answer, Failure> {
    let limit = |name: &str, args: &Map<String, Value>| -> Result<Option<i64>, Failure> {
        match args.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().filter(|n| *n >= 0).map(Some).ok_or_else(|| {
                Failure::invalid(
                    format!("{name} must be a non-negative integer"),
                    format!("pass e.g. {name}=1000000"),
                )
            }),
        }
    };
    let (max_params, max_macs) = (limit("max_params", &args)?, limit("max_macs", &args)?);
    let top_k = limit("top_k", &args)?.unwrap_or(10);
    if !(1..=100).contains(&top_k) {
        return Err(Failure::invalid(
            "top_k must be from 1 to 100",
            "pass e.g. top_k=10",
        ));
    }
    for name in ["max_params", "max_macs", "top_k"] {
        args.remove(name);
    }
    // What each input position was, to name the candidates in the answer.
    let mut given: Vec<(&str, Value)> = Vec::new();
    for key in ["architecture_ids", "nb201", "onnx_base64"] {
        for (i, v) in args
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            given.push(match key {
                "architecture_ids" => ("architecture_id", v.clone()),
                "nb201" => ("nb201", v.clone()),
                _ => ("onnx_index", i.into()),
            });
        }
    }
    let (_, answer) = rest
        .json(
            Method::POST,
            "/v1/predictions?nearest=0",
            Payload::Json(Value::Object(args)),
        )
        .await?;
    let result = &answer["results"][0];
    let predictions = result["predictions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let candidates = predictions.len();
    let mut within: Vec<Value> = predictions
        .into_iter()
        .filter(|p| {
            max_params.is_none_or(|m| p["params"].as_i64().unwrap_or(i64::MAX) <= m)
                && max_macs.is_none_or(|m| p["macs"].as_i64().unwrap_or(i64::MAX) <= m)
        })
        .collect();
    within.sort_by(|a, b| {
        let acc = |p: &Value| p["accuracy"].as_f64().unwrap_or(f64::NEG_INFINITY);
        acc(b).total_cmp(&acc(a))
    });
    let within_budget = within.len();
    let ranked: Vec<Value> = within
        .into_iter()
        .take(top_k as usize)
        .enumerate()
        .map(|(rank, p)| {
            let input = p["input"].as_u64().unwrap_or(0) as usize;
            let mut row = json!({
                "rank": rank + 1, "input": input, "architecture_id": p["architecture_id"], "accuracy": p["accuracy"],
                "std": p["std"], "ood_score": p["ood_score"], "params": p["params"], "macs": p["macs"],
            });
            if let Some((key, value)) = given.get(input)
                && *key != "architecture_id"
            {
                row[*key] = value.clone();
            }
            row
        })
        .collect();
    let omitted = within_budget - ranked.len();
    let mut text = format!(
        "{within_budget} of {candidates} candidates are within budget; the best {} by predicted {} (predictor {}):\n",
        ranked.len(),
        target(&result["target"]),
        result["predictor_id"]
    );
    text.push_str(&lines(&json!(ranked), "candidates", |r| {
        let what = if !r["nb201"].is_null() {
            format!("nb201 {}", r["nb201"])
        } else if !r["onnx_index"].is_null() {
            format!("onnx_base64[{}]", r["onnx_index"])
        } else {
            format!("architecture {}", r["architecture_id"])
        };
        format!(
            "#{} {what}: {:.2} ± {:.2} (ood {:.2}), {} params, {} MACs",
            r["rank"],
            r["accuracy"].as_f64().unwrap_or(f64::NAN),
            r["std"].as_f64().unwrap_or(f64::NAN),
            r["ood_score"].as_f64().unwrap_or(f64::NAN),
            human(&r["params"]),
            human(&r["macs"])
        )
    }));
    if omitted > 0 {
        text.push_str(&format!(
            "\n{omitted} more within budget were left out (raise top_k, up to 100)."
        ));
    }
    Ok(Answer {
        structured: json!({
            "predictor_id": result["predictor_id"], "target": result["target"], "candidates": candidates,
            "within_budget": within_budget, "ranked": ranked, "omitted": omitted,
        }),
        text,
    })
}

fn integer(args: &Map<String, Value>, name: &str) -> Result<i64, Failure> {
    args.get(name).and_then(Value::as_i64).ok_or_else(|| {
        Failure::invalid(
            format!("`{name}` must be an integer"),
            format!("pass {name} as a number, e.g. {name}=1"),
        )
    })
}

fn decode_base64(value: &Value, name: &str) -> Result<Vec<u8>, Failure> {
    let text: String = value
        .as_str()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| {
            Failure::invalid(
                format!("{name} is not standard base64: {e}"),
                format!("encode the .onnx file's bytes with standard base64 (RFC 4648, with padding) and pass the string as {name}"),
            )
        })
}

/// One line per item of a JSON array, at most [`TEXT_LINES`] (the structured answer has all).
fn lines(items: &Value, what: &str, line: impl Fn(&Value) -> String) -> String {
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut text: Vec<String> = items.iter().take(TEXT_LINES).map(&line).collect();
    if items.len() > TEXT_LINES {
        text.push(format!(
            "… {} more {what} in the structured answer",
            items.len() - TEXT_LINES
        ));
    }
    if items.is_empty() {
        text.push(format!("(no {what})"));
    }
    text.join("\n")
}

fn architecture_line(a: &Value) -> String {
    let ops = a["op_counts"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    format!(
        "architecture {} {} ({}): {} params, {} MACs, {} nodes, depth {}, input {}; ops {ops}",
        a["id"],
        a["name"].as_str().unwrap_or("(unnamed)"),
        a["family"].as_str().unwrap_or("no family"),
        human(&a["params"]),
        human(&a["macs"]),
        a["num_nodes"],
        a["depth"],
        a["input_shape"]
    )
}

fn prediction_line(p: &Value) -> String {
    let nearest = p["nearest"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            format!(
                "{} ({})",
                n["architecture_id"],
                number(&n["measured_accuracy"])
            )
        })
        .collect::<Vec<_>>();
    let mut line = format!(
        "input {}{}: {:.2} ± {:.2} (ood {:.2}), {} params, {} MACs",
        p["input"],
        p["architecture_id"]
            .as_i64()
            .map_or(String::new(), |id| format!(" (architecture {id})")),
        p["accuracy"].as_f64().unwrap_or(f64::NAN),
        p["std"].as_f64().unwrap_or(f64::NAN),
        p["ood_score"].as_f64().unwrap_or(f64::NAN),
        human(&p["params"]),
        human(&p["macs"])
    );
    if !nearest.is_empty() {
        line.push_str(&format!("; nearest measured: {}", nearest.join(", ")));
    }
    line
}

fn nb201_text(cell: &Value) -> String {
    let figures = cell["figures"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let budget = figures
        .iter()
        .filter(|f| f["metric"] == "acc")
        .filter_map(|f| f["epoch"].as_i64())
        .max();
    let accuracies: Vec<String> = figures
        .iter()
        .filter(|f| f["metric"] == "acc" && f["epoch"].as_i64() == budget)
        .map(|f| {
            format!(
                "{} {} {}",
                f["dataset"].as_str().unwrap_or_default(),
                f["split"].as_str().unwrap_or("-"),
                number(&f["value"])
            )
        })
        .collect();
    format!(
        "NB201 cell {} {}: {} params, {} MACs (architecture {}).\nSeed-mean accuracy (%) after {} epochs: {}.\n{} figures, {} per-seed runs and {} learning curves in the structured answer.",
        cell["index"],
        cell["arch_str"].as_str().unwrap_or_default(),
        human(&cell["params"]),
        human(&cell["macs"]),
        cell["architecture_id"],
        budget.map_or("-".into(), |b| b.to_string()),
        accuracies.join("; "),
        figures.len(),
        cell["per_seed"].as_array().map_or(0, Vec::len),
        cell["learning_curves"].as_array().map_or(0, Vec::len)
    )
}

fn target(t: &Value) -> String {
    let mut s = format!(
        "{}/{}/{}",
        t["benchmark"].as_str().unwrap_or_default(),
        t["dataset"].as_str().unwrap_or_default(),
        t["metric"].as_str().unwrap_or_default()
    );
    if let Some(e) = t["epoch"].as_i64() {
        s.push_str(&format!(" at {e} epochs"));
    }
    if let Some(split) = t["split"].as_str() {
        s.push_str(&format!(", {split} split"));
    }
    s
}

fn join(list: &Value) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A figure with four significant decimals at most.
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x}"),
        Some(x) => format!("{x:.4}").trim_end_matches('0').to_string(),
        None => "-".into(),
    }
}

/// Counts as 11.68M, 1.82G.
fn human(v: &Value) -> String {
    let Some(x) = v.as_f64() else {
        return "-".into();
    };
    match x.abs() {
        a if a >= 1e9 => format!("{:.2}G", x / 1e9),
        a if a >= 1e6 => format!("{:.2}M", x / 1e6),
        a if a >= 1e3 => format!("{:.1}k", x / 1e3),
        _ => format!("{x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_object_schemas_and_a_unique_name() {
        let tools = catalog();
        assert_eq!(tools.len(), ToolKind::ALL.len());
        for (tool, kind) in tools.iter().zip(ToolKind::ALL) {
            assert_eq!(ToolKind::from_name(&tool.name), Some(kind));
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            let out = tool.output_schema.as_ref().expect("output schema");
            assert_eq!(out["type"], "object", "{}", tool.name);
            let text = serde_json::to_string(&**out).unwrap();
            assert!(!text.contains("#/components/"), "{}: {text}", tool.name);
        }
        assert_eq!(ToolKind::from_name("nope"), None);
    }

    #[test]
    fn inputs_are_the_rest_names() {
        let props = |k: ToolKind| {
            catalog()[ToolKind::ALL.iter().position(|&t| t == k).unwrap()]
            .input_schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
        };
        assert_eq!(
            props(ToolKind::AddArchitecture),
            ["family", "name", "onnx_base64", "source"]
        );
        assert_eq!(
            props(ToolKind::PredictAccuracy),
            [
                "architecture_ids",
                "nb201",
                "nearest",
                "onnx_base64",
                "targets"
            ]
        );
        assert!(props(ToolKind::QueryResults).contains(&"only_best_accuracy".to_string()));
        assert_eq!(props(ToolKind::Nb201Lookup), ["cell"]);
    }

    #[test]
    fn unknown_and_missing_arguments_are_refused_with_the_fix() {
        let args = |v: Value| v.as_object().unwrap().clone();
        let e = check_arguments(
            ToolKind::GetArchitecture,
            &args(json!({"id": 1, "ident": 2})),
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.detail().contains("`ident`") && e.hint.contains("id, variant"),
            "{e:?}"
        );
        let e = check_arguments(ToolKind::Nb201Lookup, &args(json!({}))).unwrap_err();
        assert!(e.detail().contains("`cell`"), "{e:?}");
        assert!(check_arguments(ToolKind::Nb201Lookup, &args(json!({"cell": 5}))).is_ok());
    }

    #[test]
    fn numbers_are_rendered_short() {
        assert_eq!(human(&json!(11_680_872)), "11.68M");
        assert_eq!(human(&json!(1_821_452_264u64)), "1.82G");
        assert_eq!(number(&json!(94.373333)), "94.3733");
        assert_eq!(number(&json!(200)), "200");
        assert_eq!(number(&Value::Null), "-");
    }
}
