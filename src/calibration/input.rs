//! Validated model outputs: probabilities or logits, plus integer labels.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::{CalibrationError, Result};

/// Most scores (N·K) of one input: about 40 MB as f64, several times that while evaluating
/// (sorted copies per class, temperature-scaled copies). CIFAR-100's test set is 10^6.
pub const MAX_SCORES: usize = 5_000_000;

/// Rows whose sum differs from 1 by at most this much are accepted unchanged
/// (except rows with an entry above 1, which are always divided by their sum).
pub const ROW_SUM_TOLERANCE: f64 = 1e-6;

/// Default largest |row sum − 1| that [`RowSumPolicy::RenormalizeWithin`] still repairs.
pub const DEFAULT_MAX_RENORMALIZE_DEVIATION: f64 = 1e-3;

/// Floor applied to probabilities before taking logarithms (NLL, and the log-scores that
/// temperature scaling uses for probability inputs). Equal to `f64::EPSILON`, the clip of
/// scikit-learn's `log_loss` for float64.
pub const LOG_FLOOR: f64 = f64::EPSILON;

/// What to do with probability rows whose sum is not 1 within [`ROW_SUM_TOLERANCE`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowSumPolicy {
    /// Any row off by more than [`ROW_SUM_TOLERANCE`] is an error.
    Reject,
    /// Any row off by more than [`ROW_SUM_TOLERANCE`] is divided by its sum, however far off
    /// (a row summing to 0 is still an error).
    Renormalize,
    /// Default (`max_deviation` = 1e-3): rows off by more than [`ROW_SUM_TOLERANCE`] but at most
    /// `max_deviation` are divided by their sum; rows off by more are an error.
    RenormalizeWithin { max_deviation: f64 },
}

impl Default for RowSumPolicy {
    fn default() -> Self {
        RowSumPolicy::RenormalizeWithin {
            max_deviation: DEFAULT_MAX_RENORMALIZE_DEVIATION,
        }
    }
}

/// Whether the scores were given as probabilities or as logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    Probabilities,
    Logits,
}

/// N samples × K classes of validated scores with their labels.
///
/// Probabilities are stored row-major (`probabilities()[i * K + k]`), every row sums to 1
/// within [`ROW_SUM_TOLERANCE`] and every entry lies in `[0, 1]`. For logit inputs the logits
/// are kept as well (temperature scaling divides them by T); the probabilities are their
/// softmax, computed with the max-shift (log-sum-exp) trick.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    n_samples: usize,
    n_classes: usize,
    probabilities: Vec<f64>,
    logits: Option<Vec<f64>>,
    labels: Vec<usize>,
}

impl Predictions {
    /// Probabilities as a flat row-major N×K matrix (`values.len()` must be `labels.len() * n_classes`).
    pub fn from_probabilities(
        values: Vec<f64>,
        n_classes: usize,
        labels: Vec<usize>,
        policy: RowSumPolicy,
    ) -> Result<Self> {
        check_shape(values.len(), n_classes, &labels)?;
        let mut values = values;
        normalize_probabilities(&mut values, n_classes, policy)?;
        Ok(Self {
            n_samples: labels.len(),
            n_classes,
            probabilities: values,
            logits: None,
            labels,
        })
    }

    /// Probabilities as one `Vec` per sample.
    pub fn from_probability_rows(
        rows: &[Vec<f64>],
        labels: &[usize],
        policy: RowSumPolicy,
    ) -> Result<Self> {
        let (flat, k) = flatten_rows(rows, labels)?;
        Self::from_probabilities(flat, k, labels.to_vec(), policy)
    }

    /// Probabilities read as a [`ScoreMatrix`].
    pub fn from_probability_matrix(
        matrix: ScoreMatrix,
        labels: Vec<usize>,
        policy: RowSumPolicy,
    ) -> Result<Self> {
        let k = matrix.check_rows(&labels)?;
        Self::from_probabilities(matrix.values, k, labels, policy)
    }

    /// Logits read as a [`ScoreMatrix`].
    pub fn from_logit_matrix(matrix: ScoreMatrix, labels: Vec<usize>) -> Result<Self> {
        let k = matrix.check_rows(&labels)?;
        Self::from_logits(matrix.values, k, labels)
    }

    /// Logits as a flat row-major N×K matrix; probabilities are their softmax.
    pub fn from_logits(values: Vec<f64>, n_classes: usize, labels: Vec<usize>) -> Result<Self> {
        check_shape(values.len(), n_classes, &labels)?;
        for (idx, &v) in values.iter().enumerate() {
            if !v.is_finite() {
                return Err(CalibrationError::NonFinite {
                    row: idx / n_classes,
                    class: idx % n_classes,
                    value: v,
                });
            }
        }
        let mut probabilities = vec![0.0; values.len()];
        for (z, p) in values
            .chunks_exact(n_classes)
            .zip(probabilities.chunks_exact_mut(n_classes))
        {
            softmax_into(z, 1.0, p);
        }
        Ok(Self {
            n_samples: labels.len(),
            n_classes,
            probabilities,
            logits: Some(values),
            labels,
        })
    }

    /// Logits as one `Vec` per sample.
    pub fn from_logit_rows(rows: &[Vec<f64>], labels: &[usize]) -> Result<Self> {
        let (flat, k) = flatten_rows(rows, labels)?;
        Self::from_logits(flat, k, labels.to_vec())
    }

    /// N.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// K.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Row-major N×K probabilities.
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    /// Row-major N×K logits, if the input was logits.
    pub fn logits(&self) -> Option<&[f64]> {
        self.logits.as_deref()
    }

    /// Labels in `0..K`.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// How the scores were given.
    pub fn kind(&self) -> ScoreKind {
        if self.logits.is_some() {
            ScoreKind::Logits
        } else {
            ScoreKind::Probabilities
        }
    }

    /// Scores on the logit scale for temperature scaling: the logits themselves, or
    /// `ln(max(p, LOG_FLOOR))` for probability inputs (softmax of which gives back p
    /// up to the floor).
    pub fn log_scores(&self) -> std::borrow::Cow<'_, [f64]> {
        match &self.logits {
            Some(z) => std::borrow::Cow::Borrowed(z),
            None => self
                .probabilities
                .iter()
                .map(|&p| super::fastmath::ln(p.max(LOG_FLOOR)))
                .collect::<Vec<f64>>()
                .into(),
        }
    }

    /// Predicted class of every sample: the first index of the row maximum.
    pub fn predicted_classes(&self) -> Vec<usize> {
        self.probabilities
            .chunks_exact(self.n_classes)
            .map(argmax)
            .collect()
    }
}

/// Index of the first maximum of a non-empty row.
pub(crate) fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    let mut best_v = row[0];
    for (k, &v) in row.iter().enumerate().skip(1) {
        if v > best_v {
            best = k;
            best_v = v;
        }
    }
    best
}

/// `out = softmax(z / temperature)` written as `softmax(inv_temperature * z)`, with the
/// row maximum subtracted before exponentiating.
pub(crate) fn softmax_into(z: &[f64], inv_temperature: f64, out: &mut [f64]) {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for (o, &v) in out.iter_mut().zip(z) {
        let e = super::fastmath::exp((v - m) * inv_temperature);
        *o = e;
        s += e;
    }
    for o in out.iter_mut() {
        *o /= s;
    }
}

/// Refuses N·K above [`MAX_SCORES`], before anything of that size is read or allocated.
pub fn check_size(n_samples: u64, n_classes: u64) -> Result<()> {
    if n_samples.saturating_mul(n_classes) > MAX_SCORES as u64 {
        return Err(CalibrationError::TooManyScores {
            n_samples,
            n_classes,
            limit: MAX_SCORES,
        });
    }
    Ok(())
}

fn check_shape(len: usize, n_classes: usize, labels: &[usize]) -> Result<()> {
    if n_classes == 0 {
        return Err(CalibrationError::NoClasses);
    }
    if labels.is_empty() {
        return Err(CalibrationError::Empty);
    }
    check_size(labels.len() as u64, n_classes as u64)?;
    let expected = labels.len().saturating_mul(n_classes);
    if len != expected {
        return Err(CalibrationError::MatrixLength {
            n_samples: labels.len(),
            n_classes,
            expected,
            actual: len,
        });
    }
    for (row, &label) in labels.iter().enumerate() {
        if label >= n_classes {
            return Err(CalibrationError::LabelOutOfRange {
                row,
                label,
                n_classes,
            });
        }
    }
    Ok(())
}

fn flatten_rows(rows: &[Vec<f64>], labels: &[usize]) -> Result<(Vec<f64>, usize)> {
    if rows.is_empty() && labels.is_empty() {
        return Err(CalibrationError::Empty);
    }
    if rows.len() != labels.len() {
        return Err(CalibrationError::LabelCount {
            rows: rows.len(),
            labels: labels.len(),
        });
    }
    let k = rows[0].len();
    if k == 0 {
        return Err(CalibrationError::NoClasses);
    }
    let mut flat = Vec::with_capacity(rows.len() * k);
    for (row, r) in rows.iter().enumerate() {
        if r.len() != k {
            return Err(CalibrationError::RaggedRow {
                row,
                expected: k,
                actual: r.len(),
            });
        }
        flat.extend_from_slice(r);
    }
    Ok((flat, k))
}

/// An N×K score matrix read from JSON rows (`[[…], …]`) straight into one row-major buffer:
/// no allocation per row, and ragged rows or more than [`MAX_SCORES`] values are refused while
/// parsing, so a hostile body never costs more than the scores it may hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreMatrix {
    values: Vec<f64>,
    rows: usize,
    n_classes: usize,
}

impl ScoreMatrix {
    /// K, after checking N against the labels (the checks of [`Predictions::from_probability_rows`]).
    fn check_rows(&self, labels: &[usize]) -> Result<usize> {
        if self.rows == 0 && labels.is_empty() {
            return Err(CalibrationError::Empty);
        }
        if self.rows != labels.len() {
            return Err(CalibrationError::LabelCount {
                rows: self.rows,
                labels: labels.len(),
            });
        }
        if self.n_classes == 0 {
            return Err(CalibrationError::NoClasses);
        }
        Ok(self.n_classes)
    }
}

impl<'de> Deserialize<'de> for ScoreMatrix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(Rows)
    }
}

/// Visits the outer array of a [`ScoreMatrix`].
struct Rows;

impl<'de> Visitor<'de> for Rows {
    type Value = ScoreMatrix;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of equally long arrays of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScoreMatrix, A::Error> {
        let mut matrix = ScoreMatrix::default();
        while seq.next_element_seed(Row(&mut matrix))?.is_some() {
            matrix.rows += 1;
        }
        Ok(matrix)
    }
}

/// Appends one row to the matrix, checking its length and the total.
struct Row<'a>(&'a mut ScoreMatrix);

impl<'de> DeserializeSeed<'de> for Row<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Row<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let m = self.0;
        let start = m.values.len();
        while let Some(v) = seq.next_element::<f64>()? {
            if m.values.len() == MAX_SCORES {
                return Err(de::Error::custom(format!(
                    "more than {MAX_SCORES} scores (N·K); send fewer samples"
                )));
            }
            m.values.push(v);
        }
        let len = m.values.len() - start;
        if m.rows == 0 {
            m.n_classes = len;
        } else if len != m.n_classes {
            return Err(de::Error::custom(CalibrationError::RaggedRow {
                row: m.rows,
                expected: m.n_classes,
                actual: len,
            }));
        }
        Ok(())
    }
}

fn normalize_probabilities(values: &mut [f64], k: usize, policy: RowSumPolicy) -> Result<()> {
    for (row, r) in values.chunks_exact_mut(k).enumerate() {
        let mut sum = 0.0;
        let mut max = 0.0f64;
        for (class, v) in r.iter_mut().enumerate() {
            if !v.is_finite() {
                return Err(CalibrationError::NonFinite {
                    row,
                    class,
                    value: *v,
                });
            }
            if *v < 0.0 {
                return Err(CalibrationError::NegativeProbability {
                    row,
                    class,
                    value: *v,
                });
            }
            *v += 0.0; // -0.0 -> +0.0, so that bit patterns order like the values
            sum += *v;
            max = max.max(*v);
        }
        let deviation = (sum - 1.0).abs();
        let renormalize = if deviation <= ROW_SUM_TOLERANCE {
            max > 1.0
        } else {
            let allowed = match policy {
                RowSumPolicy::Reject => ROW_SUM_TOLERANCE,
                RowSumPolicy::Renormalize => f64::INFINITY,
                RowSumPolicy::RenormalizeWithin { max_deviation } => max_deviation,
            };
            if deviation > allowed || sum <= 0.0 {
                return Err(CalibrationError::RowSum {
                    row,
                    sum,
                    deviation,
                    allowed,
                });
            }
            true
        };
        if renormalize {
            for v in r.iter_mut() {
                *v /= sum;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_renormalizes_per_policy() {
        let p = Predictions::from_probabilities(
            vec![0.5, 0.5, 0.2, 0.8],
            2,
            vec![0, 1],
            RowSumPolicy::default(),
        )
        .unwrap();
        assert_eq!(p.probabilities(), &[0.5, 0.5, 0.2, 0.8]);
        assert_eq!(p.kind(), ScoreKind::Probabilities);

        // 1e-4 off: renormalised by default, rejected by Reject.
        let off = vec![0.5, 0.5001];
        let p = Predictions::from_probabilities(off.clone(), 2, vec![0], RowSumPolicy::default())
            .unwrap();
        assert!((p.probabilities().iter().sum::<f64>() - 1.0).abs() < 1e-15);
        let e = Predictions::from_probabilities(off, 2, vec![0], RowSumPolicy::Reject).unwrap_err();
        assert!(matches!(e, CalibrationError::RowSum { row: 0, .. }));

        // 0.1 off: rejected by default, renormalised by Renormalize.
        let far = vec![0.5, 0.6];
        let e = Predictions::from_probabilities(far.clone(), 2, vec![0], RowSumPolicy::default())
            .unwrap_err();
        assert!(matches!(e, CalibrationError::RowSum { .. }), "{e}");
        let p =
            Predictions::from_probabilities(far, 2, vec![0], RowSumPolicy::Renormalize).unwrap();
        assert!((p.probabilities()[0] - 0.5 / 1.1).abs() < 1e-15);

        // within 1e-6: unchanged
        let near = vec![0.3, 0.7000001];
        let p = Predictions::from_probabilities(near.clone(), 2, vec![1], RowSumPolicy::Reject)
            .unwrap();
        assert_eq!(p.probabilities(), &near[..]);

        // all-zero row is never repairable
        let e =
            Predictions::from_probabilities(vec![0.0, 0.0], 2, vec![0], RowSumPolicy::Renormalize)
                .unwrap_err();
        assert!(matches!(e, CalibrationError::RowSum { .. }));
    }

    #[test]
    fn typed_errors() {
        use CalibrationError as E;
        let d = RowSumPolicy::default();
        assert_eq!(
            Predictions::from_probabilities(vec![], 3, vec![], d).unwrap_err(),
            E::Empty
        );
        assert_eq!(
            Predictions::from_probabilities(vec![], 0, vec![0], d).unwrap_err(),
            E::NoClasses
        );
        assert!(matches!(
            Predictions::from_probabilities(vec![0.5, 0.5, 1.0], 2, vec![0, 1], d).unwrap_err(),
            E::MatrixLength {
                expected: 4,
                actual: 3,
                ..
            }
        ));
        assert!(matches!(
            Predictions::from_probabilities(vec![0.5, 0.5], 2, vec![2], d).unwrap_err(),
            E::LabelOutOfRange {
                row: 0,
                label: 2,
                n_classes: 2
            }
        ));
        assert!(matches!(
            Predictions::from_probabilities(vec![f64::NAN, 1.0], 2, vec![0], d).unwrap_err(),
            E::NonFinite {
                row: 0,
                class: 0,
                ..
            }
        ));
        assert!(matches!(
            Predictions::from_logits(vec![0.0, f64::INFINITY], 2, vec![0]).unwrap_err(),
            E::NonFinite {
                row: 0,
                class: 1,
                ..
            }
        ));
        assert!(matches!(
            Predictions::from_probabilities(vec![-0.1, 1.1], 2, vec![0], d).unwrap_err(),
            E::NegativeProbability { class: 0, .. }
        ));
        assert!(matches!(
            Predictions::from_probability_rows(&[vec![0.5, 0.5], vec![1.0]], &[0, 0], d)
                .unwrap_err(),
            E::RaggedRow {
                row: 1,
                expected: 2,
                actual: 1
            }
        ));
        assert!(matches!(
            Predictions::from_probability_rows(&[vec![0.5, 0.5]], &[0, 0], d).unwrap_err(),
            E::LabelCount { rows: 1, labels: 2 }
        ));
        assert_eq!(
            Predictions::from_logit_rows(&[], &[]).unwrap_err(),
            E::Empty
        );
        // messages are readable
        let msg = Predictions::from_probabilities(vec![0.5, 0.6], 2, vec![0], d)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("sample 0") && msg.contains("sum to"), "{msg}");
    }

    #[test]
    fn logits_softmax_is_stable() {
        let p = Predictions::from_logits(vec![1000.0, 1000.0, -1000.0], 3, vec![0]).unwrap();
        assert_eq!(p.probabilities(), &[0.5, 0.5, 0.0]);
        assert_eq!(p.kind(), ScoreKind::Logits);
        assert_eq!(p.predicted_classes(), vec![0]);
        let q = Predictions::from_probabilities(vec![0.0, 1.0], 2, vec![1], RowSumPolicy::Reject)
            .unwrap();
        assert_eq!(&*q.log_scores(), &[f64::EPSILON.ln(), 0.0]);
    }
}
