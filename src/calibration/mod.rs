//! Calibration metrics of a classifier's predictions, before and after temperature scaling.
//!
//! Pure Rust (std + serde + thiserror; report types also derive `utoipa::ToSchema` for the API docs). Entry point: [`evaluate`] on validated
//! [`Predictions`] with a [`CalibrationConfig`]; the result, [`CalibrationReport`],
//! serialises to
//!
//! ```json
//! {"pre": {"ece": {"5": …, "10": …}, "ece_em": {…}, "cwce": {…}, "cwce_em": {…},
//!          "mce": {…}, "rmsce": {…}, "ksce": …, "kdece": …, "mmce": …,
//!          "nll": …, "brier": …, "accuracy": …},
//!  "post": {…same…}, "temperature": 1.7, "reliability": {…}}
//! ```
//!
//! Definitions, binning conventions, tie / empty-bin handling and the temperature-scaling
//! algorithm are documented in `docs/calibration.md`, and on the items of the submodules.

mod binning;
mod error;
mod fastmath;
mod input;
mod kde;
mod metrics;
mod reliability;
mod temperature;

pub mod analysis;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use binning::{BinRule, BinStats, CalibrationErrors, SortedScores};
pub use error::{CalibrationError, Result};
pub use input::{
    DEFAULT_MAX_RENORMALIZE_DEVIATION, LOG_FLOOR, MAX_SCORES, Predictions, ROW_SUM_TOLERANCE,
    RowSumPolicy, ScoreKind, ScoreMatrix, check_size,
};
pub use kde::kde_ece;
pub use metrics::{BinMap, BrierScaling, MetricSet, ks_error, mmce};
pub use reliability::{Reliability, ReliabilityBin, reliability_bins};
pub use temperature::{
    EvaluationSplit, SplitMix64, TemperatureFit, TemperatureScalingConfig, apply_temperature,
    fit_temperature, split_indices,
};

use input::softmax_into;
use metrics::{MetricInput, MetricOptions, Workspace, nll_term};

/// The bin counts of the ICLR'24 calibration benchmark.
pub const DEFAULT_BIN_COUNTS: [usize; 9] = [5, 10, 15, 20, 25, 50, 100, 200, 500];

/// Largest accepted bin count (each bin count allocates its edges and is walked per class).
pub const MAX_BIN_COUNT: usize = 100_000;

/// What to compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CalibrationConfig {
    /// Bin counts for the bin-based metrics (deduplicated, each in `1..=MAX_BIN_COUNT`).
    /// Default [`DEFAULT_BIN_COUNTS`].
    pub bin_counts: Vec<usize>,
    /// Equal-width bin rule for `ece`, `cwce`, `mce`, `rmsce` and the reliability data.
    pub bin_rule: BinRule,
    /// Number of equal-width bins of the reliability data. Default 15.
    pub reliability_bins: usize,
    /// Brier scaling. Default [`BrierScaling::MeanOverClasses`].
    pub brier_scaling: BrierScaling,
    /// Width of MMCE's Laplacian kernel. Default 0.4.
    pub mmce_kernel_width: f64,
    /// Temperature scaling; `None` computes only `pre` (on all samples). Default: enabled.
    pub temperature_scaling: Option<TemperatureScalingConfig>,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            bin_counts: DEFAULT_BIN_COUNTS.to_vec(),
            bin_rule: BinRule::default(),
            reliability_bins: 15,
            brier_scaling: BrierScaling::default(),
            mmce_kernel_width: 0.4,
            temperature_scaling: Some(TemperatureScalingConfig::default()),
        }
    }
}

impl CalibrationConfig {
    /// Checks every option; [`evaluate`] calls this first.
    pub fn validate(&self) -> Result<()> {
        if self.bin_counts.is_empty() {
            return Err(CalibrationError::InvalidConfig(
                "bin_counts must not be empty".into(),
            ));
        }
        let bad = |b: usize| b == 0 || b > MAX_BIN_COUNT;
        if let Some(&b) = self.bin_counts.iter().find(|&&b| bad(b)) {
            return Err(CalibrationError::InvalidBinCount(b));
        }
        if bad(self.reliability_bins) {
            return Err(CalibrationError::InvalidBinCount(self.reliability_bins));
        }
        if !(self.mmce_kernel_width > 0.0 && self.mmce_kernel_width.is_finite()) {
            return Err(CalibrationError::InvalidConfig(format!(
                "mmce_kernel_width must be positive and finite, got {}",
                self.mmce_kernel_width
            )));
        }
        if let Some(ts) = &self.temperature_scaling {
            if !(ts.calibration_fraction > 0.0 && ts.calibration_fraction <= 1.0) {
                return Err(CalibrationError::InvalidConfig(format!(
                    "calibration_fraction must be in (0, 1], got {}",
                    ts.calibration_fraction
                )));
            }
            let (lo, hi) = (ts.min_temperature, ts.max_temperature);
            if !(lo > 0.0 && lo <= 1.0 && hi >= 1.0 && hi.is_finite()) {
                return Err(CalibrationError::InvalidConfig(format!(
                    "temperature bounds must satisfy 0 < min_temperature <= 1 <= max_temperature < inf, got [{lo}, {hi}]"
                )));
            }
        }
        Ok(())
    }
}

/// Metrics before and after temperature scaling plus reliability-diagram data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CalibrationReport {
    /// Metrics of the given predictions.
    pub pre: MetricSet,
    /// Metrics after temperature scaling (absent when it is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<MetricSet>,
    /// Fitted temperature (absent when temperature scaling is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Reliability-diagram data.
    pub reliability: Reliability,
}

/// Computes every metric (and, if configured, temperature scaling and every metric again).
///
/// * Without temperature scaling, `pre` is computed on all N samples.
/// * With it, the samples are split by a seeded shuffle into a calibration part
///   (`calibration_fraction`) on which T is fitted and a held-out part; `pre` and `post`
///   are both computed on [`TemperatureScalingConfig::evaluate_on`] (default: the held-out
///   part), so that they describe the same samples.
/// * The predicted class of each sample is taken from the given probabilities and kept after
///   scaling, so `post.accuracy == pre.accuracy` always.
/// * T = 1 is a candidate: the fitted T is kept only if the NLL on the calibration split
///   (as reported in `nll`) does not increase; otherwise T = 1 and `post` equals `pre`.
pub fn evaluate(
    predictions: &Predictions,
    config: &CalibrationConfig,
) -> Result<CalibrationReport> {
    config.validate()?;
    let mut bins = config.bin_counts.clone();
    bins.sort_unstable();
    bins.dedup();
    let opts = MetricOptions {
        bin_counts: &bins,
        rule: config.bin_rule,
        brier: config.brier_scaling,
        mmce_width: config.mmce_kernel_width,
    };
    let k = predictions.n_classes();
    let n = predictions.n_samples();
    let labels = predictions.labels();
    let probs = predictions.probabilities();
    let mut ws = Workspace::default();
    let reliability =
        |top: &SortedScores| reliability_bins(top, config.bin_rule, config.reliability_bins);

    let Some(ts) = &config.temperature_scaling else {
        let predicted = predictions.predicted_classes();
        let mut fill = |r: usize, out: &mut [f64]| out.copy_from_slice(&probs[r * k..(r + 1) * k]);
        let mut input = MetricInput {
            n_classes: k,
            labels,
            predicted: &predicted,
            fill_row: &mut fill,
        };
        let (pre, top) = metrics::compute(&mut input, &opts, &mut ws);
        return Ok(CalibrationReport {
            pre,
            post: None,
            temperature: None,
            reliability: Reliability {
                n_bins: config.reliability_bins,
                bin_rule: config.bin_rule,
                pre: reliability(&top),
                post: None,
            },
        });
    };

    let (cal, held_out) = split_indices(n, ts.calibration_fraction, ts.seed);
    // logit-scale scores of sample i: the logits, or ln(max(p, LOG_FLOOR)) for probabilities
    let log_row = |i: usize, out: &mut [f64]| match predictions.logits() {
        Some(z) => out.copy_from_slice(&z[i * k..(i + 1) * k]),
        None => {
            for (o, &p) in out.iter_mut().zip(&probs[i * k..(i + 1) * k]) {
                *o = fastmath::ln(p.max(LOG_FLOOR));
            }
        }
    };

    // fit on the calibration split
    let mut z_cal = vec![0.0; cal.len() * k];
    for (&i, out) in cal.iter().zip(z_cal.chunks_exact_mut(k)) {
        log_row(i, out);
    }
    let y_cal: Vec<usize> = cal.iter().map(|&i| labels[i]).collect();
    let fit = fit_temperature(&z_cal, k, &y_cal, ts.min_temperature, ts.max_temperature);
    let mut temperature = fit.temperature;
    if temperature != 1.0 {
        // T = 1 is a candidate: keep the fitted T only if the NLL on the calibration split,
        // computed exactly as reported, does not increase
        let before: f64 = cal
            .iter()
            .map(|&i| nll_term(probs[i * k + labels[i]]))
            .sum();
        let mut row = vec![0.0; k];
        let after: f64 = z_cal
            .chunks_exact(k)
            .zip(&y_cal)
            .map(|(z, &y)| {
                softmax_into(z, 1.0 / temperature, &mut row);
                nll_term(row[y])
            })
            .sum();
        if after > before {
            temperature = 1.0;
        }
    }
    drop(z_cal);

    // evaluation samples: the held-out split, or all samples
    let eval_rows: Option<&[usize]> = match ts.evaluate_on {
        EvaluationSplit::HeldOut if !held_out.is_empty() => Some(&held_out),
        _ => None,
    };
    let n_eval = eval_rows.map_or(n, <[usize]>::len);
    let sample = |r: usize| eval_rows.map_or(r, |rows| rows[r]);
    let y_eval: Vec<usize> = (0..n_eval).map(|r| labels[sample(r)]).collect();
    // predicted classes of the evaluated samples only
    let pred_eval: Vec<usize> = (0..n_eval)
        .map(|r| input::argmax(&probs[sample(r) * k..(sample(r) + 1) * k]))
        .collect();
    let mut fill_pre = |r: usize, out: &mut [f64]| {
        let i = sample(r);
        out.copy_from_slice(&probs[i * k..(i + 1) * k]);
    };
    let mut pre_input = MetricInput {
        n_classes: k,
        labels: &y_eval,
        predicted: &pred_eval,
        fill_row: &mut fill_pre,
    };
    let (pre, top_pre) = metrics::compute(&mut pre_input, &opts, &mut ws);
    let (post, top_post) = if temperature == 1.0 {
        (pre.clone(), top_pre.clone())
    } else {
        // the scaled probabilities go straight into the metric pass, row by row
        let inv = 1.0 / temperature;
        let mut z = vec![0.0; k];
        let mut fill_post = |r: usize, out: &mut [f64]| {
            let i = sample(r);
            match predictions.logits() {
                Some(logits) => softmax_into(&logits[i * k..(i + 1) * k], inv, out),
                None => {
                    log_row(i, &mut z);
                    softmax_into(&z, inv, out);
                }
            }
        };
        let mut post_input = MetricInput {
            n_classes: k,
            labels: &y_eval,
            predicted: &pred_eval,
            fill_row: &mut fill_post,
        };
        metrics::compute(&mut post_input, &opts, &mut ws)
    };
    Ok(CalibrationReport {
        pre,
        post: Some(post),
        temperature: Some(temperature),
        reliability: Reliability {
            n_bins: config.reliability_bins,
            bin_rule: config.bin_rule,
            pre: reliability(&top_pre),
            post: Some(reliability(&top_post)),
        },
    })
}
