//! Reliability-diagram data: per equal-width bin of top-label confidence, the bin edges,
//! the sample count, the mean confidence and the accuracy.

use serde::{Deserialize, Serialize};

use super::binning::{BinRule, SortedScores};

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReliabilityBin {
    /// Lower edge of the bin.
    pub lower: f64,
    /// Upper edge of the bin (for the extra `LeftClosed` bin, lower = upper = 1).
    pub upper: f64,
    /// Number of samples whose top-label confidence falls in the bin.
    pub count: usize,
    /// Mean top-label confidence in the bin; `null` for an empty bin.
    pub mean_confidence: Option<f64>,
    /// Fraction of correct predictions in the bin; `null` for an empty bin.
    pub accuracy: Option<f64>,
}

/// Reliability-diagram data before and (optionally) after temperature scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reliability {
    /// Number of equal-width bins B.
    pub n_bins: usize,
    /// Bin rule used (the `LeftClosed` rule adds a (B+1)-th bin for confidence 1.0).
    pub bin_rule: BinRule,
    /// Bins of the pre-scaling confidences.
    pub pre: Vec<ReliabilityBin>,
    /// Bins of the post-scaling confidences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<Vec<ReliabilityBin>>,
}

/// Reliability bins of sorted top-label scores (`scores.positive_values()` = correct ones).
pub fn reliability_bins(
    scores: &SortedScores,
    rule: BinRule,
    n_bins: usize,
) -> Vec<ReliabilityBin> {
    let edges = rule.edges(n_bins);
    scores
        .equal_width_bins(rule, n_bins)
        .into_iter()
        .enumerate()
        .map(|(j, s)| ReliabilityBin {
            lower: edges[j.min(n_bins)],
            upper: edges[(j + 1).min(n_bins)],
            count: s.count,
            mean_confidence: s.mean_score(),
            accuracy: s.positive_rate(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_carry_edges_counts_and_means() {
        let s = SortedScores::new(
            &[0.1, 0.2, 0.55, 0.95, 1.0],
            &[false, true, true, true, true],
        )
        .unwrap();
        let bins = reliability_bins(&s, BinRule::RightClosed, 2);
        assert_eq!(bins.len(), 2);
        assert_eq!((bins[0].lower, bins[0].upper, bins[0].count), (0.0, 0.5, 2));
        assert!((bins[0].mean_confidence.unwrap() - 0.15).abs() < 1e-15);
        assert_eq!(bins[0].accuracy, Some(0.5));
        assert_eq!(bins[1].count, 3);

        let bins = reliability_bins(&s, BinRule::LeftClosed, 4);
        assert_eq!(bins.len(), 5);
        assert_eq!((bins[4].lower, bins[4].upper, bins[4].count), (1.0, 1.0, 1));
        assert_eq!(bins[1].count, 0);
        assert_eq!(bins[1].mean_confidence, None);
        assert_eq!(bins[1].accuracy, None);
    }
}
