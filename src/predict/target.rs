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
