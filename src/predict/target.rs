//! What a predictor predicts: a benchmark figure.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The benchmark figure a predictor predicts: rows of `results` with these values (the seed-mean
/// row where a benchmark has one, else the mean over seeds), averaged per architecture.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Target {
    /// e.g. `nb201`, `nb-macro`, `lemur`.
    pub benchmark: String,
    /// e.g. `cifar10`.
    pub dataset: String,
    /// e.g. `acc`.
    pub metric: String,
    /// Training epochs of the figure (e.g. 200); null = any.
    #[serde(default)]
    pub epoch: Option<i32>,
    /// `test`, `valid`, …; null = any.
    #[serde(default)]
    pub split: Option<String>,
    /// How an architecture's rows become one value: `mean` (default; the seed-mean row where
    /// there is one) or `max` (the best run, e.g. LEMUR's best accuracy over its trials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
}

/// See [`Target::aggregate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    Mean,
    Max,
}

impl Target {
    /// NAS-Bench-201 CIFAR-10 test accuracy after 200 epochs (%), the bundled predictor's target.
    pub fn nb201_cifar10() -> Self {
        Self {
            benchmark: "nb201".into(),
            dataset: "cifar10".into(),
            metric: "acc".into(),
            epoch: Some(200),
            split: Some("test".into()),
            aggregate: None,
        }
    }
}

/// How a registered predictor answers, and so how its artifact is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PredictorKind {
    /// Conditioned on the dataset and the training recipe (gradient-boosted trees over a graph
    /// descriptor, [`crate::predict::recipe`]).
    Recipe,
    /// A benchmark figure from the architecture alone (the GENNAPE-style graph network).
    Graph,
}

impl PredictorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recipe => "recipe",
            Self::Graph => "graph",
        }
    }
}

impl TryFrom<String> for PredictorKind {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "recipe" => Ok(Self::Recipe),
            "graph" => Ok(Self::Graph),
            other => Err(format!("unknown predictor kind {other:?}")),
        }
    }
}

impl Target {
    /// What a recipe predictor is registered under: LEMUR image-classification accuracy (every
    /// dataset it covers; the dataset and recipe come with each request).
    pub fn lemur_recipe() -> Self {
        Self {
            benchmark: "lemur".into(),
            dataset: "img-classification".into(),
            metric: "acc".into(),
            epoch: None,
            split: None,
            aggregate: None,
        }
    }
}
