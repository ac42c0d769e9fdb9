//! Training, fine-tuning and registering predictors against the database: read a target's
//! measured architectures ([`population`]), split them by seed, train (here or with the
//! PyTorch trainer, [`torch`]), evaluate on every held-out architecture, and store the artifact,
//! its evaluation and its index in one transaction. `archdb worker` runs these for queued jobs
//! ([`JobParams`]), `archdb train` in the foreground, and the first `archdb serve` registers the
//! bundled predictors with [`register_bundled`].

pub mod population;
pub mod recipe;
pub mod torch;

pub use population::{Population, SetPart, export_set, predict_set};
pub use torch::{Trainer, TrainerOptions};

use population::{index_rows, scores, set_description, set_of};
use torch::torch_train;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::Number;
use utoipa::ToSchema;
use utoipa::openapi::schema::{
    AdditionalProperties, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType,
    Type,
};

use crate::db::jobs;
use crate::db::predictors::{self, IndexRow, NewPredictor, PredictorKind, Target};
use crate::predict::model::TargetScores;
use crate::predict::{
    Backend, EpochReport, FinetuneConfig, Predictor, PreparedGraph, TrainConfig, TrainSample,
};

/// What to train (the body of `POST /v1/predictors`, the params of a `train` job).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Name of the predictor (default: from the target and train size).
    #[serde(default)]
    pub name: Option<String>,
    pub target: Target,
    /// Measured architectures to train on, drawn at random with `seed`; all others are the
    /// held-out test set. Default: 10 % of the target's measured architectures.
    #[serde(default)]
    #[schema(minimum = 2, maximum = 1000000)]
    pub train_size: Option<usize>,
    /// Seed of the split and of training (any `u64`).
    #[serde(default)]
    #[schema(schema_with = seed_schema)]
    pub seed: u64,
    /// Overrides of the training settings (`TrainConfig` fields, e.g. `{"epochs": 50,
    /// "ensemble": 1, "contrastive": {"epochs": 0}}`); unknown fields are an error.
    #[serde(default)]
    #[schema(schema_with = train_settings_schema)]
    pub config: serde_json::Value,
    /// Activate the predictor when it is registered.
    #[serde(default)]
    pub activate: bool,
}

/// Few-shot adaptation to a new target (the body of `POST /v1/predictors/{id}/finetune`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinetuneRequest {
    /// The predictor to start from (set from the path by the API).
    #[serde(default)]
    pub predictor_id: i64,
    #[serde(default)]
    pub name: Option<String>,
    /// The new family's figure; its measured architectures not drawn are the test set.
    pub target: Target,
    /// Measured architectures to adapt on (GENNAPE: 50).
    #[serde(default = "default_shots")]
    #[schema(minimum = 2, maximum = 100000)]
    pub samples: usize,
    /// Seed of the draw of the samples and of training (any `u64`).
    #[serde(default)]
    #[schema(schema_with = seed_schema)]
    pub seed: u64,
    /// Overrides of `FinetuneConfig` (epochs, learning_rate, tune_readout, recalibrate, …).
    #[serde(default)]
    #[schema(schema_with = finetune_settings_schema)]
    pub config: serde_json::Value,
    #[serde(default)]
    pub activate: bool,
}

fn default_shots() -> usize {
    50
}

/// A seed: any `u64` (the document's `int64` would stop at 2^63 − 1).
pub(crate) fn seed_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::Custom("uint64".into())))
        .minimum(Some(Number::UInt(0)))
        .maximum(Some(Number::UInt(u64::MAX as usize)))
        .build()
}

/// The `config` of a train request: the training settings' names, types and ranges.
fn train_settings_schema() -> Object {
    settings_schema(
        &serde_json::to_value(TrainConfig::default()).expect("settings serialise"),
        TRAIN_RANGES,
        "Overrides of the training settings (`TrainConfig` fields, e.g. `{\"epochs\": 50, \
         \"ensemble\": 1, \"contrastive\": {\"epochs\": 0}}`); unknown fields are an error.",
    )
}

/// The `config` of a fine-tune request.
fn finetune_settings_schema() -> Object {
    settings_schema(
        &serde_json::to_value(FinetuneConfig::default()).expect("settings serialise"),
        FINETUNE_RANGES,
        "Overrides of `FinetuneConfig` (epochs, learning_rate, tune_readout, recalibrate, …); \
         unknown fields are an error.",
    )
}

/// The schema of a settings override as [`with_overrides`] takes it, read off the settings'
/// JSON form (`defaults`): an object (or null: no overrides) of the settings' names only, each
/// of its type (an integer setting is a `usize`/`u64`, a float an `f64`), objects nesting, with
/// the `ranges` a validation enforces.
fn settings_schema(defaults: &serde_json::Value, ranges: &[Range], description: &str) -> Object {
    fn schema(value: &serde_json::Value, path: &str, ranges: &[Range]) -> Schema {
        use serde_json::Value;
        let range = ranges.iter().find(|r| r.0 == path);
        let numeric = |ty: Type, min: Number, max: Number| {
            let (min, max) = match (range, &ty) {
                (Some(&(_, lo, hi)), Type::Integer) => {
                    (Number::UInt(lo as usize), Number::UInt(hi as usize))
                }
                (Some(&(_, lo, hi)), _) => (Number::Float(lo), Number::Float(hi)),
                (None, _) => (min, max),
            };
            ObjectBuilder::new()
                .schema_type(ty)
                .minimum(Some(min))
                .maximum(Some(max))
                .build()
                .into()
        };
        match (path, value) {
            ("backend", _) => {
                // `"cpu"`, or `{"cuda": ordinal}`, as the settings (de)serialise.
                let cpu = serde_json::to_value(Backend::Cpu).expect("serialises");
                let cuda = serde_json::to_value(Backend::Cuda(0)).expect("serialises");
                let (cuda_key, _) = cuda
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .expect("a variant with a value is an object");
                OneOfBuilder::new()
                    .item(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some([cpu.clone()])),
                    )
                    .item(
                        ObjectBuilder::new()
                            .schema_type(Type::Object)
                            .property(cuda_key, schema(&Value::from(0u64), "backend.cuda", ranges))
                            .required(cuda_key)
                            .additional_properties(Some(AdditionalProperties::FreeForm(false))),
                    )
                    .description(Some(format!("{cpu}, or `{{\"{cuda_key}\": ordinal}}`")))
                    .into()
            }
            ("target_scores", _) => ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(
                    [
                        TargetScores::Z,
                        TargetScores::Uniform,
                        TargetScores::Logistic,
                    ]
                    .map(|t| serde_json::to_value(t).expect("serialises")),
                ))
                .into(),
            (_, Value::Bool(_)) => ObjectBuilder::new().schema_type(Type::Boolean).into(),
            (_, Value::Number(n)) if n.is_u64() => numeric(
                Type::Integer,
                Number::UInt(0),
                Number::UInt(u64::MAX as usize),
            ),
            (_, Value::Number(_)) => numeric(
                Type::Number,
                Number::Float(-f64::MAX),
                Number::Float(f64::MAX),
            ),
            (_, Value::Object(fields)) => {
                let mut object = ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(AdditionalProperties::FreeForm(false)));
                for (name, value) in fields {
                    let here = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    object = object.property(name, schema(value, &here, ranges));
                }
                object.into()
            }
            (_, Value::String(_)) => ObjectBuilder::new().schema_type(Type::String).into(),
            (_, Value::Array(_) | Value::Null) => Schema::Object(Object::new()),
        }
    }
    let Schema::Object(mut object) = schema(defaults, "", ranges) else {
        unreachable!("settings are an object")
    };
    // `null` is no overrides.
    object.schema_type = SchemaType::from_iter([Type::Object, Type::Null]);
    object.description = Some(description.to_string());
    object
}

/// The job a run belongs to, so that registering it also completes the job (only if this
/// worker still holds it).
#[derive(Debug, Clone)]
pub struct JobRef {
    pub id: i64,
    pub worker: String,
}

/// What a queued job does: its `kind` and `params` columns, typed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "params", rename_all = "lowercase")]
pub enum JobParams {
    Train(TrainRequest),
    Finetune(FinetuneRequest),
    #[serde(rename = "train-recipe")]
    TrainRecipe(recipe::RecipeTrainRequest),
}

impl JobParams {
    /// The `kind` and `params` columns of the job.
    pub fn to_columns(&self) -> Result<(String, serde_json::Value)> {
        let value = serde_json::to_value(self)?;
        Ok((
            value["kind"].as_str().unwrap_or_default().to_string(),
            value["params"].clone(),
        ))
    }

    /// The job's columns read back.
    pub fn from_columns(kind: &str, params: &serde_json::Value) -> Result<Self> {
        serde_json::from_value(serde_json::json!({"kind": kind, "params": params}))
            .with_context(|| format!("invalid job ({kind}) params"))
    }
}

/// Hears every training epoch; returning false stops the run.
pub type ProgressFn = Box<dyn FnMut(&EpochReport) -> bool + Send>;

/// Applies JSON overrides to a settings struct through its JSON form (objects merge field by
/// field); an unknown field or a wrong type is an error.
pub fn with_overrides<T: Serialize + serde::de::DeserializeOwned>(
    base: &T,
    overrides: &serde_json::Value,
) -> Result<T> {
    fn merge(into: &mut serde_json::Value, from: &serde_json::Value, path: &str) -> Result<()> {
        match from {
            serde_json::Value::Null => Ok(()),
            serde_json::Value::Object(fields) => {
                let Some(target) = into.as_object_mut() else {
                    bail!("setting {path} is not an object");
                };
                for (key, value) in fields {
                    let here = format!("{path}.{key}");
                    let slot = target
                        .get_mut(key)
                        .with_context(|| format!("unknown setting {}", &here[1..]))?;
                    if value.is_object() && slot.is_object() {
                        merge(slot, value, &here)?;
                    } else {
                        *slot = value.clone();
                    }
                }
                Ok(())
            }
            _ => bail!("settings must be a JSON object"),
        }
    }
    let mut json = serde_json::to_value(base)?;
    merge(&mut json, overrides, "")?;
    serde_json::from_value(json).context("invalid settings")
}

/// The best device this build can train on: the first CUDA GPU when built with `cuda` and one
/// is present, else the CPU.
pub fn best_backend() -> Backend {
    if Backend::Cuda(0).device().is_ok() {
        Backend::Cuda(0)
    } else {
        Backend::Cpu
    }
}

/// Checks a train request before it is queued (so the API can answer 422 at once): the
/// settings must lie in the documented ranges (docs/predictor.md), so no client can queue a job that would
/// hold a worker for days or exhaust its memory.
pub fn validate_train(request: &TrainRequest) -> Result<TrainConfig> {
    if request
        .train_size
        .is_some_and(|n| !(2..=1_000_000).contains(&n))
    {
        bail!("train_size must be in 2..=1000000");
    }
    let config = with_overrides(&TrainConfig::default(), &request.config)?;
    check_ranges(&serde_json::to_value(&config)?, TRAIN_RANGES)?;
    Ok(config)
}

/// Checks a fine-tune request before it is queued.
pub fn validate_finetune(request: &FinetuneRequest) -> Result<FinetuneConfig> {
    if !(2..=100_000).contains(&request.samples) {
        bail!("samples must be in 2..=100000");
    }
    let config = with_overrides(&FinetuneConfig::default(), &request.config)?;
    check_ranges(&serde_json::to_value(&config)?, FINETUNE_RANGES)?;
    Ok(config)
}

/// A setting's range: its path in the settings' JSON form (`encoder.hidden`), minimum and
/// maximum (inclusive).
type Range = (&'static str, f64, f64);

/// The ranges of the training settings a request may set ([`validate_train`]; the API
/// document declares them).
const TRAIN_RANGES: &[Range] = &[
    ("ensemble", 1.0, 16.0),
    ("epochs", 1.0, 2_000.0),
    ("batch_size", 1.0, 4_096.0),
    ("head_hidden", 1.0, 1_024.0),
    ("head_epochs", 0.0, 2_000.0),
    ("clusters", 1.0, 64.0),
    ("encoder.hidden", 1.0, 512.0),
    ("encoder.layers", 1.0, 32.0),
    ("encoder.embedding", 1.0, 512.0),
    ("contrastive.epochs", 0.0, 500.0),
    ("contrastive.batch_size", 2.0, 4_096.0),
    ("learning_rate", 1e-7, 1.0),
    ("validation_fraction", 0.0, 0.5),
];

/// The ranges of the fine-tuning settings ([`validate_finetune`]).
const FINETUNE_RANGES: &[Range] = &[
    ("epochs", 1.0, 2_000.0),
    ("batch_size", 1.0, 4_096.0),
    ("learning_rate", 1e-7, 1.0),
];

/// Fails naming the first setting of `settings` (their JSON form) outside its range.
fn check_ranges(settings: &serde_json::Value, ranges: &[Range]) -> Result<()> {
    for &(name, min, max) in ranges {
        let value = name
            .split('.')
            .try_fold(settings, |v, key| v.get(key))
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("no numeric setting {name}"))?;
        if !(min..=max).contains(&value) {
            bail!("{name} = {value} is outside its range {min}..={max}");
        }
    }
    Ok(())
}

/// Stores a trained predictor with its index; completes `job` in the same transaction and
/// activates it if asked (or if its target has no active predictor yet). Returns its id.
pub(crate) async fn register(
    pool: &PgPool,
    new: NewPredictor<'_>,
    index: &[IndexRow],
    job: Option<&JobRef>,
    activate: bool,
) -> Result<i64> {
    let mut tx = pool.begin().await?;
    let id = predictors::insert(&mut tx, &new, index).await?;
    if let Some(job) = job
        && !jobs::succeed(&mut tx, job.id, &job.worker, id).await?
    {
        bail!(
            "job {} is no longer held by {}; result discarded",
            job.id,
            job.worker
        );
    }
    tx.commit().await?;
    // A recipe predictor is always serving (the bundled one until another is activated), so a
    // new one waits to be asked for.
    let none_active = new.kind == PredictorKind::Graph
        && !predictors::active(pool)
            .await?
            .iter()
            .any(|(_, t)| t == new.target);
    if activate || none_active {
        predictors::activate(pool, id).await?;
    }
    Ok(id)
}

/// Runs a blocking closure off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// The split a train request uses: `train_size` (default 10 %) random positions by seed, and the
/// held-out rest.
fn train_split(
    population: &Population,
    request: &TrainRequest,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let n = population.measured.len();
    if n < 4 {
        bail!(
            "target {:?} has {n} measured architectures with graphs; at least 4 are needed",
            request.target
        );
    }
    let train_size = request.train_size.unwrap_or((n / 10).max(2)).min(n - 1);
    Ok(population.split(train_size, request.seed))
}

/// Trains, evaluates and registers a predictor. Returns its id.
pub async fn train(
    pool: &PgPool,
    request: &TrainRequest,
    job: Option<&JobRef>,
    trainer: &TrainerOptions,
    mut progress: ProgressFn,
) -> Result<i64> {
    let mut config = validate_train(request)?;
    config.seed = request.seed;
    if request.config.get("backend").is_none() {
        config.backend = best_backend();
    }
    let prepare_config = config.clone();
    let population =
        Population::load(pool, &request.target, move |g| prepare_config.prepare(g)).await?;
    let (train_idx, test_idx) = train_split(&population, request)?;
    let samples: Vec<TrainSample> = train_idx
        .iter()
        .map(|&i| population.sample(i, true))
        .collect();
    let set = match trainer.trainer {
        Trainer::Rust => None,
        Trainer::Torch => {
            let description = set_description(request, &train_idx, &test_idx, SetPart::Train);
            Some(set_of(pool, &population, &train_idx, config.clone(), description).await?)
        }
    };

    let started = Instant::now();
    let population = Arc::new(population);
    let (predictor, rows) = {
        let population = population.clone();
        let config = config.clone();
        let trainer = trainer.clone();
        blocking(move || {
            let predictor = match set {
                None => crate::predict::train(&samples, &config, &mut |r| progress(&r))?,
                Some(set) => torch_train(&trainer, &set, &mut progress)?,
            };
            let rows = index_rows(&predictor, &population)?;
            Ok((predictor, rows))
        })
        .await?
    };
    let train_seconds = started.elapsed().as_secs_f64();
    let scores = scores(&rows, &test_idx);
    let evaluation = serde_json::json!({
        "kendall_tau_b": scores.kendall_tau,
        "spearman": scores.spearman,
        "mae": scores.mae,
        "split": {
            "method": "random",
            "train_size": train_idx.len(),
            "test_size": test_idx.len(),
            "test": "every other measured architecture of the target",
        },
        "seed": request.seed,
        "device": match trainer.trainer {
            Trainer::Rust => format!("{:?}", config.backend).to_lowercase().into(),
            Trainer::Torch => predictor.config.provenance["device"].clone(),
        },
        "trainer": trainer.trainer,
        "train_seconds": train_seconds,
        "validation_kendall": predictor.config.provenance.get("validation_kendall"),
    });
    let name = request.name.clone().unwrap_or_else(|| {
        format!(
            "{}-{}-{}-n{}-s{}",
            request.target.benchmark,
            request.target.dataset,
            request.target.metric,
            train_idx.len(),
            request.seed
        )
    });
    save_registered(
        pool,
        predictor,
        &name,
        &request.target,
        evaluation,
        None,
        &rows,
        job,
        request.activate,
    )
    .await
}

/// Writes target and evaluation into the artifact's provenance (so a file describes itself)
/// and registers it.
#[allow(clippy::too_many_arguments)]
async fn save_registered(
    pool: &PgPool,
    mut predictor: Predictor,
    name: &str,
    target: &Target,
    evaluation: serde_json::Value,
    parent_id: Option<i64>,
    rows: &[IndexRow],
    job: Option<&JobRef>,
    activate: bool,
) -> Result<i64> {
    let provenance = &mut predictor.config.provenance;
    if !provenance.is_object() {
        *provenance = serde_json::json!({});
    }
    provenance["name"] = name.into();
    provenance["target"] = serde_json::to_value(target)?;
    provenance["evaluation"] = evaluation.clone();
    let artifact = predictor.to_bytes()?;
    let new = NewPredictor {
        name,
        kind: PredictorKind::Graph,
        target,
        artifact: &artifact,
        config: serde_json::to_value(&predictor.config)?,
        evaluation,
        parent_id,
        job_id: job.map(|j| j.id),
    };
    register(pool, new, rows, job, activate).await
}

/// Fine-tunes a registered predictor on `samples` measured architectures of a new target,
/// evaluates it on the target's other measured architectures and registers the result.
pub async fn finetune(
    pool: &PgPool,
    request: &FinetuneRequest,
    job: Option<&JobRef>,
) -> Result<i64> {
    let mut config = validate_finetune(request)?;
    config.seed = request.seed;
    let bytes = predictors::artifact(pool, request.predictor_id)
        .await?
        .with_context(|| format!("predictor {} does not exist", request.predictor_id))?;
    let parent = blocking(move || Ok(Predictor::from_bytes(&bytes, Backend::Cpu)?)).await?;
    let (features, layers) = (parent.config.features.clone(), parent.config.encoder.layers);
    let population = Population::load(pool, &request.target, move |g| {
        PreparedGraph::new(g, &features, layers)
    })
    .await?;
    let n = population.measured.len();
    if n <= request.samples {
        bail!(
            "target {:?} has {n} measured architectures with graphs; more than {} are needed",
            request.target,
            request.samples
        );
    }
    let (train_idx, test_idx) = population.split(request.samples, request.seed);
    let started = Instant::now();
    let population = Arc::new(population);
    let (predictor, rows, zero_shot) = {
        let population = population.clone();
        let train_idx = train_idx.clone();
        let test_idx = test_idx.clone();
        blocking(move || {
            let mut predictor = parent;
            let before = index_rows(&predictor, &population)?;
            let samples: Vec<TrainSample> = train_idx
                .iter()
                .map(|&i| population.sample(i, true))
                .collect();
            predictor.finetune(&samples, &config)?;
            let rows = index_rows(&predictor, &population)?;
            Ok((predictor, rows, scores(&before, &test_idx)))
        })
        .await?
    };
    let scores = scores(&rows, &test_idx);
    let evaluation = serde_json::json!({
        "kendall_tau_b": scores.kendall_tau,
        "spearman": scores.spearman,
        "mae": scores.mae,
        "before_finetune": zero_shot,
        "split": {
            "method": "random",
            "train_size": train_idx.len(),
            "test_size": test_idx.len(),
            "test": "every other measured architecture of the target",
        },
        "seed": request.seed,
        "device": "cpu",
        "train_seconds": started.elapsed().as_secs_f64(),
        "finetuned_from": request.predictor_id,
    });
    let name = request.name.clone().unwrap_or_else(|| {
        format!(
            "finetune-{}-{}-{}-n{}",
            request.predictor_id, request.target.benchmark, request.target.dataset, request.samples
        )
    });
    save_registered(
        pool,
        predictor,
        &name,
        &request.target,
        evaluation,
        Some(request.predictor_id),
        &rows,
        job,
        request.activate,
    )
    .await
}

/// Registers a predictor artifact file (target, name and evaluation from its provenance),
/// indexing the target's measured architectures. Returns its id.
pub async fn register_artifact(pool: &PgPool, path: &Path, activate: bool) -> Result<i64> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let predictor = blocking(move || Ok(Predictor::from_bytes(&bytes, Backend::Cpu)?)).await?;
    let provenance = &predictor.config.provenance;
    let target: Target = serde_json::from_value(provenance["target"].clone())
        .context("the artifact's provenance names no target")?;
    let name = provenance["name"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| {
            path.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into()
        });
    let evaluation = provenance["evaluation"].clone();
    let (features, layers) = (
        predictor.config.features.clone(),
        predictor.config.encoder.layers,
    );
    let population = Arc::new(
        Population::load(pool, &target, move |g| {
            PreparedGraph::new(g, &features, layers)
        })
        .await?,
    );
    let (predictor, rows) = {
        let population = population.clone();
        blocking(move || {
            let rows = index_rows(&predictor, &population)?;
            Ok((predictor, rows))
        })
        .await?
    };
    let evaluation = if evaluation.is_null() {
        serde_json::json!({})
    } else {
        evaluation
    };
    // Re-serialised from the loaded model: the stored artifact is what this archdb reads.
    save_registered(
        pool, predictor, &name, &target, evaluation, None, &rows, None, activate,
    )
    .await
}

/// A registered predictor's scores on every measured architecture of `target` (zero-shot when
/// the target is another family than it was trained on).
pub async fn evaluate(
    pool: &PgPool,
    predictor_id: i64,
    target: &Target,
) -> Result<serde_json::Value> {
    let bytes = predictors::artifact(pool, predictor_id)
        .await?
        .with_context(|| format!("predictor {predictor_id} does not exist"))?;
    let predictor = blocking(move || Ok(Predictor::from_bytes(&bytes, Backend::Cpu)?)).await?;
    let (features, layers) = (
        predictor.config.features.clone(),
        predictor.config.encoder.layers,
    );
    let population = Arc::new(
        Population::load(pool, target, move |g| {
            PreparedGraph::new(g, &features, layers)
        })
        .await?,
    );
    let n = population.measured.len();
    if n < 2 {
        bail!("target {target:?} has {n} measured architectures with graphs");
    }
    let rows = blocking(move || index_rows(&predictor, &population)).await?;
    let all: Vec<usize> = (0..n).collect();
    let scores = scores(&rows, &all);
    let ood: Vec<f64> = rows.iter().map(|r| r.ood_score).collect();
    Ok(serde_json::json!({
        "predictor_id": predictor_id,
        "target": target,
        "architectures": n,
        "kendall_tau_b": scores.kendall_tau,
        "spearman": scores.spearman,
        "mae": scores.mae,
        "median_ood_score": median(&ood),
    }))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Registers every `*.safetensors` artifact in `dir` (the bundled predictors) when no predictor
/// is registered yet. Returns the new ids.
pub async fn register_bundled(pool: &PgPool, dir: &Path) -> Result<Vec<i64>> {
    let any: bool = sqlx::query_scalar("select exists (select 1 from predictors)")
        .fetch_one(pool)
        .await?;
    if any || !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    let mut ids = Vec::new();
    for file in files {
        ids.push(register_artifact(pool, &file, true).await?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_params_round_trip_through_their_columns() {
        let request: TrainRequest = serde_json::from_value(serde_json::json!({
            "target": {"benchmark": "nb201", "dataset": "cifar10", "metric": "acc"},
            "train_size": 30
        }))
        .unwrap();
        let (kind, params) = JobParams::Train(request).to_columns().unwrap();
        assert_eq!(kind, "train");
        assert_eq!(params["train_size"], 30);
        assert!(matches!(
            JobParams::from_columns(&kind, &params).unwrap(),
            JobParams::Train(r) if r.train_size == Some(30)
        ));
        let error = JobParams::from_columns("sculpt", &params).unwrap_err();
        assert!(format!("{error:#}").contains("sculpt"), "{error:#}");
    }

    #[test]
    fn settings_outside_their_ranges_are_refused_at_enqueue() {
        let request = |config: serde_json::Value| -> TrainRequest {
            serde_json::from_value(serde_json::json!({
                "target": {"benchmark": "nb201", "dataset": "cifar10", "metric": "acc"},
                "config": config
            }))
            .unwrap()
        };
        assert!(validate_train(&request(serde_json::json!({}))).is_ok());
        for (config, name) in [
            (
                serde_json::json!({"epochs": 1_000_000_000_000u64}),
                "epochs",
            ),
            (serde_json::json!({"ensemble": 100_000}), "ensemble"),
            (
                serde_json::json!({"encoder": {"hidden": 1_000_000}}),
                "encoder.hidden",
            ),
            (serde_json::json!({"batch_size": 0}), "batch_size"),
        ] {
            let error = format!("{:#}", validate_train(&request(config)).unwrap_err());
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn the_settings_schema_names_every_setting_with_its_range() {
        let schema = serde_json::to_value(train_settings_schema()).unwrap();
        assert_eq!(schema["type"], serde_json::json!(["object", "null"]));
        assert_eq!(schema["additionalProperties"], false);
        let defaults = serde_json::to_value(TrainConfig::default()).unwrap();
        let names = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(names(&schema["properties"]), names(&defaults));
        let encoder = &schema["properties"]["encoder"];
        assert_eq!(encoder["additionalProperties"], false);
        assert_eq!(
            names(&encoder["properties"]),
            names(&defaults["encoder"]),
            "nested settings are objects of their own names"
        );
        assert_eq!(encoder["properties"]["hidden"]["type"], "integer");
        assert_eq!(encoder["properties"]["hidden"]["maximum"], 512);
        assert_eq!(schema["properties"]["learning_rate"]["type"], "number");
        assert_eq!(schema["properties"]["learning_rate"]["minimum"], 1e-7);
        assert_eq!(schema["properties"]["epochs"]["maximum"], 2000);
        assert_eq!(schema["properties"]["seed"]["maximum"], u64::MAX);
        assert_eq!(schema["properties"]["flops_transform"]["type"], "boolean");
        assert_eq!(
            schema["properties"]["target_scores"]["enum"],
            serde_json::json!(["z", "uniform", "logistic"])
        );
        assert_eq!(
            schema["properties"]["backend"]["oneOf"][0]["enum"],
            serde_json::json!(["cpu"])
        );
        // Every range names a numeric setting, and the schema's choices are settings.
        let request = |config: serde_json::Value| -> TrainRequest {
            serde_json::from_value(serde_json::json!({
                "target": {"benchmark": "nb201", "dataset": "cifar10", "metric": "acc"},
                "config": config
            }))
            .unwrap()
        };
        assert!(validate_train(&request(serde_json::Value::Null)).is_ok());
        for config in [
            serde_json::json!({"backend": {"cuda": 1}, "target_scores": "logistic"}),
            serde_json::json!({"backend": "cpu", "seed": u64::MAX}),
        ] {
            validate_train(&request(config.clone())).unwrap_or_else(|e| panic!("{config}: {e:#}"));
        }
        let finetune = serde_json::to_value(finetune_settings_schema()).unwrap();
        assert_eq!(
            names(&finetune["properties"]),
            names(&serde_json::to_value(FinetuneConfig::default()).unwrap())
        );
        let seed = serde_json::to_value(seed_schema()).unwrap();
        assert_eq!(
            (&seed["minimum"], &seed["maximum"]),
            (&0.into(), &u64::MAX.into())
        );
    }
}
