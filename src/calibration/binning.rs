//! Binning: bin rules, equal-width and equal-mass bins over sorted scores, and the
//! bin-based calibration errors (ECE, MCE, RMS calibration error).
//!
//! Scores are sorted once ([`SortedScores`]); every bin count then only needs to locate
//! the bin boundaries in the sorted array (galloping search from the previous boundary)
//! and read bin sums from a prefix-sum array, so `b` bin counts cost
//! `O(N log N + Σ b · log N)` instead of `O(N · Σ b)`.

use serde::{Deserialize, Serialize};

use super::error::{CalibrationError, Result};

/// How a score is assigned to one of B equal-width bins on [0, 1].
///
/// | rule | bins | edges | score 0 | score 1 | matches |
/// |---|---|---|---|---|---|
/// | `RightClosed` (default) | `(lo, hi]`, first bin `[0, hi]` | `i / B` | first bin | last bin | uncertainty-calibration `get_ece`, Guo et al. / gpleiss `_ECELoss`, the ICLR'24 calibration benchmark |
/// | `LeftClosed` | `[lo, hi)` plus an extra (B+1)-th bin holding exactly 1.0 | `i / B` | first bin | own bin | torchmetrics `CalibrationError` |
/// | `NumpyHistogram` | `[lo, hi)`, last bin `[lo, 1]` | NumPy `linspace(0, 1, B+1)` = `i * (1/B)`, last edge 1 | first bin | last bin | netcal `ECE` / `MCE` (`np.histogramdd`) |
///
/// Edges `i / B` are correctly rounded quotients (what uncertainty-calibration computes);
/// NumPy's `linspace` computes `i * (1/B)`, which for some `i` is one ulp above `i / B`
/// (e.g. `linspace(0,1,11)[3] = 0.30000000000000004`), so a score of exactly
/// `0.3` falls into bin 2 under `NumpyHistogram` but bin 3 under `LeftClosed`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BinRule {
    #[default]
    RightClosed,
    LeftClosed,
    NumpyHistogram,
}

impl BinRule {
    /// The B + 1 edges `0 = e_0 < … < e_B = 1` this rule uses.
    pub fn edges(self, n_bins: usize) -> Vec<f64> {
        let b = n_bins as f64;
        match self {
            BinRule::RightClosed | BinRule::LeftClosed => {
                (0..=n_bins).map(|i| i as f64 / b).collect()
            }
            BinRule::NumpyHistogram => {
                let step = 1.0 / b;
                (0..=n_bins)
                    .map(|i| if i == n_bins { 1.0 } else { i as f64 * step })
                    .collect()
            }
        }
    }

    /// Number of bins the rule produces for `n_bins`: `n_bins + 1` for `LeftClosed`
    /// (the extra bin holds scores equal to 1.0), else `n_bins`.
    pub fn bin_count(self, n_bins: usize) -> usize {
        match self {
            BinRule::LeftClosed => n_bins + 1,
            _ => n_bins,
        }
    }

    /// Bin index of one score in `[0, 1]`.
    pub fn bin_index(self, score: f64, n_bins: usize) -> usize {
        let e = self.edges(n_bins);
        let inner = &e[1..];
        match self {
            BinRule::RightClosed => inner.partition_point(|&x| x < score).min(n_bins - 1),
            BinRule::LeftClosed => inner.partition_point(|&x| x <= score),
            BinRule::NumpyHistogram => inner.partition_point(|&x| x <= score).min(n_bins - 1),
        }
    }
}

/// Statistics of one bin.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BinStats {
    /// Number of scores in the bin.
    pub count: usize,
    /// Sum of the scores in the bin.
    pub score_sum: f64,
    /// Number of positive outcomes (correct predictions / label == class) in the bin.
    pub positives: usize,
}

impl BinStats {
    /// Mean score (confidence), `None` for an empty bin.
    pub fn mean_score(&self) -> Option<f64> {
        (self.count > 0).then(|| self.score_sum / self.count as f64)
    }

    /// Fraction of positive outcomes (accuracy), `None` for an empty bin.
    pub fn positive_rate(&self) -> Option<f64> {
        (self.count > 0).then(|| self.positives as f64 / self.count as f64)
    }
}

/// Bin-based calibration errors of one binning.
///
/// With `w_b = n_b / N` and `gap_b = |acc_b − conf_b|` over the non-empty bins:
/// `ece = Σ w_b gap_b`, `mce = max gap_b`, `rmsce = sqrt(Σ w_b gap_b²)`.
/// Empty bins contribute nothing (weight 0, and they are skipped by the max).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CalibrationErrors {
    pub ece: f64,
    pub mce: f64,
    pub rmsce: f64,
}

#[derive(Default)]
struct ErrorAccumulator {
    n: f64,
    ece: f64,
    sq: f64,
    mce: f64,
}

impl ErrorAccumulator {
    fn new(n: usize) -> Self {
        Self {
            n: n as f64,
            ..Self::default()
        }
    }

    #[inline]
    fn add(&mut self, s: BinStats) {
        if s.count == 0 {
            return;
        }
        let c = s.count as f64;
        let gap = (s.positives as f64 / c - s.score_sum / c).abs();
        let w = c / self.n;
        self.ece += w * gap;
        self.sq += w * gap * gap;
        if gap > self.mce {
            self.mce = gap;
        }
    }

    fn finish(self) -> CalibrationErrors {
        CalibrationErrors {
            ece: self.ece,
            mce: self.mce,
            rmsce: self.sq.sqrt(),
        }
    }
}

/// Upper boundary of a bin: scores `x` with `x <= t` (`Le`) or `x < t` (`Lt`) that are not
/// in an earlier bin belong to it.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Le(f64),
    Lt(f64),
}

impl Cut {
    #[inline]
    fn admits(self, x: f64) -> bool {
        match self {
            Cut::Le(t) => x <= t,
            Cut::Lt(t) => x < t,
        }
    }
}

/// Smallest `i >= start` with `!pred(s[i])`, for `pred` true on a prefix of the sorted `s`
/// (galloping search: `O(log gap)` where `gap` is the distance travelled).
#[inline]
fn advance(s: &[f64], start: usize, cut: Cut) -> usize {
    let n = s.len();
    if start >= n || !cut.admits(s[start]) {
        return start;
    }
    let mut lo = start; // cut admits s[lo]
    let mut step = 1;
    let hi = loop {
        let probe = lo + step;
        if probe >= n {
            break n;
        }
        if cut.admits(s[probe]) {
            lo = probe;
            step *= 2;
        } else {
            break probe;
        }
    };
    lo + 1 + s[lo + 1..hi].partition_point(|&x| cut.admits(x))
}

/// Scores of one binary reliability problem (top-label confidences with correctness, or
/// one class's probabilities with `label == class`), sorted once for all binnings.
///
/// Stored as the ascending scores with their prefix sums, plus the ascending scores of the
/// positive samples only; a bin's positive count is found by searching the same boundary
/// in the positives, so no per-sample payload has to be sorted along.
#[derive(Debug, Clone, PartialEq)]
pub struct SortedScores {
    values: Vec<f64>,
    /// Prefix sums of `values` as an unevaluated sum `prefix + prefix_lo` (TwoSum
    /// compensation), so a bin's score sum `prefix[j] − prefix[i]` does not lose the
    /// precision of a small bin next to a large running total.
    prefix: Vec<f64>,
    prefix_lo: Vec<f64>,
    positives: Vec<f64>,
}

impl SortedScores {
    /// Scores in `[0, 1]` with their binary outcomes (`true` = correct / positive).
    pub fn new(scores: &[f64], outcomes: &[bool]) -> Result<Self> {
        if scores.is_empty() {
            return Err(CalibrationError::Empty);
        }
        if scores.len() != outcomes.len() {
            return Err(CalibrationError::LabelCount {
                rows: scores.len(),
                labels: outcomes.len(),
            });
        }
        for (row, &s) in scores.iter().enumerate() {
            if !s.is_finite() {
                return Err(CalibrationError::NonFinite {
                    row,
                    class: 0,
                    value: s,
                });
            }
            if !(0.0..=1.0).contains(&s) {
                return Err(CalibrationError::ScoreOutOfRange { row, value: s });
            }
        }
        let values: Vec<f64> = scores.iter().map(|&s| s + 0.0).collect();
        let positives = values
            .iter()
            .zip(outcomes)
            .filter_map(|(&v, &o)| o.then_some(v))
            .collect();
        let mut sorter = Sorter::default();
        Ok(Self::from_unsorted(values, positives, &mut sorter))
    }

    /// Sorts `values` (all scores) and `positives` (scores of positive samples, a sub-multiset
    /// of `values`). All values must be finite and non-negative.
    pub(crate) fn from_unsorted(
        values: Vec<f64>,
        positives: Vec<f64>,
        sorter: &mut Sorter,
    ) -> Self {
        let mut s = Self {
            values,
            prefix: Vec::new(),
            prefix_lo: Vec::new(),
            positives,
        };
        s.sort_and_sum(sorter);
        s
    }

    /// Reuses this value's buffers for new scores (same contract as `from_unsorted`).
    pub(crate) fn refill(
        &mut self,
        values: impl IntoIterator<Item = f64>,
        positives: impl IntoIterator<Item = f64>,
        sorter: &mut Sorter,
    ) {
        let keys = sorter.sort_keys(values);
        self.values.clear();
        self.values.reserve(keys.len());
        self.prefix.clear();
        self.prefix.reserve(keys.len() + 1);
        self.prefix.push(0.0);
        self.prefix_lo.clear();
        self.prefix_lo.reserve(keys.len() + 1);
        self.prefix_lo.push(0.0);
        let (mut hi, mut lo) = (0.0f64, 0.0f64);
        for &k in keys {
            let v = f64::from_bits(k);
            self.values.push(v);
            // TwoSum: s + err == hi + v exactly
            let s = hi + v;
            let bb = s - hi;
            let err = (hi - (s - bb)) + (v - bb);
            hi = s;
            lo += err;
            self.prefix.push(hi);
            self.prefix_lo.push(lo);
        }
        self.positives.clear();
        self.positives.extend(positives);
        sorter.sort(&mut self.positives);
    }

    fn sort_and_sum(&mut self, sorter: &mut Sorter) {
        let values = std::mem::take(&mut self.values);
        let positives = std::mem::take(&mut self.positives);
        self.refill(values.iter().copied(), positives.iter().copied(), sorter);
    }

    /// Number of scores.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no scores.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Ascending scores.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Ascending scores of the positive samples.
    pub fn positive_values(&self) -> &[f64] {
        &self.positives
    }

    /// Walk the bins delimited by `cuts` (plus a final bin with the rest), calling `f` with
    /// each bin's statistics in order. Each cut comes with a position in `values` before
    /// which every value is known to be admitted (0 if unknown), where the search starts.
    #[inline]
    fn walk(&self, cuts: impl Iterator<Item = (Cut, usize)>, mut f: impl FnMut(BinStats)) {
        let (mut a, mut p) = (0usize, 0usize);
        for (cut, hint) in cuts {
            let a2 = advance(&self.values, a.max(hint), cut);
            let p2 = advance(&self.positives, p, cut);
            f(self.stats(a, a2, p, p2));
            a = a2;
            p = p2;
        }
        let (a2, p2) = (self.values.len(), self.positives.len());
        f(self.stats(a, a2, p, p2));
    }

    /// Sum of `values[a..b]`.
    #[inline]
    fn sum(&self, a: usize, b: usize) -> f64 {
        (self.prefix[b] - self.prefix[a]) + (self.prefix_lo[b] - self.prefix_lo[a])
    }

    #[inline]
    fn stats(&self, a: usize, a2: usize, p: usize, p2: usize) -> BinStats {
        BinStats {
            count: a2 - a,
            score_sum: self.sum(a, a2),
            positives: p2 - p,
        }
    }

    /// Cuts of the equal-width bins under `rule` with `edges = rule.edges(n_bins)`.
    fn equal_width_cuts(rule: BinRule, edges: &[f64]) -> impl Iterator<Item = (Cut, usize)> + '_ {
        let n_bins = edges.len() - 1;
        let (last, make): (usize, fn(f64) -> Cut) = match rule {
            BinRule::RightClosed => (n_bins, Cut::Le),
            BinRule::LeftClosed => (n_bins + 1, Cut::Lt),
            BinRule::NumpyHistogram => (n_bins, Cut::Lt),
        };
        (1..last).map(move |j| (make(edges[j]), 0))
    }

    /// Upper edges of the equal-mass bins, exactly as uncertainty-calibration's
    /// `get_equal_bins`: split the sorted scores into `b = min(B, N)` consecutive groups
    /// (`np.array_split`: the first `N mod b` groups have one extra element), put an edge at
    /// the midpoint `(last_i + first_{i+1}) / 2` between neighbouring groups, append 1.0 and
    /// drop duplicate edges. Bins are `(e_{j-1}, e_j]`.
    fn equal_mass_cuts(&self, n_bins: usize) -> impl Iterator<Item = (Cut, usize)> + '_ {
        let n = self.values.len();
        let b = n_bins.min(n).max(1);
        let (q, r) = (n / b, n % b);
        let mut prev = f64::NEG_INFINITY;
        (1..b).filter_map(move |i| {
            let end = i * q + i.min(r);
            let mid = (self.values[end - 1] + self.values[end]) / 2.0;
            // edges are non-decreasing; equal ones (ties across a group boundary) and an
            // edge equal to the final 1.0 are deduplicated
            if mid > prev && mid < 1.0 {
                prev = mid;
                // values[..end] <= last_i <= mid: the search can start at the group boundary
                Some((Cut::Le(mid), end))
            } else {
                None
            }
        })
    }

    /// Statistics of the equal-width bins (`rule.bin_count(n_bins)` entries).
    pub fn equal_width_bins(&self, rule: BinRule, n_bins: usize) -> Vec<BinStats> {
        let mut out = Vec::with_capacity(rule.bin_count(n_bins));
        let edges = rule.edges(n_bins);
        self.walk(Self::equal_width_cuts(rule, &edges), |s| out.push(s));
        out
    }

    /// Statistics of the equal-mass bins (at most `n_bins` entries, fewer on ties or N < B).
    pub fn equal_mass_bins(&self, n_bins: usize) -> Vec<BinStats> {
        let mut out = Vec::new();
        self.walk(self.equal_mass_cuts(n_bins), |s| out.push(s));
        out
    }

    /// ECE / MCE / RMSCE with `n_bins` equal-width bins under `rule`.
    pub fn equal_width_errors(&self, rule: BinRule, n_bins: usize) -> CalibrationErrors {
        self.equal_width_errors_at(rule, &rule.edges(n_bins))
    }

    /// [`Self::equal_width_errors`] with the edges `rule.edges(n_bins)` computed by the caller
    /// (once for many score sets).
    pub(crate) fn equal_width_errors_at(&self, rule: BinRule, edges: &[f64]) -> CalibrationErrors {
        let mut acc = ErrorAccumulator::new(self.len());
        self.walk_nonempty_equal_width(rule, edges, |s| acc.add(s));
        acc.finish()
    }

    /// The non-empty bins of [`Self::equal_width_bins`] (with `edges = rule.edges(n_bins)`), in
    /// order, with the same statistics: instead of stepping through every bin, the walk jumps
    /// over runs of empty bins by a binary search of the edges for the next score. Scores
    /// crowd into a few bins (most of a class column is near 0), so at 500 bins this visits a
    /// fraction of them. Empty bins do not count in ECE, MCE or RMSCE.
    fn walk_nonempty_equal_width(&self, rule: BinRule, edges: &[f64], mut f: impl FnMut(BinStats)) {
        let n_bins = edges.len() - 1;
        let (cuts, make): (usize, fn(f64) -> Cut) = match rule {
            BinRule::RightClosed => (n_bins - 1, Cut::Le),
            BinRule::LeftClosed => (n_bins, Cut::Lt),
            BinRule::NumpyHistogram => (n_bins - 1, Cut::Lt),
        };
        // cut j (0-based) is the upper boundary of bin j: make(edges[j + 1]); the bin after
        // the last cut takes the rest
        let upper = &edges[1..=cuts];
        let n = self.values.len();
        let (mut a, mut p, mut j) = (0usize, 0usize, 0usize);
        while j < cuts && a < n {
            let v = self.values[a];
            // first cut at or after j that admits v (cuts admit a prefix of the sorted scores,
            // and an edge admitting v admits it under every later, larger edge)
            if !make(upper[j]).admits(v) {
                j += 1 + upper[j + 1..].partition_point(|&e| !make(e).admits(v));
                if j == cuts {
                    break;
                }
            }
            let cut = make(upper[j]);
            let a2 = advance(&self.values, a, cut);
            let p2 = advance(&self.positives, p, cut);
            f(self.stats(a, a2, p, p2));
            a = a2;
            p = p2;
            j += 1;
        }
        if a < n {
            f(self.stats(a, n, p, self.positives.len()));
        }
    }

    /// ECE / MCE / RMSCE with `n_bins` equal-mass bins.
    pub fn equal_mass_errors(&self, n_bins: usize) -> CalibrationErrors {
        let mut acc = ErrorAccumulator::new(self.len());
        self.walk(self.equal_mass_cuts(n_bins), |s| acc.add(s));
        acc.finish()
    }

    /// Visit each group of equal scores in ascending order with
    /// `(score, count, positives, cumulative score sum, cumulative positives)`.
    pub(crate) fn for_each_distinct(&self, mut f: impl FnMut(f64, usize, usize, f64, usize)) {
        let (mut a, mut p) = (0usize, 0usize);
        let n = self.values.len();
        while a < n {
            let v = self.values[a];
            let a2 = advance(&self.values, a, Cut::Le(v));
            let p2 = advance(&self.positives, p, Cut::Le(v));
            f(v, a2 - a, p2 - p, self.sum(0, a2), p2);
            a = a2;
            p = p2;
        }
    }
}

/// Reusable buffers for sorting non-negative finite `f64` values.
///
/// Non-negative IEEE-754 doubles order like their bit patterns, so the values are sorted as
/// `u64` keys: an LSD radix sort (11-bit digits, constant digits skipped) on the high bits —
/// two passes (22 bits: sign, exponent and 10 mantissa bits) for up to 65,536 values, three
/// (33 bits) above — then every run of equal high bits is finished by insertion sort (short
/// runs) or `sort_unstable`. Runs are short for spread-out scores, so this is linear in
/// practice; in the worst case (all values in one run) it is one `sort_unstable`.
#[derive(Default)]
pub(crate) struct Sorter {
    keys: Vec<u64>,
    tmp: Vec<u64>,
    hist: Vec<[u32; RADIX]>,
}

const DIGIT_BITS: u32 = 11;
const RADIX: usize = 1 << DIGIT_BITS;
const MAX_PASSES: usize = 3; // 31 + 3 * 11 = 64
/// Up to this many values two passes suffice: runs of equal high 22 bits stay short.
const TWO_PASS_MAX: usize = 1 << 16;

impl Sorter {
    /// Sorts `v` ascending.
    pub(crate) fn sort(&mut self, v: &mut [f64]) {
        if v.len() < 256 {
            v.sort_unstable_by(f64::total_cmp);
            return;
        }
        let keys = self.sort_keys(v.iter().copied());
        for (x, &k) in v.iter_mut().zip(keys) {
            *x = f64::from_bits(k);
        }
    }

    /// Bit patterns of `values`, sorted ascending (= the values sorted ascending).
    pub(crate) fn sort_keys(&mut self, values: impl IntoIterator<Item = f64>) -> &[u64] {
        self.keys.clear();
        self.keys.extend(values.into_iter().map(f64::to_bits));
        let n = self.keys.len();
        if n < 256 || n > u32::MAX as usize {
            self.keys.sort_unstable();
            return &self.keys;
        }
        let passes = if n <= TWO_PASS_MAX { 2 } else { MAX_PASSES };
        // bits below `low_bits` are ordered by the run fix-up
        let low_bits = 64 - passes as u32 * DIGIT_BITS;
        self.tmp.resize(n, 0);
        self.hist.resize(MAX_PASSES, [0; RADIX]);
        for h in self.hist.iter_mut().take(passes) {
            h.fill(0);
        }
        let digit =
            |k: u64, p: usize| ((k >> (low_bits + p as u32 * DIGIT_BITS)) as usize) & (RADIX - 1);
        if passes == 2 {
            let (h0, rest) = self.hist.split_at_mut(1);
            let (h0, h1) = (&mut h0[0], &mut rest[0]);
            for &k in &self.keys {
                h0[digit(k, 0)] += 1;
                h1[digit(k, 1)] += 1;
            }
        } else {
            for &k in &self.keys {
                for (p, h) in self.hist.iter_mut().enumerate() {
                    h[digit(k, p)] += 1;
                }
            }
        }
        let mut swapped = false;
        for p in 0..passes {
            let (src, dst) = if swapped {
                (&self.tmp, &mut self.keys)
            } else {
                (&self.keys, &mut self.tmp)
            };
            let h = &mut self.hist[p];
            if h[digit(src[0], p)] as usize == n {
                continue;
            }
            let mut sum = 0u32;
            for c in h.iter_mut() {
                let t = *c;
                *c = sum;
                sum += t;
            }
            for &k in src.iter() {
                let d = digit(k, p);
                dst[h[d] as usize] = k;
                h[d] += 1;
            }
            swapped = !swapped;
        }
        let out = if swapped {
            &mut self.tmp
        } else {
            &mut self.keys
        };
        let mut i = 0;
        while i < n {
            let high = out[i] >> low_bits;
            let mut j = i + 1;
            while j < n && out[j] >> low_bits == high {
                j += 1;
            }
            let run = &mut out[i..j];
            if run.len() > 16 {
                run.sort_unstable();
            } else {
                for a in 1..run.len() {
                    let key = run[a];
                    let mut b = a;
                    while b > 0 && run[b - 1] > key {
                        run[b] = run[b - 1];
                        b -= 1;
                    }
                    run[b] = key;
                }
            }
            i = j;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(conf: &[f64], correct: &[u8]) -> SortedScores {
        let o: Vec<bool> = correct.iter().map(|&c| c == 1).collect();
        SortedScores::new(conf, &o).unwrap()
    }

    #[test]
    fn edges_follow_each_library() {
        assert_eq!(BinRule::RightClosed.edges(10)[3], 0.3);
        assert_eq!(BinRule::NumpyHistogram.edges(10)[3], 0.30000000000000004);
        assert_eq!(*BinRule::NumpyHistogram.edges(10).last().unwrap(), 1.0);
        assert_eq!(BinRule::LeftClosed.bin_count(10), 11);
        // p = 0.3 under each rule with B = 10
        assert_eq!(BinRule::RightClosed.bin_index(0.3, 10), 2);
        assert_eq!(BinRule::LeftClosed.bin_index(0.3, 10), 3);
        assert_eq!(BinRule::NumpyHistogram.bin_index(0.3, 10), 2);
        // 0 and 1
        for rule in [
            BinRule::RightClosed,
            BinRule::LeftClosed,
            BinRule::NumpyHistogram,
        ] {
            assert_eq!(rule.bin_index(0.0, 10), 0);
        }
        assert_eq!(BinRule::RightClosed.bin_index(1.0, 10), 9);
        assert_eq!(BinRule::LeftClosed.bin_index(1.0, 10), 10);
        assert_eq!(BinRule::NumpyHistogram.bin_index(1.0, 10), 9);
        // 0.5 with B = 2
        assert_eq!(BinRule::RightClosed.bin_index(0.5, 2), 0);
        assert_eq!(BinRule::LeftClosed.bin_index(0.5, 2), 1);
        assert_eq!(BinRule::NumpyHistogram.bin_index(0.5, 2), 1);
    }

    #[test]
    fn bins_agree_with_bin_index() {
        let conf = [0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 0.5, 0.7, 0.99, 1.0, 1.0];
        let s = scores(&conf, &[0; 11]);
        for rule in [
            BinRule::RightClosed,
            BinRule::LeftClosed,
            BinRule::NumpyHistogram,
        ] {
            for b in [1, 2, 3, 4, 5, 10, 20] {
                let bins = s.equal_width_bins(rule, b);
                assert_eq!(bins.len(), rule.bin_count(b));
                let mut expected = vec![0usize; rule.bin_count(b)];
                for &c in &conf {
                    expected[rule.bin_index(c, b)] += 1;
                }
                let got: Vec<usize> = bins.iter().map(|s| s.count).collect();
                assert_eq!(got, expected, "{rule:?} B={b}");
            }
        }
    }

    /// methods.md §4.4: conf [0.5, 0.5, 0.9], correct [1, 1, 0], B = 2.
    #[test]
    fn boundary_case_half() {
        let s = scores(&[0.5, 0.5, 0.9], &[1, 1, 0]);
        let l = s.equal_width_errors(BinRule::LeftClosed, 2);
        let h = s.equal_width_errors(BinRule::NumpyHistogram, 2);
        let r = s.equal_width_errors(BinRule::RightClosed, 2);
        for e in [l, h] {
            assert!((e.ece - 0.1 / 3.0).abs() < 1e-12, "{e:?}");
            assert!((e.mce - 0.1 / 3.0).abs() < 1e-12, "{e:?}");
        }
        assert!((r.ece - 1.9 / 3.0).abs() < 1e-12, "{r:?}");
        assert!((r.mce - 0.9).abs() < 1e-12, "{r:?}");
    }

    /// methods.md §4.4: conf [1.0, 0.95], correct [1, 1], B = 10.
    #[test]
    fn boundary_case_one() {
        let s = scores(&[1.0, 0.95], &[1, 1]);
        for rule in [
            BinRule::RightClosed,
            BinRule::LeftClosed,
            BinRule::NumpyHistogram,
        ] {
            let e = s.equal_width_errors(rule, 10);
            assert!((e.ece - 0.025).abs() < 1e-12, "{rule:?} {e:?}");
            let mce = if rule == BinRule::LeftClosed {
                0.05
            } else {
                0.025
            };
            assert!((e.mce - mce).abs() < 1e-12, "{rule:?} {e:?}");
        }
    }

    /// torchmetrics binary docstring: preds [.25,.25,.55,.75,.75], target [0,0,1,1,1], 2 bins.
    #[test]
    fn torchmetrics_binary_docstring() {
        let s = scores(&[0.25, 0.25, 0.55, 0.75, 0.75], &[0, 0, 1, 1, 1]);
        let e = s.equal_width_errors(BinRule::LeftClosed, 2);
        assert!((e.ece - 0.29).abs() < 1e-12, "{e:?}");
        assert!((e.rmsce - 0.2918).abs() < 5e-5, "{e:?}");
        assert!((e.mce - 0.3167).abs() < 5e-5, "{e:?}");
    }

    #[test]
    fn equal_mass_matches_uncertainty_calibration_rules() {
        // 10 distinct values, 3 bins -> groups of 4, 3, 3
        let v: Vec<f64> = (0..10).map(|i| 0.05 + 0.09 * i as f64).collect();
        let s = scores(&v, &[0; 10]);
        let counts: Vec<usize> = s.equal_mass_bins(3).iter().map(|b| b.count).collect();
        assert_eq!(counts, vec![4, 3, 3]);
        // B > N: capped at N bins of one
        let counts: Vec<usize> = s.equal_mass_bins(50).iter().map(|b| b.count).collect();
        assert_eq!(counts, vec![1; 10]);
        // ties across a group boundary go to the lower bin and duplicate edges collapse
        let t = scores(&[0.2, 0.5, 0.5, 0.5, 0.5, 0.9], &[0; 6]);
        let counts: Vec<usize> = t.equal_mass_bins(3).iter().map(|b| b.count).collect();
        assert_eq!(counts, vec![5, 1]);
        let all_one = scores(&[1.0, 1.0, 1.0], &[1, 1, 0]);
        let bins = all_one.equal_mass_bins(2);
        assert_eq!(bins.len(), 1);
        assert_eq!(bins[0].count, 3);
    }

    #[test]
    fn bin_sums_keep_full_precision() {
        let mut v = vec![0.7; 1];
        v.extend((0..999).map(|i| 0.9 + i as f64 * 1e-4));
        let s = SortedScores::new(&v, &vec![false; v.len()]).unwrap();
        let bins = s.equal_width_bins(BinRule::RightClosed, 10);
        assert_eq!(bins[6].count, 1);
        assert_eq!(bins[6].mean_score(), Some(0.7));
    }

    #[test]
    fn skipping_walk_equals_walk_over_every_bin() {
        let mut state = 0x0bad_cafe_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..40 {
            let n = 1 + (next() % 400) as usize;
            let conf: Vec<f64> = (0..n)
                .map(|i| match (i + case) % 5 {
                    // on edges, at 0 and 1, crowded near 0, and spread out
                    0 => (next() % 21) as f64 / 20.0,
                    1 => (next() % 1000) as f64 * 1e-6,
                    2 => 1.0,
                    _ => (next() >> 11) as f64 / (1u64 << 53) as f64,
                })
                .collect();
            let correct: Vec<u8> = (0..n).map(|_| (next() % 2) as u8).collect();
            let s = scores(&conf, &correct);
            for rule in [
                BinRule::RightClosed,
                BinRule::LeftClosed,
                BinRule::NumpyHistogram,
            ] {
                for b in [1, 2, 3, 5, 10, 15, 20, 100, 500] {
                    let mut acc = ErrorAccumulator::new(s.len());
                    for bin in s.equal_width_bins(rule, b) {
                        acc.add(bin);
                    }
                    assert_eq!(
                        s.equal_width_errors(rule, b),
                        acc.finish(),
                        "case {case} {rule:?} B={b}"
                    );
                }
            }
        }
    }

    #[test]
    fn radix_sort_matches_std_sort() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut sorter = Sorter::default();
        for n in [0usize, 1, 255, 256, 1000, 5000, 20_000, 70_000] {
            let mut v: Vec<f64> = (0..n)
                .map(|i| match i % 9 {
                    0 => 0.0,
                    1 => 1.0,
                    2 => (next() % 1000) as f64 / 1000.0,
                    3 => f64::from_bits(next() >> 12) * 1e-300,
                    // values sharing their high bits (the run fix-up path)
                    4 => 1.0 - (next() % 1_000_000) as f64 * 1e-16,
                    5 => 0.25 + (next() % 1000) as f64 * f64::EPSILON,
                    _ => (next() >> 11) as f64 / (1u64 << 53) as f64,
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_by(f64::total_cmp);
            sorter.sort(&mut v);
            assert_eq!(v, expected, "n={n}");
        }
    }
}
