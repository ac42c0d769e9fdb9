//! GENNAPE's contrastive pre-training (paper Eq. 1; Han, Mills et al., SDM'23): each graph of a
//! batch is encoded twice with dropout; a projection head maps embeddings to the unit sphere;
//! every other view in the batch is a *soft* positive of an anchor, weighted by
//! `softmax_ℓ(−σ(i, ℓ)/T)` where σ is the Euclidean distance between the `q` smallest
//! normalised-Laplacian eigenvalues of the two undirected CGs (the anchor's own second view has
//! σ = 0 and so the largest weight). The loss is the α-weighted SupCon cross-entropy
//! `−Σ_ℓ α_iℓ log softmax_ℓ(z_i·z_ℓ/τ)` over ℓ ≠ i.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::PredictError;
use super::nn::{Dense, Params};

type Result<T> = std::result::Result<T, PredictError>;

/// Contrastive pre-training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContrastiveConfig {
    /// Passes over all graphs (labelled and unlabelled); 0 = no pre-training.
    pub epochs: usize,
    /// Graphs per batch (2 × views).
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Dropout rate on node states that makes the two views.
    pub dropout: f32,
    /// τ of the cosine similarities.
    pub temperature: f64,
    /// T of the soft-positive softmax over spectral distances.
    pub spectral_temperature: f64,
    /// Eigenvalues per spectral signature (GENNAPE: 21).
    pub eigenvalues: usize,
    /// Width of the projection head's output.
    pub projection: usize,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            learning_rate: 1e-3,
            dropout: 0.1,
            temperature: 0.1,
            spectral_temperature: 0.05,
            eigenvalues: 21,
            projection: 16,
        }
    }
}

/// The projection head, used only during pre-training (not saved).
pub struct Projection {
    layers: [Dense; 2],
}

impl Projection {
    pub fn new(params: &mut Params, embedding: usize, projection: usize) -> Result<Self> {
        Ok(Self {
            layers: [
                Dense::new(params, "projection.0", embedding, embedding)?,
                Dense::new(params, "projection.1", embedding, projection)?,
            ],
        })
    }

    /// Unit-norm projections of embeddings.
    pub fn forward(&self, embeddings: &Tensor) -> Result<Tensor> {
        let z = self.layers[1].forward(&self.layers[0].forward(embeddings)?.relu()?)?;
        let norm = z.sqr()?.sum_keepdim(1)?.sqrt()?.affine(1.0, 1e-8)?;
        Ok(z.broadcast_div(&norm)?)
    }
}

/// Soft-positive weights for `2N` views (rows `0..N` and `N..2N` are the two views of graphs
/// `0..N`): a `2N × 2N` row-major matrix, zero diagonal, rows summing to 1.
pub fn soft_positive_weights(signatures: &[Vec<f32>], spectral_temperature: f64) -> Vec<f32> {
    let n = signatures.len();
    let views = 2 * n;
    let distance = |a: usize, b: usize| -> f64 {
        signatures[a % n]
            .iter()
            .zip(&signatures[b % n])
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut alpha = vec![0f32; views * views];
    for i in 0..views {
        let logits: Vec<f64> = (0..views)
            .map(|l| {
                if l == i {
                    f64::NEG_INFINITY
                } else {
                    -distance(i, l) / spectral_temperature
                }
            })
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = logits.iter().map(|&x| (x - max).exp()).sum();
        for (l, &x) in logits.iter().enumerate() {
            alpha[i * views + l] = ((x - max).exp() / total) as f32;
        }
    }
    alpha
}

/// The soft-positive contrastive loss of unit-norm projections `z` (`2N × p`) with weights
/// `alpha` from [`soft_positive_weights`].
pub fn contrastive_loss(z: &Tensor, alpha: &[f32], temperature: f64) -> Result<Tensor> {
    let views = z.dim(0)?;
    let device: &Device = z.device();
    let similarities = z.matmul(&z.t()?)?.affine(1.0 / temperature, 0.0)?;
    // The anchor itself is excluded from the softmax's denominator.
    let diagonal: Vec<f32> = (0..views * views)
        .map(|k| if k / views == k % views { -1e9 } else { 0.0 })
        .collect();
    let masked = similarities.add(&Tensor::from_vec(diagonal, (views, views), device)?)?;
    let log_p = candle_nn::ops::log_softmax(&masked, 1)?;
    let alpha = Tensor::from_vec(alpha.to_vec(), (views, views), device)?;
    Ok(log_p
        .mul(&alpha)?
        .sum_all()?
        .affine(-1.0 / views as f64, 0.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_prefer_the_other_view_and_similar_graphs() {
        let sigs = vec![vec![0.0, 0.1], vec![0.0, 0.11], vec![1.0, 1.0]];
        let alpha = soft_positive_weights(&sigs, 0.05);
        let views = 6;
        for i in 0..views {
            let row = &alpha[i * views..(i + 1) * views];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert_eq!(row[i], 0.0);
        }
        // Anchor 0 (graph 0, view a): its own other view (3) ≥ graph 1's views ≫ graph 2's.
        let row = &alpha[..views];
        assert!(row[3] > row[1] && row[1] > 100.0 * row[2]);
    }

    #[test]
    fn loss_is_lower_when_positives_agree() {
        let device = Device::Cpu;
        let sigs = vec![vec![0.0], vec![5.0]];
        let alpha = soft_positive_weights(&sigs, 0.05);
        // Views of the same graph equal and far from the other graph: low loss.
        let aligned = Tensor::from_vec(
            vec![1f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
            (4, 2),
            &device,
        )
        .unwrap();
        let crossed = Tensor::from_vec(
            vec![1f32, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0],
            (4, 2),
            &device,
        )
        .unwrap();
        let low = contrastive_loss(&aligned, &alpha, 0.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let high = contrastive_loss(&crossed, &alpha, 0.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(low < 0.01 && high > 5.0, "{low} {high}");
    }
}
