//! A target's measured architectures with their featurised graphs, their random split, and the
//! training-set files other trainers read.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::{TrainRequest, blocking, train_split, validate_train};
use crate::db::predictors::{self, IndexRow, Measured, Target};
use crate::graph::StoredGraph;
use crate::predict::export;
use crate::predict::{
    CgGraphRef, PredictError, Predictor, PreparedGraph, TrainConfig, TrainSample,
};
use crate::stats::Scores;

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

/// Featurises graphs on the application's CPU pool.
fn prepare_all(
    ids: &[i64],
    stored: &HashMap<i64, StoredGraph>,
    prepare: &(dyn Fn(CgGraphRef<'_>) -> Result<PreparedGraph, PredictError> + Sync),
) -> Result<Vec<Arc<PreparedGraph>>> {
    crate::cpu::on_pool(|| {
        ids.par_iter()
            .map(|id| {
                prepare(stored[id].as_cg())
                    .map(Arc::new)
                    .with_context(|| format!("architecture {id}"))
            })
            .collect()
    })
}

/// Predictions of a predictor for a whole population: its index rows (in population order).
pub(super) fn index_rows(predictor: &Predictor, population: &Population) -> Result<Vec<IndexRow>> {
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
pub(super) fn scores(rows: &[IndexRow], test: &[usize]) -> Scores {
    let predicted: Vec<f64> = test.iter().map(|&i| rows[i].accuracy).collect();
    let truth: Vec<f64> = test.iter().map(|&i| rows[i].measured).collect();
    Scores::compute(&predicted, &truth)
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
pub(super) fn set_description(
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
pub(super) async fn set_of(
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
