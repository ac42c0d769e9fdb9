//! The predictor: an ensemble of members, each a k-GNN encoder, frozen fuzzy c-means centroids on
//! its embedding space and one MLP head per cluster. A member predicts the membership-weighted
//! sum of its heads in the FLOPs-transformed target space; the ensemble's mean accuracy is the
//! prediction, the members' spread its uncertainty, and the distance to the nearest centroid
//! (relative to the training graphs') plus the membership entropy the out-of-distribution score.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::PredictError;
use super::batch::{Batch, Vocabulary};
use super::encoder::{Encoder, EncoderConfig};
use super::fcm::{Fcm, normalized_entropy};
use super::features::{CgGraphRef, FeatureConfig, PreparedGraph};
use super::nn::{Dense, Params};

type Result<T> = std::result::Result<T, PredictError>;

/// Graphs per forward pass at inference (bounds memory, keeps the batch's rows cache-friendly).
const PREDICT_CHUNK: usize = 512;

/// GENNAPE's target transform (Eq. 5): `y = Z(A / (log10(GFLOPs + 1) + 1))` with FLOPs = 2 ×
/// MACs, Z the z-score of the training targets; with `flops_transform` off, `y = Z(A)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetTransform {
    pub flops_transform: bool,
    pub mean: f64,
    pub std: f64,
}

impl TargetTransform {
    pub fn fit(accuracies: &[f64], flops: &[f64], flops_transform: bool) -> Self {
        let mut t = Self {
            flops_transform,
            mean: 0.0,
            std: 1.0,
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
        (accuracy / self.divisor(flops) - self.mean) / self.std
    }

    /// Target → accuracy.
    pub fn inverse(&self, target: f64, flops: f64) -> f64 {
        (target * self.std + self.mean) * self.divisor(flops)
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
    /// Threads a large `predict` call spreads its 512-graph chunks over (default: available
    /// cores; results do not depend on it). Single graphs always run on the calling thread.
    pub threads: usize,
}

/// Default for [`Predictor::threads`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
        let chunks: Vec<&[&PreparedGraph]> = graphs.chunks(PREDICT_CHUNK).collect();
        let threads = self.threads.clamp(1, chunks.len().max(1));
        let per_thread = chunks.len().div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<Prediction>>> = if threads == 1 {
            chunks.iter().map(|c| self.predict_chunk(c)).collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunks
                    .chunks(per_thread)
                    .map(|mine| {
                        s.spawn(move || {
                            mine.iter()
                                .map(|c| self.predict_chunk(c))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("prediction thread panicked"))
                    .collect()
            })
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
        let t = TargetTransform::fit(&acc, &flops, true);
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
        };
        assert!((plain.forward(90.0, 2e9) - 90.0 / (3f64.log10() + 1.0)).abs() < 1e-12);
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
    }
}
