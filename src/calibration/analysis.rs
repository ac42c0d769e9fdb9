//! The calibration benchmark's questions as data: rank agreement between series of figures
//! (across datasets, bin counts, metrics, or against accuracy) and the effect of temperature
//! scaling per architecture group.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use crate::stats::{average_ranks, kendall_tau_b, pearson, spearman};

/// Rank agreement of two series over the architectures they share.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PairCorrelation {
    pub a: String,
    pub b: String,
    /// Architectures present in both series.
    pub n: usize,
    /// Kendall τ-b; null when undefined (fewer than two architectures, or a constant series).
    pub kendall_tau_b: Option<f64>,
    /// Spearman ρ (average ranks for ties); null when undefined.
    pub spearman: Option<f64>,
}

/// Every pair of series (in key order), each correlated over the architectures both contain.
/// When all series cover the same architectures (the usual case: one benchmark, every figure),
/// each series is aligned and ranked once instead of once per pair.
pub fn pairwise(series: &BTreeMap<String, HashMap<i64, f64>>) -> Vec<PairCorrelation> {
    let keys: Vec<&String> = series.keys().collect();
    let first = series.values().next();
    let same_ids = first.is_some_and(|f| {
        series
            .values()
            .all(|s| s.len() == f.len() && s.keys().all(|id| f.contains_key(id)))
    });
    let mut out = Vec::new();
    if same_ids {
        let mut ids: Vec<i64> = first
            .map(|f| f.keys().copied().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        let aligned: Vec<Vec<f64>> = keys
            .iter()
            .map(|k| ids.iter().map(|id| series[*k][id]).collect())
            .collect();
        let ranks: Vec<Vec<f64>> = aligned.iter().map(|v| average_ranks(v)).collect();
        let finite = |v: f64| v.is_finite().then_some(v);
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                out.push(PairCorrelation {
                    a: keys[i].clone(),
                    b: keys[j].clone(),
                    n: ids.len(),
                    kendall_tau_b: finite(kendall_tau_b(&aligned[i], &aligned[j])),
                    spearman: finite(pearson(&ranks[i], &ranks[j])),
                });
            }
        }
        return out;
    }
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            out.push(correlate(a, &series[*a], b, &series[*b]));
        }
    }
    out
}

/// Correlation of two series over their shared architectures (in id order, for determinism).
pub fn correlate(
    a: &str,
    xs: &HashMap<i64, f64>,
    b: &str,
    ys: &HashMap<i64, f64>,
) -> PairCorrelation {
    let mut ids: Vec<i64> = xs
        .keys()
        .filter(|id| ys.contains_key(id))
        .copied()
        .collect();
    ids.sort_unstable();
    let x: Vec<f64> = ids.iter().map(|id| xs[id]).collect();
    let y: Vec<f64> = ids.iter().map(|id| ys[id]).collect();
    let finite = |v: f64| v.is_finite().then_some(v);
    PairCorrelation {
        a: a.to_string(),
        b: b.to_string(),
        n: ids.len(),
        kendall_tau_b: finite(kendall_tau_b(&x, &y)),
        spearman: finite(spearman(&x, &y)),
    }
}

/// How temperature scaling changed a metric within one group of architectures.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GroupEffect {
    pub group: String,
    pub n: usize,
    pub mean_pre: f64,
    pub mean_post: f64,
    /// Mean of `post − pre` (negative: scaling lowered the error).
    pub mean_change: f64,
    /// Fraction of architectures whose figure went down.
    pub improved_fraction: f64,
}

/// Per-group means of `(group, pre, post)` triples, groups in key order.
pub fn temperature_effect(triples: &[(String, f64, f64)]) -> Vec<GroupEffect> {
    let mut groups: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for (g, pre, post) in triples {
        groups.entry(g).or_default().push((*pre, *post));
    }
    groups
        .into_iter()
        .map(|(group, v)| {
            let n = v.len() as f64;
            let mean_pre = v.iter().map(|p| p.0).sum::<f64>() / n;
            let mean_post = v.iter().map(|p| p.1).sum::<f64>() / n;
            GroupEffect {
                group: group.to_string(),
                n: v.len(),
                mean_pre,
                mean_post,
                mean_change: mean_post - mean_pre,
                improved_fraction: v.iter().filter(|p| p.1 < p.0).count() as f64 / n,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[(i64, f64)]) -> HashMap<i64, f64> {
        values.iter().copied().collect()
    }

    #[test]
    fn identical_and_reversed_rankings() {
        let mut s = BTreeMap::new();
        s.insert(
            "a".to_string(),
            series(&[(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]),
        );
        s.insert(
            "b".to_string(),
            series(&[(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 9.0)]),
        );
        s.insert(
            "c".to_string(),
            series(&[(1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0)]),
        );
        let pairs = pairwise(&s);
        assert_eq!(pairs.len(), 3);
        assert_eq!(
            (pairs[0].n, pairs[0].kendall_tau_b, pairs[0].spearman),
            (4, Some(1.0), Some(1.0))
        );
        assert_eq!(
            (pairs[1].kendall_tau_b, pairs[1].spearman),
            (Some(-1.0), Some(-1.0))
        );
        let constant = correlate(
            "x",
            &series(&[(1, 1.0), (2, 1.0)]),
            "y",
            &series(&[(1, 1.0), (2, 2.0)]),
        );
        assert_eq!(constant.kendall_tau_b, None);
    }

    #[test]
    fn aligned_fast_path_equals_pairwise_correlation() {
        let mut s = BTreeMap::new();
        for (k, salt) in [("x", 3u64), ("y", 7), ("z", 11)] {
            // Same ids in every series, values with ties.
            s.insert(
                k.to_string(),
                (0..50)
                    .map(|i| (i as i64, ((i as u64 * salt) % 13) as f64))
                    .collect::<HashMap<i64, f64>>(),
            );
        }
        let fast = pairwise(&s);
        for p in &fast {
            let slow = correlate(&p.a, &s[&p.a], &p.b, &s[&p.b]);
            assert_eq!(p, &slow);
        }
        assert_eq!(fast.len(), 3);
    }

    #[test]
    fn group_means() {
        let effects = temperature_effect(&[
            ("g".into(), 0.2, 0.1),
            ("g".into(), 0.1, 0.15),
            ("h".into(), 0.3, 0.3),
        ]);
        assert_eq!(effects.len(), 2);
        assert!((effects[0].mean_change - (-0.025)).abs() < 1e-12);
        assert_eq!(effects[0].improved_fraction, 0.5);
        assert_eq!(effects[1].improved_fraction, 0.0);
    }
}
