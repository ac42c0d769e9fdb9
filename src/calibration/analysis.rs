//! The calibration benchmark's questions as data: rank agreement between series of figures
//! (across datasets, bin counts, metrics, or against accuracy) and the effect of temperature
//! scaling per architecture group.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::stats::{RankedSeries, kendall_tau_b, spearman};

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

/// One series of figures: architecture ids (unique, in any order) with their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub ids: Vec<i64>,
    pub values: Vec<f64>,
}

impl Series {
    /// Sorted by id.
    fn sorted(mut self) -> Self {
        assert_eq!(self.ids.len(), self.values.len(), "Series: lengths differ");
        if !self.ids.is_sorted() {
            let mut pairs: Vec<(i64, f64)> = self.ids.iter().copied().zip(self.values).collect();
            pairs.sort_unstable_by_key(|p| p.0);
            (self.ids, self.values) = pairs.into_iter().unzip();
        }
        debug_assert!(
            self.ids.windows(2).all(|w| w[0] < w[1]),
            "Series: duplicate ids"
        );
        self
    }
}

impl From<&HashMap<i64, f64>> for Series {
    fn from(map: &HashMap<i64, f64>) -> Self {
        let (ids, values) = map.iter().map(|(&id, &v)| (id, v)).unzip();
        Self { ids, values }
    }
}

/// Every pair of series (in key order), each correlated over the architectures both contain.
pub fn pairwise(series: &BTreeMap<String, HashMap<i64, f64>>) -> Vec<PairCorrelation> {
    pairwise_series(
        series
            .iter()
            .map(|(k, s)| (k.clone(), Series::from(s)))
            .collect(),
    )
}

/// [`pairwise`] on [`Series`]: every pair (in key order), each over the architectures both
/// contain. When all series cover the same architectures (the usual case: one benchmark, every
/// figure), each series is aligned and ranked once instead of once per pair, and the pairs are
/// computed on all cores; the values are the same either way.
pub fn pairwise_series(series: BTreeMap<String, Series>) -> Vec<PairCorrelation> {
    let n = series.len();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    let (names, series) = series.into_iter().unzip();
    correlations(names, series, &pairs)
}

/// Each series against `reference` (named `reference_name`), in key order: the same values as
/// [`correlate`] on each pair.
pub fn against(
    series: BTreeMap<String, Series>,
    reference_name: &str,
    reference: Series,
) -> Vec<PairCorrelation> {
    let n = series.len();
    let pairs: Vec<(usize, usize)> = (0..n).map(|i| (i, n)).collect();
    let (mut names, mut series): (Vec<String>, Vec<Series>) = series.into_iter().unzip();
    names.push(reference_name.to_string());
    series.push(reference);
    correlations(names, series, &pairs)
}

/// Pairs `(i, j)` of `series`; each result equals `correlate(names[i], .., names[j], ..)`.
fn correlations(
    names: Vec<String>,
    series: Vec<Series>,
    pairs: &[(usize, usize)],
) -> Vec<PairCorrelation> {
    let series: Vec<Series> = series.into_iter().map(Series::sorted).collect();
    let finite = |v: f64| v.is_finite().then_some(v);
    let result = |(i, j): (usize, usize), n: usize, tau: f64, rho: f64| PairCorrelation {
        a: names[i].clone(),
        b: names[j].clone(),
        n,
        kendall_tau_b: finite(tau),
        spearman: finite(rho),
    };
    let same_ids = series.iter().all(|s| s.ids == series[0].ids);
    if same_ids && !series.is_empty() {
        let len = series[0].ids.len();
        let big = len * pairs.len() >= 20_000;
        let values: Vec<Vec<f64>> = series.into_iter().map(|s| s.values).collect();
        let ranked = parallel_map(&values, big, |v| RankedSeries::new(v.clone()));
        // A request that is gone gets no answer: its remaining pairs are skipped.
        let stop = crate::cpu::Stop::current();
        let stats = parallel_map(pairs, big, |&(i, j)| {
            if stop.raised() {
                return (f64::NAN, f64::NAN);
            }
            (
                ranked[i].kendall_tau_b(&ranked[j]),
                ranked[i].spearman(&ranked[j]),
            )
        });
        return pairs
            .iter()
            .zip(stats)
            .map(|(&p, (tau, rho))| result(p, len, tau, rho))
            .collect();
    }
    pairs
        .iter()
        .map(|&(i, j)| {
            // the shared ids in id order, as `correlate`
            let (a, b) = (&series[i], &series[j]);
            let (mut x, mut y) = (Vec::new(), Vec::new());
            let (mut p, mut q) = (0, 0);
            while p < a.ids.len() && q < b.ids.len() {
                match a.ids[p].cmp(&b.ids[q]) {
                    std::cmp::Ordering::Less => p += 1,
                    std::cmp::Ordering::Greater => q += 1,
                    std::cmp::Ordering::Equal => {
                        x.push(a.values[p]);
                        y.push(b.values[q]);
                        p += 1;
                        q += 1;
                    }
                }
            }
            result((i, j), x.len(), kendall_tau_b(&x, &y), spearman(&x, &y))
        })
        .collect()
}

/// `items.iter().map(f)`, on the application's CPU pool when `parallel`.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    parallel: bool,
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    if !parallel {
        return items.iter().map(f).collect();
    }
    crate::cpu::on_pool(|| items.par_iter().map(f).collect())
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
    fn parallel_and_against_equal_correlate() {
        // large enough for the threaded path; ids shuffled, values with ties
        let ids: Vec<i64> = (0..12_000).map(|i| (i * 7_919) % 12_000 + 5).collect();
        let mut s = BTreeMap::new();
        for (k, salt) in [("p", 3u64), ("q", 5), ("r", 11), ("s", 13)] {
            let m: HashMap<i64, f64> = ids
                .iter()
                .map(|&id| (id, ((id as u64 * salt) % 997) as f64 / 997.0))
                .collect();
            s.insert(k.to_string(), m);
        }
        let fast = pairwise(&s);
        assert_eq!(fast.len(), 6);
        for p in &fast {
            assert_eq!(p, &correlate(&p.a, &s[&p.a], &p.b, &s[&p.b]));
        }
        let reference: HashMap<i64, f64> = ids.iter().map(|&id| (id, (id % 89) as f64)).collect();
        let series: BTreeMap<String, Series> = s
            .iter()
            .map(|(k, m)| (k.clone(), Series::from(m)))
            .collect();
        let got = against(series.clone(), "acc", Series::from(&reference));
        let want: Vec<PairCorrelation> = s
            .iter()
            .map(|(k, m)| correlate(k, m, "acc", &reference))
            .collect();
        assert_eq!(got, want);
        // a reference covering only some architectures: the per-pair path
        let partial: HashMap<i64, f64> = reference
            .iter()
            .filter(|(id, _)| *id % 3 != 0)
            .map(|(&id, &v)| (id, v))
            .collect();
        let got = against(series, "acc", Series::from(&partial));
        let want: Vec<PairCorrelation> = s
            .iter()
            .map(|(k, m)| correlate(k, m, "acc", &partial))
            .collect();
        assert_eq!(got, want);
        assert!(want[0].n < 12_000);
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
