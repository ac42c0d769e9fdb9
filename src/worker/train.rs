//! Training, fine-tuning and registering predictors against the database: read a target's
//! measured architectures, split them by seed, train (or fine-tune), evaluate on every held-out
//! architecture, and store the artifact, its evaluation and its index in one transaction.
//! `archdb worker` runs these for queued jobs, `archdb train` in the foreground, and the first
//! `archdb serve` registers the bundled predictor with [`register_artifact`].

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::db::predictors::{self, IndexRow, Measured, NewPredictor, Target};
use crate::db::{architectures::StoredGraph, jobs};
use crate::predict::export;
use crate::predict::{
    Backend, CgGraphRef, EpochReport, FinetuneConfig, PredictError, Predictor, PreparedGraph,
    TrainConfig, TrainSample,
};
use crate::stats::Scores;

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
    #[schema(minimum = 2)]
    pub train_size: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    /// Overrides of the training settings (`TrainConfig` fields, e.g. `{"epochs": 50,
    /// "ensemble": 1, "contrastive": {"epochs": 0}}`); unknown fields are an error.
    #[serde(default)]
    #[schema(value_type = Object)]
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
    #[schema(minimum = 2)]
    pub samples: usize,
    #[serde(default)]
    pub seed: u64,
    /// Overrides of `FinetuneConfig` (epochs, learning_rate, tune_readout, recalibrate, …).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    #[serde(default)]
    pub activate: bool,
}

fn default_shots() -> usize {
    50
}

/// The job a run belongs to, so that registering it also completes the job (only if this
/// worker still holds it).
#[derive(Debug, Clone)]
pub struct JobRef {
    pub id: i64,
    pub worker: String,
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

/// Which implementation trains predictors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trainer {
    /// archdb's own (candle; CUDA only in a `cuda` build).
    Rust,
    /// python/archdb_torch as a child process (PyTorch; CUDA when PyTorch sees a GPU).
    Torch,
}

/// How training runs (`archdb worker` and `archdb train` flags).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainerOptions {
    #[arg(long, env = "ARCHDB_TRAINER", value_enum, default_value = "rust")]
    pub trainer: Trainer,
    /// Python interpreter with torch, numpy and safetensors, for `--trainer torch`.
    #[arg(long, env = "ARCHDB_TORCH_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// Directory that holds the `archdb_torch` package (the repository's `python/`).
    #[arg(long, env = "ARCHDB_TORCH_PACKAGE", default_value = "python")]
    pub torch_package: PathBuf,
}

impl Default for TrainerOptions {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            trainer: Trainer::Rust,
            python: "python3".into(),
            torch_package: "python".into(),
        }
    }
}

/// Trains with `python -m archdb_torch train` on a training-set file: its JSON progress lines
/// go to `progress` (returning false kills the trainer), its artifact is loaded as archdb's own.
fn torch_train(
    options: &TrainerOptions,
    set: &[u8],
    progress: &mut ProgressFn,
) -> Result<Predictor> {
    let dir = std::env::temp_dir().join(format!(
        "archdb-torch-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let outcome = (|| {
        let (set_path, out, log) = (
            dir.join("set.safetensors"),
            dir.join("model.safetensors"),
            dir.join("stderr.log"),
        );
        std::fs::write(&set_path, set)?;
        let mut child = Command::new(&options.python)
            .args(["-m", "archdb_torch", "train", "--set"])
            .arg(&set_path)
            .arg("--out")
            .arg(&out)
            .env("PYTHONPATH", &options.torch_package)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", options.python.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        for line in BufReader::new(stdout).lines() {
            // Progress lines have a stage; the closing summary line and anything else do not.
            let Ok(line) = serde_json::from_str::<serde_json::Value>(&line?) else {
                continue;
            };
            if line.get("stage").is_none() {
                continue;
            }
            let report = match serde_json::from_value::<EpochReport>(line) {
                Ok(report) => report,
                Err(e) => {
                    child.kill()?;
                    child.wait()?;
                    bail!("the PyTorch trainer printed a malformed progress line: {e}");
                }
            };
            if !progress(&report) {
                child.kill()?;
                child.wait()?;
                return Err(PredictError::Cancelled.into());
            }
        }
        let status = child.wait()?;
        if !status.success() {
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = stderr.lines().collect();
            bail!(
                "the PyTorch trainer failed ({status}):\n{}",
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
        Predictor::load(&out, Backend::Cpu).context("loading the PyTorch-trained artifact")
    })();
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// Checks a train request before it is queued (so the API can answer 422 at once).
pub fn validate_train(request: &TrainRequest) -> Result<TrainConfig> {
    if request.train_size.is_some_and(|n| n < 2) {
        bail!("train_size must be at least 2");
    }
    with_overrides(&TrainConfig::default(), &request.config)
}

/// Checks a fine-tune request before it is queued.
pub fn validate_finetune(request: &FinetuneRequest) -> Result<FinetuneConfig> {
    if request.samples < 2 {
        bail!("samples must be at least 2");
    }
    with_overrides(&FinetuneConfig::default(), &request.config)
}

/// Measured architectures of a target with their featurised graphs.
pub struct Population {
    pub measured: Vec<Measured>,
    pub graphs: Vec<Arc<PreparedGraph>>,
}

impl Population {
    /// Every measured architecture of `target` that has a stored graph, featurised by `prepare`
    /// on every core.
    pub async fn load(
        pool: &PgPool,
        target: &Target,
        prepare: impl Fn(CgGraphRef<'_>) -> Result<PreparedGraph, PredictError> + Send + Sync + 'static,
    ) -> Result<Self> {
        let measured = predictors::measured(pool, target).await?;
        let mut stored: HashMap<i64, StoredGraph> = HashMap::new();
        let ids: Vec<i64> = measured.iter().map(|m| m.architecture_id).collect();
        for chunk in ids.chunks(2_000) {
            stored.extend(predictors::graphs(pool, chunk).await?);
        }
        let measured: Vec<Measured> = measured
            .into_iter()
            .filter(|m| stored.contains_key(&m.architecture_id))
            .collect();
        let order: Vec<i64> = measured.iter().map(|m| m.architecture_id).collect();
        let graphs =
            tokio::task::spawn_blocking(move || prepare_all(&order, &stored, &prepare)).await??;
        Ok(Self { measured, graphs })
    }

    /// A random split by `seed`: `train_size` positions, then all the others.
    pub fn split(&self, train_size: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let mut order: Vec<usize> = (0..self.measured.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let test = order.split_off(train_size.min(order.len()));
        (order, test)
    }

    /// Position `i` as a training sample (with its value when `labelled`).
    pub fn sample(&self, i: usize, labelled: bool) -> TrainSample {
        TrainSample {
            graph: self.graphs[i].clone(),
            accuracy: labelled.then_some(self.measured[i].value),
        }
    }
}

/// Featurises graphs on every core.
fn prepare_all(
    ids: &[i64],
    stored: &HashMap<i64, StoredGraph>,
    prepare: &(dyn Fn(CgGraphRef<'_>) -> Result<PreparedGraph, PredictError> + Sync),
) -> Result<Vec<Arc<PreparedGraph>>> {
    let threads = crate::predict::model::default_threads();
    let per_thread = ids.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(per_thread)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|id| {
                            prepare(stored[id].as_cg())
                                .map(Arc::new)
                                .with_context(|| format!("architecture {id}"))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for h in handles {
            out.extend(h.join().expect("featurising thread panicked")?);
        }
        Ok(out)
    })
}

/// Predictions of a predictor for a whole population: its index rows (in population order).
fn index_rows(predictor: &Predictor, population: &Population) -> Result<Vec<IndexRow>> {
    let graphs: Vec<&PreparedGraph> = population.graphs.iter().map(|g| &**g).collect();
    let predictions = predictor.predict_prepared(&graphs)?;
    Ok(population
        .measured
        .iter()
        .zip(predictions)
        .map(|(m, p)| IndexRow {
            architecture_id: m.architecture_id,
            measured: m.value,
            accuracy: p.accuracy,
            std: p.std,
            ood_score: p.ood_score,
            membership_entropy: p.membership_entropy,
            embedding: p.embedding,
        })
        .collect())
}

/// Scores of the index rows at `test` positions.
fn scores(rows: &[IndexRow], test: &[usize]) -> Scores {
    let predicted: Vec<f64> = test.iter().map(|&i| rows[i].accuracy).collect();
    let truth: Vec<f64> = test.iter().map(|&i| rows[i].measured).collect();
    Scores::compute(&predicted, &truth)
}

/// Stores a trained predictor with its index; completes `job` in the same transaction and
/// activates it if asked (or if its target has no active predictor yet). Returns its id.
async fn register(
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
    let none_active = !predictors::active(pool)
        .await?
        .iter()
        .any(|(_, t)| t == new.target);
    if activate || none_active {
        predictors::activate(pool, id).await?;
    }
    Ok(id)
}

/// Runs a blocking closure off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
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

/// Which side of a train request's split a training-set file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetPart {
    /// The training graphs (what `archdb train` trains on).
    Train,
    /// The held-out graphs (what its evaluation scores), labelled, for predictions only.
    Test,
}

/// The training-set file (`crate::predict::export`) of `request`'s split: the same graphs,
/// split and settings `archdb train` would use, per node, for another trainer.
pub async fn export_set(pool: &PgPool, request: &TrainRequest, part: SetPart) -> Result<Vec<u8>> {
    let mut config = validate_train(request)?;
    config.seed = request.seed;
    let prepare_config = config.clone();
    let population =
        Population::load(pool, &request.target, move |g| prepare_config.prepare(g)).await?;
    let (train_idx, test_idx) = train_split(&population, request)?;
    let positions = match part {
        SetPart::Train => &train_idx,
        SetPart::Test => &test_idx,
    };
    let description = set_description(request, &train_idx, &test_idx, part);
    set_of(pool, &population, positions, config, description).await
}

/// What a training-set file of a train request's split holds (its `target` metadata).
fn set_description(
    request: &TrainRequest,
    train_idx: &[usize],
    test_idx: &[usize],
    part: SetPart,
) -> serde_json::Value {
    serde_json::json!({
        "target": request.target,
        "split": {
            "method": "random",
            "seed": request.seed,
            "train_size": train_idx.len(),
            "test_size": test_idx.len(),
            "part": part,
        },
    })
}

/// The training-set file of the architectures at `positions` of a population (their stored
/// graphs read again: the population keeps only the featurised ones).
async fn set_of(
    pool: &PgPool,
    population: &Population,
    positions: &[usize],
    config: TrainConfig,
    description: serde_json::Value,
) -> Result<Vec<u8>> {
    let values: Vec<(i64, f64)> = positions
        .iter()
        .map(|&i| {
            let m = &population.measured[i];
            (m.architecture_id, m.value)
        })
        .collect();
    let ids: Vec<i64> = values.iter().map(|&(id, _)| id).collect();
    let mut stored: HashMap<i64, StoredGraph> = HashMap::new();
    for chunk in ids.chunks(2_000) {
        stored.extend(predictors::graphs(pool, chunk).await?);
    }
    blocking(move || {
        let graphs = values
            .iter()
            .map(|&(id, value)| {
                Ok(export::SetGraph {
                    id,
                    graph: stored
                        .get(&id)
                        .with_context(|| format!("architecture {id} lost its graph"))?
                        .as_cg(),
                    accuracy: Some(value),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(export::training_set(&graphs, &config, &description)?)
    })
    .await
}

/// A predictor's predictions for the graphs of a training-set file (looked up by architecture
/// id), with their scores against the set's accuracies when every graph is labelled.
pub async fn predict_set(
    pool: &PgPool,
    predictor: Predictor,
    set: &[u8],
) -> Result<serde_json::Value> {
    let (ids, accuracy) = export::set_ids(set)?;
    let mut stored = predictors::graphs(pool, &ids).await?;
    let graphs = ids
        .iter()
        .map(|id| {
            stored
                .remove(id)
                .with_context(|| format!("architecture {id} has no stored graph"))
        })
        .collect::<Result<Vec<_>>>()?;
    blocking(move || {
        let refs: Vec<CgGraphRef> = graphs.iter().map(StoredGraph::as_cg).collect();
        let predictions = predictor.predict(&refs)?;
        let scores = accuracy.iter().all(|a| a.is_finite()).then(|| {
            let predicted: Vec<f64> = predictions.iter().map(|p| p.accuracy).collect();
            Scores::compute(&predicted, &accuracy)
        });
        Ok(serde_json::json!({
            "architecture_ids": ids,
            "predictions": predictions,
            "scores": scores,
        }))
    })
    .await
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
            let mut predictor = match set {
                None => crate::predict::train(&samples, &config, &mut |r| progress(&r))?,
                Some(set) => torch_train(&trainer, &set, &mut progress)?,
            };
            // Rows are predicted after training; their timing is not training time.
            predictor.threads = crate::predict::model::default_threads();
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
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::predict::Stage;

    /// A stand-in for the Python interpreter: a shell script with `body`.
    fn fake_python(name: &str, body: &str) -> TrainerOptions {
        let dir = std::env::temp_dir().join(format!("archdb-fake-python-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TrainerOptions {
            trainer: Trainer::Torch,
            python: path,
            torch_package: dir,
        }
    }

    #[test]
    fn torch_progress_is_forwarded_and_cancels_the_trainer() {
        let options = fake_python(
            "cancelled",
            r#"echo 'not progress'
echo '{"member": 1, "stage": "Regression", "epoch": 4, "loss": 0.5, "validation_kendall": 0.7, "seconds": 0.25}'
exec sleep 60"#,
        );
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut progress: ProgressFn = {
            let seen = seen.clone();
            Box::new(move |r| {
                seen.lock().unwrap().push(r.clone());
                false
            })
        };
        let started = Instant::now();
        let Err(error) = torch_train(&options, b"set", &mut progress) else {
            panic!("a cancelled training succeeded");
        };
        assert!(matches!(
            error.downcast_ref::<PredictError>(),
            Some(PredictError::Cancelled)
        ));
        assert!(
            started.elapsed().as_secs() < 30,
            "the trainer was not killed"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let r = &seen[0];
        assert_eq!(
            (r.member, r.stage, r.epoch, r.validation_kendall),
            (1, Stage::Regression, 4, Some(0.7))
        );
    }

    #[test]
    fn a_failing_torch_trainer_reports_its_stderr() {
        let options = fake_python(
            "failing",
            "echo 'ValueError: no labelled graphs' >&2; exit 3",
        );
        let mut progress: ProgressFn = Box::new(|_| true);
        let Err(error) = torch_train(&options, b"set", &mut progress) else {
            panic!("a failing trainer succeeded");
        };
        let message = format!("{error:#}");
        assert!(
            message.contains("failed") && message.contains("no labelled graphs"),
            "{message}"
        );
    }
}
