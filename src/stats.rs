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

    let total = (n * (n - 1) / 2) as f64;
    let (x_ties, y_ties, joint_ties) = (x_ties as f64, y_ties as f64, joint_ties as f64);
    let concordant_minus_discordant = total - x_ties - y_ties + joint_ties - 2.0 * swaps as f64;
    let denominator = ((total - x_ties) * (total - y_ties)).sqrt();
    if denominator == 0.0 {
        return f64::NAN;
    }
    concordant_minus_discordant / denominator
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
}
