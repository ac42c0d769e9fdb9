//! Temperature scaling (Guo et al. 2017): one scalar T > 0, `p = softmax(z / T)`, fitted by
//! minimising the mean negative log-likelihood on a calibration split.
//!
//! With `β = 1/T`, `NLL(β) = mean_i [logsumexp(β z_i) − β z_{i,y_i}]` is convex in β, with
//! `NLL'(β) = mean_i [E_{softmax(β z_i)}[z_i] − z_{i,y_i}]` and
//! `NLL''(β) = mean_i Var_{softmax(β z_i)}[z_i] ≥ 0`. The fit finds the root of `NLL'` by a
//! safeguarded Newton iteration: start at β = 1; the sign of `NLL'(1)` says on which side of 1
//! the minimiser lies, giving the bracket `[1/T_max, 1]` or `[1, 1/T_min]`; take Newton steps
//! while they stay inside the bracket, try the bracket's outer bound when a step leaves it
//! there (if `NLL'` has not changed sign at the bound, the minimum is at or beyond it and the
//! bound is returned), and bisect geometrically otherwise; every evaluation shrinks the
//! bracket. Stop when the next Newton step, or the bracket, is below 1e-7 relative, or after
//! 200 iterations. Typically 4–6 evaluations, each one pass over the calibration split
//! (one `exp` per logit). Everything is deterministic (no random start, no line search).

use serde::{Deserialize, Serialize};

use super::input::softmax_into;

/// Which samples `pre` and `post` metrics are computed on when temperature scaling runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationSplit {
    /// Default: both `pre` and `post` on the held-out samples (those not used to fit T),
    /// the benchmark's protocol (fit on a random 20 %, evaluate on the other 80 %). If the
    /// held-out part is empty (fraction 1, or N = 1) all samples are used.
    #[default]
    HeldOut,
    /// Both `pre` and `post` on all N samples (T still fitted on the calibration split only).
    All,
}

/// Options of temperature scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct TemperatureScalingConfig {
    /// Fraction of the samples used to fit T, in (0, 1]; the calibration split has
    /// `clamp(round(fraction · N), 1, N)` samples. Default 0.2.
    pub calibration_fraction: f64,
    /// Seed of the deterministic shuffle (SplitMix64 + Fisher–Yates) that picks the split. Default 42.
    pub seed: u64,
    /// Smallest temperature considered, in (0, 1]. Default 0.01.
    pub min_temperature: f64,
    /// Largest temperature considered, in [1, ∞). Default 100.
    pub max_temperature: f64,
    /// Samples on which `pre` and `post` are evaluated. Default [`EvaluationSplit::HeldOut`].
    pub evaluate_on: EvaluationSplit,
}

impl Default for TemperatureScalingConfig {
    fn default() -> Self {
        Self {
            calibration_fraction: 0.2,
            seed: 42,
            min_temperature: 0.01,
            max_temperature: 100.0,
            evaluate_on: EvaluationSplit::HeldOut,
        }
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): small, fast, fully deterministic across platforms.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `0..bound` (Lemire's multiply-shift with rejection; unbiased).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(bound);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

/// Deterministic split of `0..n` into (calibration, held-out) index lists, each ascending.
///
/// A Fisher–Yates shuffle driven by [`SplitMix64`]`(seed)` permutes `0..n`; the first
/// `clamp(round(fraction · n), 1, n)` indices form the calibration split.
pub fn split_indices(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        idx.swap(i, j);
    }
    let n_cal = ((fraction * n as f64).round() as usize).clamp(1.min(n), n);
    let mut cal = idx[..n_cal].to_vec();
    let mut rest = idx[n_cal..].to_vec();
    cal.sort_unstable();
    rest.sort_unstable();
    (cal, rest)
}

/// Result of [`fit_temperature`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperatureFit {
    /// Fitted temperature.
    pub temperature: f64,
    /// Objective (mean NLL from the log-scores) at T = 1.
    pub nll_at_one: f64,
    /// Objective at the fitted T.
    pub nll_at_fit: f64,
    /// Objective evaluations used.
    pub evaluations: usize,
}

/// Log-scores shifted by their row maximum, `d = z − max z` (≤ 0), with `d_y` per row: computed
/// once per fit instead of once per objective evaluation.
struct Shifted {
    d: Vec<f64>,
    dy: Vec<f64>,
}

impl Shifted {
    fn new(z: &[f64], k: usize, labels: &[usize]) -> Self {
        let mut d = Vec::with_capacity(z.len());
        let mut dy = Vec::with_capacity(labels.len());
        for (row, &y) in z.chunks_exact(k).zip(labels) {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            d.extend(row.iter().map(|&v| v - m));
            dy.push(row[y] - m);
        }
        Self { d, dy }
    }
}

/// Mean NLL and its first two derivatives with respect to β at `beta`, in one pass over the
/// shifted logits (one `exp` each). The second derivative (only used for the Newton step, not for the
/// convergence test) comes from the raw second moment, `E[d²] − E[d]²`, with `d = z − max z`.
fn objective(z: &Shifted, k: usize, beta: f64) -> (f64, f64, f64) {
    let (mut f, mut g, mut h) = (0.0, 0.0, 0.0);
    for (row, &zy) in z.d.chunks_exact(k).zip(&z.dy) {
        let (mut s, mut s1, mut s2) = (0.0, 0.0, 0.0);
        for &d in row {
            let w = super::fastmath::exp(beta * d);
            s += w;
            s1 += w * d;
            s2 += w * d * d;
        }
        let mean = s1 / s; // E[z - m]
        let var = (s2 / s - mean * mean).max(0.0);
        f += s.ln() - beta * zy; // logsumexp(β z) − β z_y, shifted by β m on both terms
        g += mean - zy;
        h += var;
    }
    let n = z.dy.len() as f64;
    (f / n, g / n, h / n)
}

/// Fit T on row-major log-scores `z` (N×K) and labels by minimising the mean NLL.
pub fn fit_temperature(
    z: &[f64],
    n_classes: usize,
    labels: &[usize],
    min_temperature: f64,
    max_temperature: f64,
) -> TemperatureFit {
    const STEP_TOL: f64 = 1e-7;
    let mut evals = 0usize;
    let shifted = Shifted::new(z, n_classes, labels);
    let mut eval = |beta: f64| {
        evals += 1;
        objective(&shifted, n_classes, beta)
    };
    let (beta_min, beta_max) = (1.0 / max_temperature, 1.0 / min_temperature);
    let (f1, g1, h1) = eval(1.0);
    let mut best = (1.0, f1);
    if g1 != 0.0 && h1 > 0.0 {
        // bracket [lo, hi] around the root of g; a bound is "checked" once g's sign there is known
        let (mut lo, mut hi) = (beta_min, beta_max);
        let (mut lo_checked, mut hi_checked) = (false, false);
        if g1 > 0.0 {
            (hi, hi_checked) = (1.0, true);
        } else {
            (lo, lo_checked) = (1.0, true);
        }
        let (mut x, mut g, mut h) = (1.0, g1, h1);
        let mut prev_step = 0.0f64;
        for _ in 0..200 {
            let newton = if h > 0.0 { x - g / h } else { f64::NAN };
            if h > 0.0 && (g / h).abs() <= STEP_TOL * x {
                break; // converged: the next Newton step would be negligible
            }
            let step = newton - x;
            // Newton steps that do not shrink (the minimum far away, or at infinity for
            // separable data) towards an unchecked bound: look at the bound itself
            let stalling = step * prev_step > 0.0 && step.abs() > 0.5 * prev_step.abs();
            let next = if stalling && step < 0.0 && !lo_checked {
                lo
            } else if stalling && step > 0.0 && !hi_checked {
                hi
            } else if newton > lo && newton < hi {
                newton
            } else if newton <= lo && !lo_checked {
                lo // try the bound itself: the minimum may lie at or beyond it
            } else if newton >= hi && !hi_checked {
                hi
            } else {
                (lo * hi).sqrt()
            };
            let (fx, gx, hx) = eval(next);
            if fx < best.1 {
                best = (next, fx);
            }
            if next == beta_min && gx >= 0.0 || next == beta_max && gx <= 0.0 {
                break; // minimum at the bound (or beyond it)
            }
            prev_step = next - x;
            (x, g, h) = (next, gx, hx);
            if g == 0.0 {
                break;
            }
            if g > 0.0 {
                (hi, hi_checked) = (x, true);
            } else {
                (lo, lo_checked) = (x, true);
            }
            if lo_checked && hi_checked && hi - lo <= STEP_TOL * x {
                break;
            }
        }
    }
    // the objective is convex, so the root of g is the minimiser; the best evaluated point is
    // returned (it is the last one unless rounding made a final step slightly worse)
    let (beta, f) = best;
    TemperatureFit {
        temperature: 1.0 / beta,
        nll_at_one: f1,
        nll_at_fit: f,
        evaluations: evals,
    }
}

/// Row-major `softmax(z / temperature)`.
pub fn apply_temperature(z: &[f64], n_classes: usize, temperature: f64) -> Vec<f64> {
    let mut out = vec![0.0; z.len()];
    let inv = 1.0 / temperature;
    for (zr, pr) in z
        .chunks_exact(n_classes)
        .zip(out.chunks_exact_mut(n_classes))
    {
        softmax_into(zr, inv, pr);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_and_partitions() {
        let (a, b) = split_indices(1000, 0.2, 42);
        assert_eq!(a.len(), 200);
        assert_eq!(b.len(), 800);
        let (a2, b2) = split_indices(1000, 0.2, 42);
        assert_eq!((a.clone(), b.clone()), (a2, b2));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let (c, _) = split_indices(1000, 0.2, 43);
        assert_ne!(a, c);
        assert_eq!(split_indices(1, 0.2, 1), (vec![0], vec![]));
        assert_eq!(split_indices(3, 1.0, 1).1, Vec::<usize>::new());
    }

    #[test]
    fn recovers_known_temperature() {
        // logits z; labels drawn from softmax(z / 2) => the NLL optimum is near T = 2
        let mut rng = SplitMix64::new(7);
        let (n, k) = (20_000, 5);
        let mut z = Vec::with_capacity(n * k);
        let mut labels = Vec::with_capacity(n);
        let mut p = vec![0.0; k];
        for _ in 0..n {
            let row: Vec<f64> = (0..k)
                .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 8.0)
                .collect();
            softmax_into(&row, 0.5, &mut p);
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let mut acc = 0.0;
            let mut y = k - 1;
            for (j, &pj) in p.iter().enumerate() {
                acc += pj;
                if u < acc {
                    y = j;
                    break;
                }
            }
            labels.push(y);
            z.extend(row);
        }
        let fit = fit_temperature(&z, k, &labels, 0.01, 100.0);
        assert!((fit.temperature - 2.0).abs() < 0.1, "{fit:?}");
        assert!(fit.nll_at_fit <= fit.nll_at_one);
        assert!(fit.evaluations < 30, "{fit:?}");
    }

    #[test]
    fn separable_data_hits_the_bound() {
        let z = vec![2.0, 0.0, 0.0, 2.0];
        let fit = fit_temperature(&z, 2, &[0, 1], 0.01, 100.0);
        assert!((fit.temperature - 0.01).abs() < 1e-12, "{fit:?}");
        let constant = vec![1.0, 1.0, 1.0, 1.0];
        let fit = fit_temperature(&constant, 2, &[0, 1], 0.01, 100.0);
        assert_eq!(fit.temperature, 1.0);
    }
}
