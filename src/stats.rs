//! Rank and regression statistics shared by the calibration analyses and the predictor
//! evaluation: Kendall τ-b (Knight's O(n log n) algorithm, equal to `scipy.stats.kendalltau`),
//! Spearman ρ with average ranks for ties (equal to `scipy.stats.spearmanr`) and mean absolute
//! error, in f64 so that 15k-element sets give the reference values to ~1e-12.

/// Kendall's τ-b between `x` and `y` (ties in either handled as scipy does). NaN when fewer than
/// two pairs or when either side is constant.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "kendall_tau_b: lengths differ");
    let n = x.len();
    if n < 2 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]).then(y[a].total_cmp(&y[b])));
    let xs: Vec<f64> = order.iter().map(|&i| x[i]).collect();
    let mut ys: Vec<f64> = order.iter().map(|&i| y[i]).collect();

    // Pairs tied in x, and tied in both (runs of equal (x, y) in the lexicographic order).
    let x_ties = tied_pairs(&xs, |a, b| a == b);
    let pairs: Vec<(f64, f64)> = xs.iter().copied().zip(ys.iter().copied()).collect();
    let joint_ties = tied_pairs(&pairs, |a, b| a == b);

    // Discordant pairs = inversions of y in that order (equal values are not inversions).
    let mut buffer = vec![0.0; n];
    let swaps = merge_count(&mut ys, &mut buffer);
    let y_ties = tied_pairs(&ys, |a, b| a == b);

    tau_b_from_counts(n, x_ties, y_ties, joint_ties, swaps)
}

/// τ-b from the pair counts: `n` elements, pairs tied in x, in y and in both, and discordant
/// pairs (strict inversions of y in (x, y) order).
fn tau_b_from_counts(n: usize, x_ties: u64, y_ties: u64, joint_ties: u64, swaps: u64) -> f64 {
    let total = (n * (n - 1) / 2) as f64;
    let (x_ties, y_ties, joint_ties) = (x_ties as f64, y_ties as f64, joint_ties as f64);
    let concordant_minus_discordant = total - x_ties - y_ties + joint_ties - 2.0 * swaps as f64;
    let denominator = ((total - x_ties) * (total - y_ties)).sqrt();
    if denominator == 0.0 {
        return f64::NAN;
    }
    concordant_minus_discordant / denominator
}

/// A series prepared once for many rank correlations against other series of the same length
/// (element `i` of each series describes the same item): its sort order, dense ranks, tie count
/// and average ranks. [`RankedSeries::kendall_tau_b`] then costs one gather and one inversion
/// count of integer ranks, [`RankedSeries::spearman`] one Pearson correlation; both return
/// exactly (bit for bit) what [`kendall_tau_b`] and [`spearman`] return on the values.
#[derive(Debug, Clone)]
pub struct RankedSeries {
    values: Vec<f64>,
    /// Average ranks (Spearman).
    ranks: Vec<f64>,
    /// Positions sorted by value.
    order: Vec<u32>,
    /// Dense rank of each position (equal values share one), and the same in sorted order.
    dense: Vec<u32>,
    sorted_dense: Vec<u32>,
    /// Number of distinct values (dense ranks are `0..groups`).
    groups: u32,
    /// Σ t(t−1)/2 over groups of equal values.
    tied_pairs: u64,
    /// No NaN and no −0.0: ranks reproduce the comparisons of [`kendall_tau_b`] exactly.
    /// (It orders by `total_cmp`, where −0.0 < 0.0 although they are equal, and NaN is equal
    /// to nothing.) Otherwise the correlations fall back to the direct functions.
    exact: bool,
}

impl RankedSeries {
    pub fn new(values: Vec<f64>) -> Self {
        assert!(values.len() <= u32::MAX as usize, "RankedSeries: too long");
        let n = values.len();
        let exact = values
            .iter()
            .all(|v| !(v.is_nan() || (*v == 0.0 && v.is_sign_negative())));
        // `total_cmp` order, ties by position (= a stable sort by `total_cmp`), as integer keys
        let mut keyed: Vec<(u64, u32)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let b = v.to_bits();
                let key = if b >> 63 == 1 { !b } else { b | 1 << 63 };
                (key, i as u32)
            })
            .collect();
        keyed.sort_unstable();
        let order: Vec<u32> = keyed.into_iter().map(|(_, i)| i).collect();
        let mut ranks = vec![0.0; n];
        let mut dense = vec![0u32; n];
        let mut sorted_dense = vec![0u32; n];
        let mut tied_pairs = 0u64;
        let (mut start, mut group) = (0, 0u32);
        while start < n {
            let v = values[order[start] as usize];
            let mut end = start + 1;
            while end < n && values[order[end] as usize] == v {
                end += 1;
            }
            // the same arithmetic as `average_ranks`
            let rank = (start + end + 1) as f64 / 2.0;
            for (s, &i) in order[start..end].iter().enumerate() {
                ranks[i as usize] = rank;
                dense[i as usize] = group;
                sorted_dense[start + s] = group;
            }
            let t = (end - start) as u64;
            tied_pairs += t * (t - 1) / 2;
            group += 1;
            start = end;
        }
        Self {
            values,
            ranks,
            order,
            dense,
            sorted_dense,
            groups: group,
            tied_pairs,
            exact,
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Average ranks (as [`average_ranks`]).
    pub fn ranks(&self) -> &[f64] {
        &self.ranks
    }

    /// Kendall's τ-b against `other`; equal to `kendall_tau_b(self.values(), other.values())`.
    pub fn kendall_tau_b(&self, other: &Self) -> f64 {
        assert_eq!(self.len(), other.len(), "kendall_tau_b: lengths differ");
        let n = self.len();
        if n < 2 {
            return f64::NAN;
        }
        if !(self.exact && other.exact) {
            return kendall_tau_b(&self.values, &other.values);
        }
        // other's ranks in the order of self's values, ties in self ordered by other's ranks
        let mut seq: Vec<u32> = self
            .order
            .iter()
            .map(|&i| other.dense[i as usize])
            .collect();
        let mut joint_ties = 0u64;
        let mut start = 0;
        while start < n {
            let g = self.sorted_dense[start];
            let mut end = start + 1;
            while end < n && self.sorted_dense[end] == g {
                end += 1;
            }
            if end - start > 1 {
                let run = &mut seq[start..end];
                run.sort_unstable();
                joint_ties += tied_pairs(run, |a, b| a == b);
            }
            start = end;
        }
        let swaps = inversions(&seq, other.groups as usize);
        tau_b_from_counts(n, self.tied_pairs, other.tied_pairs, joint_ties, swaps)
    }

    /// Spearman's ρ against `other`; equal to `spearman(self.values(), other.values())`.
    pub fn spearman(&self, other: &Self) -> f64 {
        pearson(&self.ranks, &other.ranks)
    }
}

/// Σ t(t−1)/2 over runs of equal neighbours of a sorted slice.
fn tied_pairs<T>(sorted: &[T], equal: impl Fn(&T, &T) -> bool) -> u64 {
    let mut ties = 0u64;
    let mut run = 1u64;
    for w in sorted.windows(2) {
        if equal(&w[0], &w[1]) {
            run += 1;
        } else {
            ties += run * (run - 1) / 2;
            run = 1;
        }
    }
    ties + run * (run - 1) / 2
}

/// Number of strict inversions (`i < j`, `v[i] > v[j]`) of integer ranks in `0..groups`: a
/// Fenwick tree of the ranks seen so far (no data-dependent branches, unlike a merge, which
/// mispredicts on every other element of random ranks; about 4× faster at 15,625 elements).
fn inversions(v: &[u32], groups: usize) -> u64 {
    let mut tree = vec![0u32; groups + 1];
    let mut swaps = 0u64;
    for (seen, &x) in v.iter().enumerate() {
        // elements seen so far that are <= x
        let (mut idx, mut not_greater) = (x as usize + 1, 0u64);
        while idx > 0 {
            not_greater += u64::from(tree[idx]);
            idx &= idx - 1;
        }
        swaps += seen as u64 - not_greater;
        let mut idx = x as usize + 1;
        while idx <= groups {
            tree[idx] += 1;
            idx += idx & idx.wrapping_neg();
        }
    }
    swaps
}

/// Sorts `v` ascending and returns the number of strict inversions.
fn merge_count(v: &mut [f64], buffer: &mut [f64]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut swaps = {
        let (left, right) = v.split_at_mut(mid);
        merge_count(left, &mut buffer[..mid]) + merge_count(right, &mut buffer[mid..])
    };
    let (mut i, mut j, mut k) = (0, mid, 0);
    while i < mid && j < n {
        if v[j] < v[i] {
            buffer[k] = v[j];
            swaps += (mid - i) as u64;
            j += 1;
        } else {
            buffer[k] = v[i];
            i += 1;
        }
        k += 1;
    }
    buffer[k..k + mid - i].copy_from_slice(&v[i..mid]);
    let k = k + mid - i;
    buffer[k..n].copy_from_slice(&v[j..n]);
    v.copy_from_slice(&buffer[..n]);
    swaps
}

/// Ranks starting at 1, ties getting the average of the ranks they span.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && v[order[end]] == v[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Pearson correlation; NaN when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "pearson: lengths differ");
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Spearman's ρ: Pearson correlation of average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Mean absolute error.
pub fn mae(predicted: &[f64], truth: &[f64]) -> f64 {
    assert_eq!(predicted.len(), truth.len(), "mae: lengths differ");
    predicted
        .iter()
        .zip(truth)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / predicted.len() as f64
}

/// Kendall τ-b, Spearman ρ and MAE of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    pub kendall_tau: f64,
    pub spearman: f64,
    pub mae: f64,
}

impl Scores {
    pub fn compute(predicted: &[f64], truth: &[f64]) -> Self {
        Self {
            kendall_tau: kendall_tau_b(predicted, truth),
            spearman: spearman(predicted, truth),
            mae: mae(predicted, truth),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force τ-b, the definition.
    fn tau_b_naive(x: &[f64], y: &[f64]) -> f64 {
        let (mut s, mut tx, mut ty) = (0.0, 0.0, 0.0);
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                let a = (x[i] - x[j]).signum() * (x[i] != x[j]) as i32 as f64;
                let b = (y[i] - y[j]).signum() * (y[i] != y[j]) as i32 as f64;
                s += a * b;
                tx += a * a;
                ty += b * b;
            }
        }
        s / (tx * ty).sqrt()
    }

    // Reference values from scipy 1.17.1 (`kendalltau(...).statistic`, `spearmanr`).
    #[test]
    fn matches_scipy_with_ties() {
        let x = [12.0, 2.0, 1.0, 12.0, 2.0];
        let y = [1.0, 4.0, 7.0, 1.0, 0.0];
        assert!((kendall_tau_b(&x, &y) - -0.4714045207910316).abs() < 1e-12);
        assert!((spearman(&x, &y) - -0.5407380704358752).abs() < 1e-12);
        let x = [0.5, 0.5, 0.5, 1.0, 2.0, 3.0, 3.0, 4.0];
        let y = [1.0, 2.0, 2.0, 2.0, 5.0, 4.0, 4.0, 3.0];
        assert!((kendall_tau_b(&x, &y) - 0.5).abs() < 1e-12);
        assert!((spearman(&x, &y) - 0.7215189873417723).abs() < 1e-12);
    }

    #[test]
    fn matches_scipy_without_ties() {
        let x: Vec<f64> = (1..=10).map(f64::from).collect();
        let y = [2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 8.0, 7.0, 10.0, 9.0];
        assert!((kendall_tau_b(&x, &y) - 0.7777777777777777).abs() < 1e-12);
        assert!((spearman(&x, &y) - 0.9393939393939393).abs() < 1e-12);
        assert_eq!(kendall_tau_b(&x, &x), 1.0);
        let reversed: Vec<f64> = x.iter().rev().copied().collect();
        assert_eq!(kendall_tau_b(&x, &reversed), -1.0);
    }

    #[test]
    fn fast_tau_equals_definition() {
        // A deterministic pseudo-random sequence with many ties.
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 7) as f64
        };
        let x: Vec<f64> = (0..200).map(|_| next()).collect();
        let y: Vec<f64> = (0..200).map(|_| next()).collect();
        assert!((kendall_tau_b(&x, &y) - tau_b_naive(&x, &y)).abs() < 1e-12);
    }

    #[test]
    fn ranks_mae_and_degenerate_inputs() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
        assert_eq!(mae(&[1.0, 2.0], &[2.0, 4.0]), 1.5);
        assert!(kendall_tau_b(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert!(kendall_tau_b(&[1.0], &[1.0]).is_nan());
    }

    #[test]
    fn ranked_series_equals_direct_functions_bit_for_bit() {
        let mut state = 987654321u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        for (n, levels) in [
            (0usize, 5u64),
            (1, 5),
            (2, 2),
            (17, 3),
            (300, 7),
            (2000, 1 << 30),
            (5000, 40),
        ] {
            let mut series: Vec<Vec<f64>> = (0..4)
                .map(|_| (0..n).map(|_| (next() % levels) as f64 / 7.0).collect())
                .collect();
            // -0.0 next to 0.0, and NaN: the fallback must give the direct functions' answers
            if n > 10 {
                series[2][3] = -0.0;
                series[2][4] = 0.0;
                series[3][5] = f64::NAN;
            }
            let ranked: Vec<RankedSeries> = series
                .iter()
                .map(|v| RankedSeries::new(v.clone()))
                .collect();
            for i in 0..series.len() {
                assert_eq!(ranked[i].ranks(), average_ranks(&series[i]).as_slice());
                for j in 0..series.len() {
                    let (fast, slow) = (
                        ranked[i].kendall_tau_b(&ranked[j]),
                        kendall_tau_b(&series[i], &series[j]),
                    );
                    assert!(
                        fast.to_bits() == slow.to_bits() || (fast.is_nan() && slow.is_nan()),
                        "n={n} {i} {j}: {fast} {slow}"
                    );
                    let (fast, slow) = (
                        ranked[i].spearman(&ranked[j]),
                        spearman(&series[i], &series[j]),
                    );
                    assert!(
                        fast.to_bits() == slow.to_bits() || (fast.is_nan() && slow.is_nan()),
                        "n={n} {i} {j}: {fast} {slow}"
                    );
                }
            }
        }
    }
}
