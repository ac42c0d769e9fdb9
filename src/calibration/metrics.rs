//! The metric set: bin-based calibration errors at every bin count, KS-CE, KDE-ECE, MMCE,
//! NLL, Brier score and accuracy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::binning::{BinRule, SortedScores, Sorter};
use super::input::LOG_FLOOR;
use super::kde::kde_ece;

/// Bin count → value. Serialised (with serde_json) as an object with string keys in
/// numeric order: `{"5": …, "10": …, "15": …}`.
pub type BinMap = BTreeMap<usize, f64>;

/// How the Brier score is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BrierScaling {
    /// Default: `(1/(N·K)) Σ_i Σ_k (p_ik − 1[y_i = k])²` ∈ [0, 2/K]: the mean over all N·K
    /// entries, i.e. scikit-learn `mean_squared_error(one_hot(y), p)`, which is what the
    /// calibration benchmark's evaluation code computes.
    #[default]
    MeanOverClasses,
    /// `(1/N) Σ_i Σ_k (p_ik − 1[y_i = k])²` ∈ [0, 2]: Brier's original multiclass score.
    SumOverClasses,
    /// Half of `SumOverClasses` ∈ [0, 1] (e.g. `scale_by_half=True` losses).
    HalfSum,
}

/// Every metric of one set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricSet {
    /// Top-label ECE, equal-width bins under the configured [`BinRule`].
    #[schema(value_type = BTreeMap<String, f64>)]
    pub ece: BinMap,
    /// Top-label ECE, equal-mass bins (uncertainty-calibration `get_ece_em`).
    #[schema(value_type = BTreeMap<String, f64>)]
    pub ece_em: BinMap,
    /// Classwise ECE (Kull et al. 2019): mean over classes of the per-class equal-width ECE.
    #[schema(value_type = BTreeMap<String, f64>)]
    pub cwce: BinMap,
    /// Classwise ECE with per-class equal-mass bins (uncertainty-calibration marginal `get_ece_em`).
    #[schema(value_type = BTreeMap<String, f64>)]
    pub cwce_em: BinMap,
    /// Top-label maximum calibration error over non-empty equal-width bins.
    #[schema(value_type = BTreeMap<String, f64>)]
    pub mce: BinMap,
    /// Top-label RMS (ℓ2) calibration error, equal-width bins, not debiased.
    #[schema(value_type = BTreeMap<String, f64>)]
    pub rmsce: BinMap,
    /// Kolmogorov–Smirnov calibration error (Gupta et al. 2021), top-label.
    pub ksce: f64,
    /// KDE-ECE (Zhang et al. 2020), top-label; `null` when the bandwidth is 0.
    pub kdece: Option<f64>,
    /// MMCE (Kumar et al. 2018), Laplacian kernel `exp(−|r − r'| / width)`, width 0.4 by default.
    pub mmce: f64,
    /// Mean negative log-likelihood, probabilities clipped to `[ε, 1 − ε]`, ε = `f64::EPSILON`.
    pub nll: f64,
    /// Brier score, scaled per [`BrierScaling`].
    pub brier: f64,
    /// Top-1 accuracy.
    pub accuracy: f64,
}

/// Options the metric computation needs.
#[derive(Debug, Clone)]
pub(crate) struct MetricOptions<'a> {
    pub bin_counts: &'a [usize],
    pub rule: BinRule,
    pub brier: BrierScaling,
    pub mmce_width: f64,
}

/// The samples to evaluate: `labels.len()` rows of K probabilities, row `r` written by
/// `fill_row(r, out)`, with labels and the predicted classes to use (kept fixed across
/// temperature scaling so that accuracy cannot change).
pub(crate) struct MetricInput<'a> {
    pub n_classes: usize,
    pub labels: &'a [usize],
    pub predicted: &'a [usize],
    pub fill_row: &'a mut dyn FnMut(usize, &mut [f64]),
}

/// Buffers reused across metric computations (pre and post).
#[derive(Default)]
pub(crate) struct Workspace {
    sorter: Sorter,
    /// The probabilities column-major (K columns of N), written once per metric set.
    columns: Vec<f64>,
    /// A few rows at a time, transposed into `columns` one cache line per column.
    tile: Vec<f64>,
    column: Option<SortedScores>,
    by_label: Vec<usize>,
}

/// Rows per tile of the transposition: 8 f64 = one cache line of each column.
const TILE: usize = 8;

/// Computes the metric set and returns it with the sorted top-label scores (for reliability data).
pub(crate) fn compute(
    input: &mut MetricInput<'_>,
    opts: &MetricOptions<'_>,
    ws: &mut Workspace,
) -> (MetricSet, SortedScores) {
    let n = input.labels.len();
    let k = input.n_classes;
    let nf = n as f64;
    let edges: Vec<Vec<f64>> = opts
        .bin_counts
        .iter()
        .map(|&b| opts.rule.edges(b))
        .collect();

    // ---- one pass over the rows: top-label confidences, NLL, Brier, and the transpose ----
    let mut conf = Vec::with_capacity(n);
    let mut correct_conf = Vec::new();
    let mut n_correct = 0usize;
    let mut nll = 0.0;
    let mut brier = 0.0;
    if ws.columns.len() < n * k {
        ws.columns.resize(n * k, 0.0);
    }
    ws.tile.resize(TILE * k, 0.0);
    let columns = &mut ws.columns[..n * k];
    for r0 in (0..n).step_by(TILE) {
        let rows = TILE.min(n - r0);
        let mut ys = [usize::MAX; TILE];
        for (t, y_t) in ys.iter_mut().enumerate().take(rows) {
            let r = r0 + t;
            let row = &mut ws.tile[t * k..(t + 1) * k];
            (input.fill_row)(r, row);
            let (p, y) = (input.predicted[r], input.labels[r]);
            let c = row[p];
            conf.push(c);
            if p == y {
                correct_conf.push(c);
                n_correct += 1;
            }
            nll += nll_term(row[y]);
            *y_t = y;
        }
        // transpose, and each row's Brier sum (in class order, as one row at a time would)
        // with the tile's rows as independent accumulators
        let mut sq = [0.0f64; TILE];
        for j in 0..k {
            let col = &mut columns[j * n + r0..j * n + r0 + rows];
            for (t, out) in col.iter_mut().enumerate() {
                let v = ws.tile[t * k + j];
                *out = v;
                let d = if j == ys[t] { v - 1.0 } else { v };
                sq[t] += d * d;
            }
        }
        for &row_sum in &sq[..rows] {
            brier += row_sum;
        }
    }

    // ---- top-label ----
    let kdece = kde_ece(&conf, &correct_conf);
    let top = SortedScores::from_unsorted(conf, correct_conf, &mut ws.sorter);

    let mut ece = BinMap::new();
    let mut ece_em = BinMap::new();
    let mut mce = BinMap::new();
    let mut rmsce = BinMap::new();
    for (&b, e) in opts.bin_counts.iter().zip(&edges) {
        let e = top.equal_width_errors_at(opts.rule, e);
        ece.insert(b, e.ece);
        mce.insert(b, e.mce);
        rmsce.insert(b, e.rmsce);
        ece_em.insert(b, top.equal_mass_errors(b).ece);
    }
    let ksce = ks_error(&top);
    let mmce = mmce(&top, opts.mmce_width);

    // ---- classwise ----
    let (cwce, cwce_em) = classwise(input, opts, &edges, ws);

    // ---- proper scores ----
    nll /= nf;
    brier /= nf;
    brier = match opts.brier {
        BrierScaling::MeanOverClasses => brier / k as f64,
        BrierScaling::SumOverClasses => brier,
        BrierScaling::HalfSum => brier / 2.0,
    };

    let set = MetricSet {
        ece,
        ece_em,
        cwce,
        cwce_em,
        mce,
        rmsce,
        ksce,
        kdece,
        mmce,
        nll,
        brier,
        accuracy: n_correct as f64 / nf,
    };
    (set, top)
}

/// One sample's NLL term: `−ln(clamp(p_y, ε, 1 − ε))`, ε = [`LOG_FLOOR`] (scikit-learn's
/// `log_loss` clipping for float64).
pub(crate) fn nll_term(p_true: f64) -> f64 {
    -p_true.clamp(LOG_FLOOR, 1.0 - LOG_FLOOR).ln()
}

/// Kolmogorov–Smirnov calibration error: `max_t |(1/N) Σ_{r_i ≤ t} (r_i − c_i)|` over the
/// sorted top-label confidences. The running sums are compared only at the end of each group
/// of equal confidences, so the value does not depend on the order of tied samples (for
/// distinct confidences this is exactly Gupta et al.'s cumulative-sum statistic).
pub fn ks_error(top: &SortedScores) -> f64 {
    let n = top.len() as f64;
    let mut max = 0.0f64;
    top.for_each_distinct(|_, _, _, cum_score, cum_pos| {
        let d = (cum_score - cum_pos as f64).abs() / n;
        if d > max {
            max = d;
        }
    });
    max
}

/// MMCE: `sqrt((1/N²) Σ_i Σ_j (c_i − r_i)(c_j − r_j) exp(−|r_i − r_j| / width))`, as netcal's
/// `MMCE.measure`. Computed in O(N) over the sorted confidences: the Laplacian kernel
/// factorises along the sorted order, `S_g = A_g + exp(−(r_g − r_{g−1})/width) S_{g−1}` with
/// `A_g` the sum of `c − r` over the g-th group of equal confidences, and the double sum is
/// `Σ_g A_g (A_g + 2 exp(−(r_g − r_{g−1})/width) S_{g−1})`.
pub fn mmce(top: &SortedScores, width: f64) -> f64 {
    let n = top.len() as f64;
    let mut total = 0.0;
    let mut s_prev = 0.0;
    let mut r_prev = f64::NAN;
    top.for_each_distinct(|r, count, positives, _, _| {
        let a = positives as f64 - count as f64 * r;
        let decay = if r_prev.is_nan() {
            0.0
        } else {
            (-(r - r_prev) / width).exp()
        };
        total += a * (a + 2.0 * decay * s_prev);
        s_prev = a + decay * s_prev;
        r_prev = r;
    });
    (total.max(0.0)).sqrt() / n
}

/// Classwise ECE at every bin count, equal width and equal mass: every class's column (of
/// `ws.columns`) is sorted once (O(N log N), radix sort) and reused for all bin counts.
fn classwise(
    input: &MetricInput<'_>,
    opts: &MetricOptions<'_>,
    edges: &[Vec<f64>],
    ws: &mut Workspace,
) -> (BinMap, BinMap) {
    let n = input.labels.len();
    let k = input.n_classes;

    // sample indices grouped by label (counting sort)
    let mut start = vec![0usize; k + 1];
    for &y in input.labels {
        start[y + 1] += 1;
    }
    for j in 0..k {
        start[j + 1] += start[j];
    }
    let mut fill = start.clone();
    let by_label = &mut ws.by_label;
    by_label.clear();
    by_label.resize(n, 0);
    for (i, &y) in input.labels.iter().enumerate() {
        by_label[fill[y]] = i;
        fill[y] += 1;
    }
    let s = ws
        .column
        .get_or_insert_with(|| SortedScores::from_unsorted(Vec::new(), Vec::new(), &mut ws.sorter));

    let nb = opts.bin_counts.len();
    let mut ew = vec![0.0; nb];
    let mut em = vec![0.0; nb];
    for c in 0..k {
        let col = &ws.columns[c * n..(c + 1) * n];
        let positives = by_label[start[c]..start[c + 1]].iter().map(|&i| col[i]);
        s.refill(col.iter().copied(), positives, &mut ws.sorter);
        for (b_idx, &b) in opts.bin_counts.iter().enumerate() {
            ew[b_idx] += s.equal_width_errors_at(opts.rule, &edges[b_idx]).ece;
            em[b_idx] += s.equal_mass_errors(b).ece;
        }
    }
    let kf = k as f64;
    let cw = opts
        .bin_counts
        .iter()
        .zip(&ew)
        .map(|(&b, &v)| (b, v / kf))
        .collect();
    let cw_em = opts
        .bin_counts
        .iter()
        .zip(&em)
        .map(|(&b, &v)| (b, v / kf))
        .collect();
    (cw, cw_em)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(conf: &[f64], correct: &[bool]) -> SortedScores {
        SortedScores::new(conf, correct).unwrap()
    }

    #[test]
    fn ks_error_matches_cumulative_definition_and_ignores_tie_order() {
        let s = top(&[0.9, 0.6, 0.8, 0.7], &[true, false, true, true]);
        // sorted: 0.6(0) 0.7(1) 0.8(1) 0.9(1): cum diffs /4: 0.6, 0.3, 0.1, 0.0
        assert!((ks_error(&s) - 0.15).abs() < 1e-15);
        let a = top(&[0.5, 0.5, 0.9], &[true, false, false]);
        let b = top(&[0.5, 0.5, 0.9], &[false, true, false]);
        assert_eq!(ks_error(&a), ks_error(&b));
    }

    #[test]
    fn mmce_matches_quadratic_form() {
        let conf = [0.9, 0.6, 0.6, 0.75, 0.99, 0.4];
        let correct = [true, false, true, true, true, false];
        let s = top(&conf, &correct);
        let mut q = 0.0;
        for i in 0..conf.len() {
            for j in 0..conf.len() {
                let ai = correct[i] as u8 as f64 - conf[i];
                let aj = correct[j] as u8 as f64 - conf[j];
                q += ai * aj * (-2.5 * (conf[i] - conf[j]).abs()).exp();
            }
        }
        let expected = (q / 36.0).sqrt();
        assert!(
            (mmce(&s, 0.4) - expected).abs() < 1e-15,
            "{} {expected}",
            mmce(&s, 0.4)
        );
    }
}
