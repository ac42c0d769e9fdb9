//! Instant accuracy prediction from computation graphs, GENNAPE-style (Mills et al., AAAI 2023):
//!
//! * [`features`]: node features of a CG and its WL-deduplicated message-passing plan;
//! * [`batch`]: graphs of different sizes in one batch without padding;
//! * [`encoder`]: the k-GNN encoder (6 × 32 GraphConv, tanh, mean readout, MLP);
//! * [`spectral`] + [`contrastive`]: soft-positive contrastive pre-training weighted by
//!   normalised-Laplacian spectra;
//! * [`fcm`]: fuzzy c-means on the embeddings (frozen centroids);
//! * [`model`]: ensemble members with one head per cluster, the FLOPs target transform, and
//!   predictions with uncertainty and an out-of-distribution score;
//! * [`train`]: training, validation and few-shot fine-tuning;
//! * rank metrics live in [`crate::stats`];
//! * [`artifact`]: the model as one safetensors blob; [`backend`]: CPU or CUDA;
//! * [`export`]: training sets, per node, for other trainers (the PyTorch one in `python/`);
//! * [`recipe`]: the recipe-conditioned predictor for any architecture (gradient-boosted trees
//!   over dataset, training recipe and a graph descriptor, with calibrated intervals and domain);
//! * [`target`]: what a predictor predicts.
//!
//! The module has no database code: `crate::training` trains against PostgreSQL and
//! `crate::http::registry` holds the active predictors of a serving process.
//!
//! `docs/predictor.md` describes the model, its artifact and its NB201 evaluation.

pub mod artifact;
pub mod backend;
pub mod batch;
pub mod contrastive;
pub mod encoder;
pub mod export;
pub mod fcm;
pub mod features;
pub mod model;
pub mod nn;
pub mod recipe;
pub mod spectral;
pub mod target;
pub mod train;

pub use crate::stats::Scores;
pub use backend::Backend;
pub use features::{CgGraphRef, FeatureConfig, PreparedGraph};
pub use model::{ModelConfig, Prediction, Predictor};
pub use target::{Aggregate, PredictorKind, Target};
pub use train::{EpochReport, FinetuneConfig, Stage, TrainConfig, TrainSample, train};

/// Why a prediction, training run or artifact failed.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("invalid graph: {0}")]
    InvalidGraph(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid artifact: {0}")]
    Artifact(String),
    #[error("invalid artifact: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("invalid artifact config: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("training cancelled")]
    Cancelled,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::Device;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::batch::{Batch, Vocabulary};
    use super::contrastive::ContrastiveConfig;
    use super::encoder::{Encoder, EncoderConfig};
    use super::features::tests::{branchy, node};
    use super::nn::{Params, Source};
    use super::*;
    use crate::graph::StoredGraph;

    /// A tiny family: `k` parallel conv branches of `c` channels, accuracy rising with both.
    fn family() -> Vec<(StoredGraph, f64)> {
        let mut out = Vec::new();
        for k in 1..=4 {
            for c in [4, 8, 16, 32, 64] {
                out.push((branchy(k, c), 50.0 + 5.0 * k as f64 + (c as f64).log2()));
            }
        }
        out
    }

    fn tiny_config(seed: u64) -> TrainConfig {
        TrainConfig {
            seed,
            ensemble: 2,
            encoder: EncoderConfig {
                hidden: 8,
                layers: 2,
                embedding: 8,
                graph_features: true,
                residual: false,
            },
            head_hidden: 8,
            contrastive: ContrastiveConfig {
                epochs: 1,
                batch_size: 8,
                ..ContrastiveConfig::default()
            },
            epochs: 4,
            batch_size: 8,
            clusters: 2,
            head_epochs: 2,
            validation_fraction: 0.2,
            ..TrainConfig::default()
        }
    }

    fn samples(config: &TrainConfig) -> Vec<TrainSample> {
        family()
            .iter()
            .map(|(g, acc)| TrainSample {
                graph: Arc::new(config.prepare(g.as_cg()).unwrap()),
                accuracy: Some(*acc),
            })
            .collect()
    }

    fn predict_all(p: &Predictor) -> Vec<Prediction> {
        let graphs = family();
        let refs: Vec<CgGraphRef> = graphs.iter().map(|(g, _)| g.as_cg()).collect();
        p.predict(&refs).unwrap()
    }

    #[test]
    fn batching_without_padding_matches_one_by_one() {
        let config = EncoderConfig {
            hidden: 8,
            layers: 3,
            embedding: 8,
            graph_features: true,
            residual: false,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let vocabulary = Vocabulary::current();
        let mut params = Params::new(Source::Init(&mut rng), &Device::Cpu);
        let encoder = Encoder::new(&mut params, &config, vocabulary.rows()).unwrap();
        let graphs: Vec<PreparedGraph> =
            [branchy(1, 4), branchy(3, 8), branchy(2, 4), branchy(5, 16)]
                .iter()
                .map(|g| PreparedGraph::new(g.as_cg(), &FeatureConfig::default(), 3).unwrap())
                .collect();
        let refs: Vec<&PreparedGraph> = graphs.iter().collect();
        let together = encoder
            .forward(&Batch::new(&refs, &vocabulary, &Device::Cpu).unwrap(), None)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (g, row) in refs.iter().zip(&together) {
            let alone = encoder
                .forward(&Batch::new(&[g], &vocabulary, &Device::Cpu).unwrap(), None)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (a, b) in alone[0].iter().zip(row) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn training_is_deterministic_and_artifacts_round_trip() {
        let config = tiny_config(3);
        let data = samples(&config);
        let mut reports = Vec::new();
        let first = train(&data, &config, &mut |r| {
            reports.push(r);
            true
        })
        .unwrap();
        let second = train(&data, &config, &mut |_| true).unwrap();
        let (a, b) = (predict_all(&first), predict_all(&second));
        assert_eq!(a, b, "same seed, same predictions bit for bit");
        assert!(a.iter().all(|p| p.accuracy.is_finite() && p.std > 0.0));
        assert_eq!(a[0].embedding.len(), 8);
        // Every stage reported, with validation τ outside pre-training.
        for stage in [Stage::Pretrain, Stage::Regression, Stage::Heads] {
            assert!(reports.iter().any(|r| r.stage == stage));
        }
        assert!(
            reports
                .iter()
                .filter(|r| r.stage != Stage::Pretrain)
                .all(|r| r.validation_kendall.is_some())
        );

        let other = train(&data, &tiny_config(4), &mut |_| true).unwrap();
        assert_ne!(predict_all(&other), a, "another seed, another model");

        let bytes = first.to_bytes().unwrap();
        let loaded = Predictor::from_bytes(&bytes, Backend::Cpu).unwrap();
        assert_eq!(loaded.config, first.config);
        assert_eq!(predict_all(&loaded), a, "same outputs after the round trip");
        assert!(Predictor::from_bytes(&bytes[..bytes.len() / 2], Backend::Cpu).is_err());
    }

    #[test]
    fn unusual_graphs_score_out_of_distribution() {
        let config = tiny_config(1);
        let predictor = train(&samples(&config), &config, &mut |_| true).unwrap();
        let typical = predict_all(&predictor);
        let mut nodes = vec![node("Input", 3, false)];
        for i in 0..30 {
            let mut n = node(
                if i % 2 == 0 { "LayerNorm" } else { "Softmax" },
                2048,
                false,
            );
            n.resolution = [197, 197, 1, 1, 768, 768];
            nodes.push(n);
        }
        let edges: Vec<[u32; 2]> = (0..30).map(|i| [i, i + 1]).collect();
        let unusual = predictor
            .predict(&[CgGraphRef {
                nodes: &nodes,
                edges: &edges,
            }])
            .unwrap();
        let max_typical = typical.iter().map(|p| p.ood_score).fold(0.0, f64::max);
        assert!(
            unusual[0].ood_score > max_typical,
            "{} vs {max_typical}",
            unusual[0].ood_score
        );
    }

    #[test]
    fn finetuning_fits_the_new_samples() {
        let config = tiny_config(2);
        let mut predictor = train(&samples(&config), &config, &mut |_| true).unwrap();
        // A "new family": the same graphs, 20 points less accurate.
        let shifted: Vec<TrainSample> = family()
            .iter()
            .map(|(g, acc)| TrainSample {
                graph: Arc::new(predictor.prepare(g.as_cg()).unwrap()),
                accuracy: Some(acc - 20.0),
            })
            .collect();
        let error = |p: &Predictor| {
            let refs: Vec<&PreparedGraph> = shifted.iter().map(|s| &*s.graph).collect();
            let predicted: Vec<f64> = p
                .predict_prepared(&refs)
                .unwrap()
                .iter()
                .map(|p| p.accuracy)
                .collect();
            let truth: Vec<f64> = shifted.iter().map(|s| s.accuracy.unwrap()).collect();
            crate::stats::mae(&predicted, &truth)
        };
        let before = error(&predictor);
        predictor
            .finetune(&shifted, &FinetuneConfig::default())
            .unwrap();
        assert!(
            error(&predictor) < before / 4.0,
            "{} → {}",
            before,
            error(&predictor)
        );
    }
}
