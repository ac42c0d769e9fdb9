//! Typed errors of the calibration engine.

use thiserror::Error;

/// Everything that can be wrong with an input or a configuration.
///
/// Indices (`row`, `class`) are 0-based sample and class indices of the input matrix.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CalibrationError {
    /// N = 0.
    #[error("no samples: at least one sample (row) is required")]
    Empty,
    /// K = 0.
    #[error("no classes: at least one class (column) is required")]
    NoClasses,
    /// A flat row-major matrix whose length is not N·K.
    #[error(
        "score matrix has {actual} values, expected N*K = {n_samples}*{n_classes} = {expected}"
    )]
    MatrixLength {
        n_samples: usize,
        n_classes: usize,
        expected: usize,
        actual: usize,
    },
    /// A `Vec<Vec<f64>>` input whose rows do not all have the length of row 0.
    #[error("row {row} has {actual} scores, expected {expected} (the length of row 0)")]
    RaggedRow {
        row: usize,
        expected: usize,
        actual: usize,
    },
    /// Number of labels differs from the number of score rows.
    #[error("{labels} labels given for {rows} score rows")]
    LabelCount { rows: usize, labels: usize },
    /// A label outside `0..K`.
    #[error("label {label} of sample {row} is out of range for K = {n_classes} classes")]
    LabelOutOfRange {
        row: usize,
        label: usize,
        n_classes: usize,
    },
    /// NaN or ±Inf in the scores.
    #[error("non-finite score {value} at sample {row}, class {class}")]
    NonFinite {
        row: usize,
        class: usize,
        value: f64,
    },
    /// A negative probability.
    #[error("negative probability {value} at sample {row}, class {class}")]
    NegativeProbability {
        row: usize,
        class: usize,
        value: f64,
    },
    /// A score outside [0, 1] given to [`SortedScores::new`](super::SortedScores::new).
    #[error("score {value} of sample {row} is outside [0, 1]")]
    ScoreOutOfRange { row: usize, value: f64 },
    /// A probability row whose sum is too far from 1 for the chosen [`RowSumPolicy`](super::RowSumPolicy).
    #[error(
        "probabilities of sample {row} sum to {sum} (|sum - 1| = {deviation:e}), more than the allowed {allowed:e}"
    )]
    RowSum {
        row: usize,
        sum: f64,
        deviation: f64,
        allowed: f64,
    },
    /// A bin count of 0 or above [`MAX_BIN_COUNT`](super::MAX_BIN_COUNT) in the configuration.
    #[error("invalid bin count {0}: bin counts must be between 1 and 100000")]
    InvalidBinCount(usize),
    /// Any other invalid configuration value.
    #[error("invalid calibration configuration: {0}")]
    InvalidConfig(String),
    /// More than [`MAX_SCORES`](super::MAX_SCORES) scores (N·K).
    #[error("{n_samples}×{n_classes} scores; at most {limit} (N·K) are accepted")]
    TooManyScores {
        n_samples: u64,
        n_classes: u64,
        limit: usize,
    },
}

/// Result alias of the calibration engine.
pub type Result<T, E = CalibrationError> = std::result::Result<T, E>;
