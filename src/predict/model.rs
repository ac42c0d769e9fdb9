//! The predictor: an ensemble of members, each a k-GNN encoder, frozen fuzzy c-means centroids on
//! its embedding space and one MLP head per cluster. A member predicts the membership-weighted
//! sum of its heads in the FLOPs-transformed target space; the ensemble's mean accuracy is the
//! prediction, the members' spread its uncertainty, and the distance to the nearest centroid
//! (relative to the training graphs') plus the membership entropy the out-of-distribution score.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::PredictError;
use super::batch::{Batch, Vocabulary};
use super::encoder::{Encoder, EncoderConfig};
use super::fcm::{Fcm, normalized_entropy};
use super::features::{CgGraphRef, FeatureConfig, PreparedGraph};
use super::nn::{Dense, Params};
use crate::cpu::{Stop, on_pool};

type Result<T> = std::result::Result<T, PredictError>;

/// Graphs per forward pass at inference (bounds memory, keeps the batch's rows cache-friendly).
const PREDICT_CHUNK: usize = 512;

/// GENNAPE's target transform (Eq. 5): `y = Z(A / (log10(GFLOPs + 1) + 1))` with FLOPs = 2 ×
/// MACs, Z the z-score of the training targets; with `flops_transform` off, `y = Z(A)`.
///
/// Optionally z is further mapped through the training targets' empirical CDF onto quantile
/// scores ([`TargetScores`]). Accuracy tables are skewed (NB201: most cells near 90 %, a tail
/// down to 10 %), so plain z-scores spend the squared error on the tail while the ranking that
/// τ measures is decided in the crowded top; quantile scores spread it evenly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetTransform {
    pub flops_transform: bool,
    pub mean: f64,
    pub std: f64,
    /// How z-scores become targets (older artifacts lack the field: plain z-scores).
    #[serde(default)]
    pub scores: TargetScores,
    /// Strictly increasing z-score knots at evenly spaced training quantiles (empty with
    /// [`TargetScores::Z`]).
    #[serde(default)]
    pub quantiles: Vec<f64>,
}

/// The scale regression targets are on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetScores {
    /// z-scores (GENNAPE).
    #[default]
    Z,
    /// `√3 (2p − 1)` of the training quantile p: uniform, unit variance, bounded tails.
    Uniform,
    /// `(√3/π) logit(p)`: unit-variance logistic scores, whose stretched tails keep the extremes
    /// (the best architectures, and failed ones) apart.
    Logistic,
}

/// Knots kept by the quantile mapping: enough to follow any empirical CDF closely, few enough
/// for the artifact's header.
const MAX_QUANTILES: usize = 1001;

impl TargetTransform {
    pub fn fit(
        accuracies: &[f64],
        flops: &[f64],
        flops_transform: bool,
        scores: TargetScores,
    ) -> Self {
        let mut t = Self {
            flops_transform,
            mean: 0.0,
            std: 1.0,
            scores: TargetScores::Z,
            quantiles: Vec::new(),
        };
        let raw: Vec<f64> = accuracies
            .iter()
            .zip(flops)
            .map(|(&a, &f)| a / t.divisor(f))
            .collect();
        let n = raw.len().max(1) as f64;
        t.mean = raw.iter().sum::<f64>() / n;
        let variance = raw.iter().map(|x| (x - t.mean).powi(2)).sum::<f64>() / n;
        t.std = if variance > 0.0 { variance.sqrt() } else { 1.0 };
        if scores != TargetScores::Z {
            let mut z: Vec<f64> = raw.iter().map(|r| (r - t.mean) / t.std).collect();
            z.sort_by(f64::total_cmp);
            let k = z.len().min(MAX_QUANTILES);
            let mut knots: Vec<f64> = (0..k)
                .map(|j| z[(j * (z.len() - 1)).checked_div(k - 1).unwrap_or(0)])
                .collect();
            knots.dedup();
            // One knot cannot define a CDF: keep plain z-scores then.
            if knots.len() >= 2 {
                t.quantiles = knots;
                t.scores = scores;
            }
        }
        t
    }

    fn divisor(&self, flops: f64) -> f64 {
        if self.flops_transform {
            (flops / 1e9 + 1.0).log10() + 1.0
        } else {
            1.0
        }
    }

    /// Accuracy → target.
    pub fn forward(&self, accuracy: f64, flops: f64) -> f64 {
        let z = (accuracy / self.divisor(flops) - self.mean) / self.std;
        if self.scores == TargetScores::Z {
            return z;
        }
        let q = &self.quantiles;
        let last = q.len() - 1;
        // Position along the knots, extrapolated linearly with the end segments' mean slope.
        let position = match q.partition_point(|&k| k <= z) {
            0 => (z - q[0]) / self.end_slope(false),
            i if i == q.len() => last as f64 + (z - q[last]) / self.end_slope(true),
            i => (i - 1) as f64 + (z - q[i - 1]) / (q[i] - q[i - 1]),
        };
        self.score(position)
    }

    /// Target → accuracy.
    pub fn inverse(&self, target: f64, flops: f64) -> f64 {
        let z = if self.scores == TargetScores::Z {
            target
        } else {
            let q = &self.quantiles;
            let last = q.len() - 1;
            let position = self.position(target);
            if position <= 0.0 {
                q[0] + position * self.end_slope(false)
            } else if position >= last as f64 {
                q[last] + (position - last as f64) * self.end_slope(true)
            } else {
                let i = position.floor() as usize;
                q[i] + (position - i as f64) * (q[i + 1] - q[i])
            }
        };
        (z * self.std + self.mean) * self.divisor(flops)
    }

    /// Knot position (0 … knots − 1, continued linearly beyond) → quantile score.
    fn score(&self, position: f64) -> f64 {
        let last = (self.quantiles.len() - 1) as f64;
        match self.scores {
            TargetScores::Z => position,
            TargetScores::Uniform => 3f64.sqrt() * (2.0 * position / last - 1.0),
            TargetScores::Logistic => {
                let (scale, n) = (3f64.sqrt() / std::f64::consts::PI, last + 1.0);
                // Knot i sits at p = (i + ½)/n; beyond the end knots the score goes on
                // linearly with the end knots' slope.
                let inside = position.clamp(0.0, last);
                let p = (inside + 0.5) / n;
                let slope = scale / (n * p * (1.0 - p));
                scale * (p / (1.0 - p)).ln() + (position - inside) * slope
            }
        }
    }

    /// Inverse of [`Self::score`].
    fn position(&self, score: f64) -> f64 {
        let last = (self.quantiles.len() - 1) as f64;
        match self.scores {
            TargetScores::Z => score,
            TargetScores::Uniform => (score / 3f64.sqrt() + 1.0) / 2.0 * last,
            TargetScores::Logistic => {
                let (scale, n) = (3f64.sqrt() / std::f64::consts::PI, last + 1.0);
                let end = self.score(last);
                let inside = score.clamp(-end, end);
                let p = 1.0 / (1.0 + (-inside / scale).exp());
                // The end knots' slope (p(1 − p) is the same at both ends).
                let slope = scale / (n * (0.5 / n) * (1.0 - 0.5 / n));
                p * n - 0.5 + (score - inside) / slope
            }
        }
    }

    /// z per knot step over the last (or first) 5 % of the knots: predictions beyond the
    /// training range keep their order instead of being clamped to ties.
    fn end_slope(&self, top: bool) -> f64 {
        let q = &self.quantiles;
        let span = (q.len() / 20).max(1);
        let (lo, hi) = if top {
            (q[q.len() - 1 - span], q[q.len() - 1])
        } else {
            (q[0], q[span])
        };
        (hi - lo) / span as f64
    }
}

/// A regression head: embedding → hidden (ReLU) → 1.
#[derive(Clone)]
pub struct Head {
    layers: [Dense; 2],
}

impl Head {
    pub fn new(params: &mut Params, name: &str, embedding: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            layers: [
                Dense::new(params, &format!("{name}.0"), embedding, hidden)?,
                Dense::new(params, &format!("{name}.1"), hidden, 1)?,
            ],
        })
    }

    /// Heads `head.0` … `head.{count-1}`.
    pub fn many(
        params: &mut Params,
        count: usize,
        embedding: usize,
        hidden: usize,
    ) -> Result<Vec<Self>> {
        (0..count)
            .map(|k| Self::new(params, &format!("head.{k}"), embedding, hidden))
            .collect()
    }

    /// `graphs × 1`.
    pub fn forward(&self, embeddings: &Tensor) -> Result<Tensor> {
        self.layers[1].forward(&self.layers[0].forward(embeddings)?.relu()?)
    }

    /// Makes the head output `scale · y + shift` instead of `y`.
    pub fn rescale(&self, scale: f64, shift: f64) -> Result<()> {
        let last = &self.layers[1];
        last.weight
            .set(&last.weight.as_tensor().affine(scale, 0.0)?)?;
        last.bias
            .set(&last.bias.as_tensor().affine(scale, shift)?)?;
        Ok(())
    }
}

/// Membership-weighted sum of per-cluster heads, `graphs`.
pub fn mixture(heads: &[Head], embeddings: &Tensor, memberships: &Tensor) -> Result<Tensor> {
    let outputs = heads
        .iter()
        .map(|h| h.forward(embeddings))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&outputs, 1)?.mul(memberships)?.sum(1)?)
}

/// One ensemble member.
pub struct Member {
    pub encoder: Encoder,
    pub heads: Vec<Head>,
    pub fcm: Fcm,
    /// 95th percentile of the training graphs' nearest-centroid distance.
    pub ood_scale: f64,
    /// Every trainable parameter by name (encoder.*, head.k.*): the artifact's tensors.
    pub vars: BTreeMap<String, Var>,
}

/// Embedding-space quantities of a batch under one member.
pub struct MemberOutput {
    pub embeddings: Tensor,
    pub memberships: Array2<f64>,
    /// Nearest-centroid distance / `ood_scale`.
    pub distance: Vec<f64>,
}

impl Member {
    /// Embeddings, memberships and scaled distances of a batch.
    pub fn embed(&self, batch: &Batch) -> Result<MemberOutput> {
        let embeddings = self.encoder.forward(batch, None)?;
        let points = to_array(&embeddings)?;
        let distances = self.fcm.distances(points.view());
        let distance = distances
            .rows()
            .into_iter()
            .map(|r| r.iter().copied().fold(f64::INFINITY, f64::min) / self.ood_scale)
            .collect();
        Ok(MemberOutput {
            memberships: self.fcm.memberships_from_distances(&distances),
            embeddings,
            distance,
        })
    }

    /// Targets (transformed space) for embeddings with their memberships.
    pub fn targets(&self, embeddings: &Tensor, memberships: &Array2<f64>) -> Result<Tensor> {
        mixture(
            &self.heads,
            embeddings,
            &memberships_tensor(memberships, embeddings.device())?,
        )
    }
}

/// `rows × cols` f64 array of a 2-D tensor.
pub fn to_array(t: &Tensor) -> Result<Array2<f64>> {
    let (rows, cols) = t.dims2()?;
    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    Ok(
        Array2::from_shape_vec((rows, cols), values.into_iter().map(f64::from).collect())
            .expect("shape matches"),
    )
}

pub fn memberships_tensor(u: &Array2<f64>, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        u.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        u.dim(),
        device,
    )?)
}

/// Everything that defines a trained predictor besides its tensors (the artifact's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Artifact format version (see `docs/predictor.md`).
    pub format_version: u32,
    pub encoder: EncoderConfig,
    pub head_hidden: usize,
    pub features: FeatureConfig,
    /// Names of the numeric node features, in column order.
    pub numeric_features: Vec<String>,
    /// Op labels of the embedding rows (one more row for labels not listed).
    pub vocabulary: Vec<String>,
    pub target: TargetTransform,
    pub fuzzifier: f64,
    /// Per member: clusters (heads) and OOD distance scale.
    pub members: Vec<MemberConfig>,
    /// Free-form provenance (training settings, sample counts).
    #[serde(default)]
    pub provenance: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemberConfig {
    pub clusters: usize,
    pub ood_scale: f64,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Mean over members of the predicted accuracy (the training targets' unit, e.g. %).
    pub accuracy: f64,
    /// Standard deviation of the members' predictions (n − 1; 0 with one member).
    pub std: f64,
    /// Nearest-centroid distance relative to the training graphs' 95th percentile, averaged
    /// over members: ≤ 1 typical of the training set, ≫ 1 out of distribution.
    pub ood_score: f64,
    /// Normalised entropy of the fuzzy memberships (0 = one cluster, 1 = none), member mean.
    pub membership_entropy: f64,
    /// First member's graph embedding (for nearest-neighbour search; Euclidean).
    pub embedding: Vec<f32>,
}

/// A trained accuracy predictor.
pub struct Predictor {
    pub config: ModelConfig,
    pub vocabulary: Vocabulary,
    pub members: Vec<Member>,
    pub device: Device,
}

impl Predictor {
    /// Featurises a graph for this predictor.
    pub fn prepare(&self, graph: CgGraphRef<'_>) -> Result<PreparedGraph> {
        PreparedGraph::new(graph, &self.config.features, self.config.encoder.layers)
    }

    /// Predictions for graphs.
    pub fn predict(&self, graphs: &[CgGraphRef<'_>]) -> Result<Vec<Prediction>> {
        let prepared = graphs
            .iter()
            .map(|g| self.prepare(*g))
            .collect::<Result<Vec<_>>>()?;
        self.predict_prepared(&prepared.iter().collect::<Vec<_>>())
    }

    /// Predictions for graphs already featurised by [`Predictor::prepare`].
    pub fn predict_prepared(&self, graphs: &[&PreparedGraph]) -> Result<Vec<Prediction>> {
        if graphs
            .iter()
            .any(|g| g.layers() != self.config.encoder.layers)
        {
            return Err(PredictError::Config(format!(
                "graph prepared for another encoder depth (need {} layers)",
                self.config.encoder.layers
            )));
        }
        let stop = Stop::current();
        let predict = |chunk: &[&PreparedGraph]| {
            if stop.raised() {
                return Err(PredictError::Cancelled);
            }
            self.predict_chunk(chunk)
        };
        let parts: Vec<Result<Vec<Prediction>>> = if graphs.len() <= PREDICT_CHUNK {
            vec![predict(graphs)]
        } else {
            on_pool(|| graphs.par_chunks(PREDICT_CHUNK).map(predict).collect())
        };
        let mut out = Vec::with_capacity(graphs.len());
        for part in parts {
            out.extend(part?);
        }
        Ok(out)
    }

    /// Predictions for one batch.
    fn predict_chunk(&self, chunk: &[&PreparedGraph]) -> Result<Vec<Prediction>> {
        let batch = Batch::new(chunk, &self.vocabulary, &self.device)?;
        let members = self.members.len();
        let mut accuracy = vec![Vec::with_capacity(members); chunk.len()];
        let mut ood = vec![0.0; chunk.len()];
        let mut entropy = vec![0.0; chunk.len()];
        let mut embeddings = Vec::new();
        for (m, member) in self.members.iter().enumerate() {
            let output = member.embed(&batch)?;
            let targets: Vec<f32> = member
                .targets(&output.embeddings, &output.memberships)?
                .to_vec1()?;
            let h = normalized_entropy(&output.memberships);
            for (i, g) in chunk.iter().enumerate() {
                accuracy[i].push(self.config.target.inverse(targets[i] as f64, g.flops));
                ood[i] += output.distance[i] / members as f64;
                entropy[i] += h[i] / members as f64;
            }
            if m == 0 {
                embeddings = output.embeddings.to_vec2::<f32>()?;
            }
        }
        Ok(embeddings
            .into_iter()
            .enumerate()
            .map(|(i, embedding)| {
                let (mean, std) = mean_std(&accuracy[i]);
                Prediction {
                    accuracy: mean,
                    std,
                    ood_score: ood[i],
                    membership_entropy: entropy[i],
                    embedding,
                }
            })
            .collect())
    }
}

/// Mean and sample standard deviation (0 for one value).
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_transform_round_trips() {
        let acc = [90.0, 80.0, 70.0];
        let flops = [2e9, 5e8, 0.0];
        let t = TargetTransform::fit(&acc, &flops, true, TargetScores::Z);
        let y: Vec<f64> = acc
            .iter()
            .zip(&flops)
            .map(|(&a, &f)| t.forward(a, f))
            .collect();
        assert!(y.iter().sum::<f64>().abs() < 1e-9, "z-scored: {y:?}");
        for ((&a, &f), &y) in acc.iter().zip(&flops).zip(&y) {
            assert!((t.inverse(y, f) - a).abs() < 1e-9);
        }
        // 2 GFLOPs: divisor log10(3) + 1.
        let plain = TargetTransform {
            flops_transform: true,
            mean: 0.0,
            std: 1.0,
            scores: TargetScores::Z,
            quantiles: Vec::new(),
        };
        assert!((plain.forward(90.0, 2e9) - 90.0 / (3f64.log10() + 1.0)).abs() < 1e-12);
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
    }

    #[test]
    fn quantile_targets_are_uniform_and_invertible() {
        // Skewed like NB201: a crowd near 90 and a tail down to 10.
        let acc: Vec<f64> = (0..200)
            .map(|i| {
                if i < 20 {
                    10.0 + i as f64
                } else {
                    85.0 + i as f64 / 40.0
                }
            })
            .collect();
        let flops = vec![1e8; acc.len()];
        let t = TargetTransform::fit(&acc, &flops, true, TargetScores::Uniform);
        let y: Vec<f64> = acc.iter().map(|&a| t.forward(a, 1e8)).collect();
        // Uniform scores: mean 0, variance 1 (up to the discrete grid), every target in ±√3.
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64;
        assert!(
            mean.abs() < 1e-9 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert!(y.iter().all(|v| v.abs() <= 3f64.sqrt() + 1e-9));
        assert!((y[0] + 3f64.sqrt()).abs() < 1e-9 && (y[199] - 3f64.sqrt()).abs() < 1e-9);
        // The tail's 20 cells get 10 % of the range, as many as their share of the cells.
        assert!((y[20] - y[0] - 3f64.sqrt() * 2.0 * 20.0 / 199.0).abs() < 1e-9);
        for (&a, &y) in acc.iter().zip(&y) {
            assert!((t.inverse(y, 1e8) - a).abs() < 1e-9, "{a} -> {y}");
        }
        // Beyond the training range the mapping extrapolates, still strictly increasing.
        let above = [
            t.forward(90.0, 1e8),
            t.forward(91.0, 1e8),
            t.forward(95.0, 1e8),
        ];
        assert!(above[0] < above[1] && above[1] < above[2], "{above:?}");
        assert!((t.inverse(above[2], 1e8) - 95.0).abs() < 1e-9);
        assert!(t.forward(5.0, 1e8) < t.forward(9.0, 1e8));
        // Ties collapse to one knot; a single distinct value falls back to z-scores.
        let single = TargetTransform::fit(&[50.0; 4], &[0.0; 4], false, TargetScores::Uniform);
        assert!(single.quantiles.is_empty() && single.scores == TargetScores::Z);
    }

    #[test]
    fn logistic_targets_stretch_the_tails_and_invert() {
        let acc: Vec<f64> = (0..101).map(|i| 50.0 + i as f64 * 0.4).collect();
        let t = TargetTransform::fit(&acc, &[0.0; 101], false, TargetScores::Logistic);
        let y: Vec<f64> = acc.iter().map(|&a| t.forward(a, 0.0)).collect();
        // Symmetric around the median, unit scale: knot i at logit((i + ½)/101) · √3/π.
        assert!(y[50].abs() < 1e-9 && (y[0] + y[100]).abs() < 1e-9);
        let expected = 3f64.sqrt() / std::f64::consts::PI * (100.5f64 / 0.5).ln();
        assert!((y[100] - expected).abs() < 1e-9, "{} vs {expected}", y[100]);
        // Equal accuracy steps: wider target steps at the ends than in the middle.
        assert!(y[100] - y[99] > 5.0 * (y[51] - y[50]));
        for (&a, &y) in acc.iter().zip(&y) {
            assert!((t.inverse(y, 0.0) - a).abs() < 1e-9, "{a} -> {y}");
        }
        // Continued linearly beyond the training range, both ways, and still invertible.
        for a in [20.0, 49.0, 91.0, 99.0] {
            let y = t.forward(a, 0.0);
            assert!((t.inverse(y, 0.0) - a).abs() < 1e-9, "{a} -> {y}");
        }
        assert!(t.forward(99.0, 0.0) > t.forward(91.0, 0.0) && t.forward(91.0, 0.0) > y[100]);
    }
}
