//! The recipe predictor trained from what the database holds: every LEMUR image-classification
//! trial row linked to a stored graph (`import lemur` + `import lemur-onnx`), each graph
//! described once, a grouped cross-validation over families for the calibration and the
//! evaluation, and registration as a `recipe` predictor. `archdb worker` runs it for
//! `train-recipe` jobs (`POST /v1/predictors/recipe`); `archdb train-recipe --lemur DIR` does the
//! same from LEMUR's files.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Result, bail, ensure};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::{JobRef, blocking, register};
use crate::db::predictors::{self, NewPredictor, PredictorKind, RecipeTrial, Target};
use crate::predict::recipe::train::{Graph, Row, TrainOptions, TrainingSet};
use crate::predict::recipe::{CompleteRecipe, DATASETS, FORMAT, GraphDescriptor, lemur};

/// Stored graphs read and described at a time (LEMUR graphs reach thousands of nodes).
const GRAPH_CHUNK: usize = 64;

/// What to train (the body of `POST /v1/predictors/recipe`, the params of a `train-recipe` job).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipeTrainRequest {
    /// Name of the predictor (default: `lemur-recipe-s{seed}`).
    #[serde(default)]
    pub name: Option<String>,
    /// Seed of the family folds and of the trees.
    #[serde(default)]
    pub seed: u32,
    /// perpetual's complexity budget: higher fits more trees and takes longer (bundled: 0.5).
    #[serde(default = "default_budget")]
    #[schema(minimum = 0.1, maximum = 2.0)]
    pub budget: f32,
    /// Folds of whole families in the cross-validation that calibrates intervals and domain
    /// thresholds and gives the held-out evaluation.
    #[serde(default = "default_folds")]
    #[schema(minimum = 2, maximum = 10)]
    pub folds: usize,
    /// Serve it when it is registered (otherwise the serving recipe predictor stays, until
    /// `POST /v1/predictors/{id}/activate`).
    #[serde(default)]
    pub activate: bool,
}

fn default_budget() -> f32 {
    TrainOptions::default().budget
}

fn default_folds() -> usize {
    TrainOptions::default().folds
}

/// Checks a request before it is queued.
pub fn validate(request: &RecipeTrainRequest) -> Result<()> {
    if !(0.1..=2.0).contains(&request.budget) {
        bail!("budget = {} is outside its range 0.1..=2", request.budget);
    }
    if !(2..=10).contains(&request.folds) {
        bail!("folds = {} is outside its range 2..=10", request.folds);
    }
    Ok(())
}

/// The training set: every LEMUR image-classification accuracy row of the six datasets linked to
/// a stored graph, one [`Graph`] per LEMUR model and dataset (its family for the folds), each
/// stored graph described once however many models and rows share it.
pub async fn training_set(pool: &PgPool) -> Result<TrainingSet> {
    let datasets: Vec<&str> = DATASETS.iter().map(|(d, _)| *d).collect();
    let trials = predictors::recipe_trials(pool, &datasets).await?;
    ensure!(
        !trials.is_empty(),
        "no LEMUR image-classification accuracy of {} is linked to a stored graph \
         (import lemur, then lemur-onnx)",
        datasets.join(", ")
    );
    let mut ids: Vec<i64> = trials.iter().map(|t| t.architecture_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut descriptors: HashMap<i64, GraphDescriptor> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(GRAPH_CHUNK) {
        let stored = predictors::graphs(pool, chunk).await?;
        let described: Vec<(i64, GraphDescriptor)> = blocking(move || {
            Ok(crate::cpu::on_pool(|| {
                stored
                    .into_par_iter()
                    .map(|(id, graph)| (id, GraphDescriptor::new(graph.as_cg())))
                    .collect()
            }))
        })
        .await?;
        descriptors.extend(described);
    }
    Ok(assemble(&trials, &descriptors))
}

/// Rows and graphs from the trial rows and the descriptors of their stored graphs.
fn assemble(trials: &[RecipeTrial], descriptors: &HashMap<i64, GraphDescriptor>) -> TrainingSet {
    let mut set = TrainingSet::default();
    let mut graph_of: HashMap<(&str, usize), usize> = HashMap::new();
    for trial in trials {
        let Some(dataset) = DATASETS.iter().position(|(d, _)| *d == trial.dataset) else {
            continue;
        };
        let Some(descriptor) = descriptors.get(&trial.architecture_id) else {
            continue;
        };
        let graph = *graph_of
            .entry((trial.nn.as_str(), dataset))
            .or_insert_with(|| {
                set.graphs.push(Graph {
                    name: trial.nn.clone(),
                    family: lemur::family(&trial.nn).to_string(),
                    dataset,
                    descriptor: descriptor.clone(),
                });
                set.graphs.len() - 1
            });
        let number = |k: &str| {
            trial
                .hyperparameters
                .get(k)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        set.rows.push(Row {
            graph,
            dataset,
            recipe: CompleteRecipe {
                epoch: trial.epoch.map_or(f64::NAN, f64::from),
                lr: number("lr"),
                momentum: number("momentum"),
                batch: number("batch"),
                dropout: number("dropout"),
                transform: trial.transform.clone().unwrap_or_default(),
            },
            accuracy: trial.value.clamp(0.0, 1.0),
        });
    }
    set
}

/// Trains a recipe predictor on what the database holds, evaluates it by grouped
/// cross-validation and registers it. Returns its id.
pub async fn train(
    pool: &PgPool,
    request: &RecipeTrainRequest,
    job: Option<&JobRef>,
) -> Result<i64> {
    validate(request)?;
    let started = Instant::now();
    let set = training_set(pool).await?;
    let mut families: Vec<&str> = set.graphs.iter().map(|g| g.family.as_str()).collect();
    families.sort_unstable();
    families.dedup();
    ensure!(
        families.len() >= 2,
        "the LEMUR rows with stored graphs come from {} famil{}; at least 2 are needed to hold \
         families out",
        families.len(),
        if families.len() == 1 { "y" } else { "ies" }
    );
    let (graphs, rows, family_count) = (set.graphs.len(), set.rows.len(), families.len());
    let options = TrainOptions {
        seed: u64::from(request.seed),
        folds: request.folds.min(family_count),
        budget: request.budget,
    };
    let predictor = blocking(move || {
        Ok(crate::cpu::on_pool(|| {
            crate::predict::recipe::train::train(&set, &options)
        })?)
    })
    .await?;
    let artifact = predictor.to_bytes()?;
    let mut evaluation = predictor.evaluation.clone();
    evaluation["train_seconds"] = started.elapsed().as_secs_f64().into();
    evaluation["seed"] = request.seed.into();
    evaluation["source"] =
        "the LEMUR image-classification rows linked to stored graphs in this database".into();
    let config = serde_json::json!({
        "format": FORMAT,
        "features": predictor.features,
        "budget": request.budget,
        "folds": options.folds,
        "graphs": graphs,
        "rows": rows,
        "families": family_count,
    });
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| format!("lemur-recipe-s{}", request.seed));
    let target = Target::lemur_recipe();
    let new = NewPredictor {
        name: &name,
        kind: PredictorKind::Recipe,
        target: &target,
        artifact: &artifact,
        config,
        evaluation,
        parent_id: None,
        job_id: job.map(|j| j.id),
    };
    register(pool, new, &[], job, request.activate).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(id: i64, nn: &str, dataset: &str, value: f64) -> RecipeTrial {
        RecipeTrial {
            architecture_id: id,
            nn: nn.into(),
            dataset: dataset.into(),
            epoch: Some(3),
            value,
            transform: Some("norm_32_flip".into()),
            hyperparameters: serde_json::json!({"lr": 0.01, "batch": "64", "transform": "x"}),
        }
    }

    #[test]
    fn graphs_are_per_model_and_dataset_and_described_once_per_stored_graph() {
        let descriptor = |nodes| GraphDescriptor {
            params: 1e6,
            macs: 1e8,
            nodes,
            edges: nodes,
            depth: nodes,
            input_size: 32.0,
            input_channels: 3.0,
            classes: 10.0,
            widest: 64.0,
            downsamplings: 2.0,
            op_shares: Vec::new(),
        };
        let descriptors = HashMap::from([(1, descriptor(10.0)), (2, descriptor(20.0))]);
        let trials = [
            trial(1, "AlexNet", "cifar-10", 0.7),
            trial(1, "AlexNet", "cifar-10", 1.2),
            // Another model with the same graph: its own entry, the same description.
            trial(1, "rag-1", "cifar-10", 0.5),
            trial(2, "AlexNet", "mnist", 0.9),
            // Not a recipe dataset, and a graph that is not stored.
            trial(2, "AlexNet", "coco", 0.4),
            trial(3, "ga-7", "cifar-10", 0.4),
        ];
        let set = assemble(&trials, &descriptors);
        let names: Vec<(&str, &str, &str, f64)> = set
            .graphs
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.family.as_str(),
                    DATASETS[g.dataset].0,
                    g.descriptor.nodes,
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("AlexNet", "AlexNet", "cifar-10", 10.0),
                ("rag-1", "rag", "cifar-10", 10.0),
                ("AlexNet", "AlexNet", "mnist", 20.0),
            ]
        );
        let graphs: Vec<usize> = set.rows.iter().map(|r| r.graph).collect();
        assert_eq!(graphs, [0, 0, 1, 2]);
        let row = &set.rows[1];
        assert_eq!(row.accuracy, 1.0, "clamped to a fraction");
        assert_eq!((row.recipe.epoch, row.recipe.lr), (3.0, 0.01));
        assert!(row.recipe.batch.is_nan(), "a non-number is missing");
        assert_eq!(row.recipe.transform, "norm_32_flip");
    }

    #[test]
    fn settings_outside_their_ranges_are_refused() {
        let request = |budget: f32, folds: usize| RecipeTrainRequest {
            name: None,
            seed: 0,
            budget,
            folds,
            activate: false,
        };
        assert!(validate(&request(0.5, 5)).is_ok());
        for (r, name) in [
            (request(0.0, 5), "budget"),
            (request(f32::NAN, 5), "budget"),
            (request(0.5, 1), "folds"),
            (request(0.5, 11), "folds"),
        ] {
            let error = format!("{:#}", validate(&r).unwrap_err());
            assert!(error.contains(name), "{error}");
        }
    }
}
