//! The k-GNN graph encoder (GENNAPE's CG baseline, Morris et al. 2019): node input = op-label
//! embedding + linear map of the numeric features; `layers` × GraphConv
//! `x'ᵢ = tanh(W₁xᵢ + W₂ Σ_{j→i} xⱼ + b)` with messages along edge direction; mean readout over
//! nodes; a two-layer MLP to the graph embedding.

use candle_core::{DType, Tensor};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::PredictError;
use super::batch::Batch;
use super::features::{NUM_GRAPH, NUM_NUMERIC};
use super::nn::{Dense, Params};

type Result<T> = std::result::Result<T, PredictError>;

/// Encoder sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Width of node states (GENNAPE: 32).
    pub hidden: usize,
    /// GraphConv layers (GENNAPE: 6).
    pub layers: usize,
    /// Width of the graph embedding.
    pub embedding: usize,
    /// Append the whole-graph features (log nodes, FLOPs, params) to the mean readout.
    pub graph_features: bool,
    /// Residual layers `x' = x + tanh(…)`, so that deep stacks do not saturate (off in
    /// GENNAPE; older artifacts lack the field and read as off).
    #[serde(default)]
    pub residual: bool,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            hidden: 32,
            layers: 6,
            embedding: 32,
            graph_features: true,
            residual: false,
        }
    }
}

/// One GraphConv layer.
pub struct GraphConv {
    own: Dense,
    neighbours: Tensor,
}

/// The encoder's parameters.
pub struct Encoder {
    op_embedding: Tensor,
    numeric: Dense,
    convs: Vec<GraphConv>,
    readout: [Dense; 2],
    graph_features: bool,
    residual: bool,
}

/// Dropout on node states (the contrastive views); masks come from a seeded generator.
pub struct Dropout<'a> {
    pub rate: f32,
    pub rng: &'a mut StdRng,
}

impl Dropout<'_> {
    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        let (rows, cols) = x.dims2()?;
        let keep = 1.0 - self.rate;
        let mask: Vec<f32> = (0..rows * cols)
            .map(|_| {
                if self.rng.random::<f32>() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect();
        Ok(x.mul(&Tensor::from_vec(mask, (rows, cols), x.device())?)?)
    }
}

impl Encoder {
    pub fn new(
        params: &mut Params,
        config: &EncoderConfig,
        vocabulary_rows: usize,
    ) -> Result<Self> {
        let h = config.hidden;
        let op_embedding = params
            .get("encoder.op_embedding", &[vocabulary_rows, h], 1.0)?
            .as_tensor()
            .clone();
        let numeric = Dense::new(params, "encoder.numeric", NUM_NUMERIC, h)?;
        let convs = (0..config.layers)
            .map(|l| {
                let name = format!("encoder.conv.{l}");
                let bound = 1.0 / (h as f64).sqrt();
                Ok(GraphConv {
                    own: Dense::new(params, &format!("{name}.own"), h, h)?,
                    neighbours: params
                        .get(&format!("{name}.neighbours.weight"), &[h, h], bound)?
                        .as_tensor()
                        .clone(),
                })
            })
            .collect::<Result<_>>()?;
        let pooled = h + if config.graph_features { NUM_GRAPH } else { 0 };
        let readout = [
            Dense::new(params, "encoder.readout.0", pooled, h)?,
            Dense::new(params, "encoder.readout.1", h, config.embedding)?,
        ];
        Ok(Self {
            op_embedding,
            numeric,
            convs,
            readout,
            graph_features: config.graph_features,
            residual: config.residual,
        })
    }

    /// Mean over each graph's nodes of the last GraphConv states, `graphs × hidden`, followed by
    /// the whole-graph features if the encoder uses them.
    pub fn pooled(&self, batch: &Batch, mut dropout: Option<Dropout>) -> Result<Tensor> {
        let mut x = self
            .op_embedding
            .index_select(&batch.labels, 0)?
            .add(&self.numeric.forward(&batch.numeric)?)?;
        let hidden = x.dim(1)?;
        for (conv, plan) in self.convs.iter().zip(&batch.layers) {
            if let Some(d) = dropout.as_mut() {
                x = d.apply(&x)?;
            }
            let own = conv.own.forward(&x)?.index_select(&plan.self_prev, 0)?;
            let updated = match &plan.edges {
                Some((src, dst)) => {
                    let messages = x.matmul(&conv.neighbours.t()?)?.index_select(src, 0)?;
                    let summed = Tensor::zeros((plan.rows, hidden), DType::F32, x.device())?
                        .index_add(dst, &messages, 0)?;
                    own.add(&summed)?
                }
                None => own,
            }
            .tanh()?;
            x = if self.residual {
                x.index_select(&plan.self_prev, 0)?.add(&updated)?
            } else {
                updated
            };
        }
        let weighted = x
            .index_select(&batch.pool_rows, 0)?
            .broadcast_mul(&batch.pool_weights)?;
        let mean = Tensor::zeros((batch.graphs, hidden), DType::F32, x.device())?.index_add(
            &batch.pool_graphs,
            &weighted,
            0,
        )?;
        Ok(if self.graph_features {
            Tensor::cat(&[mean, batch.graph_features.clone()], 1)?
        } else {
            mean
        })
    }

    /// Graph embeddings from pooled states, `graphs × embedding`.
    pub fn readout(&self, pooled: &Tensor) -> Result<Tensor> {
        self.readout[1].forward(&self.readout[0].forward(pooled)?.relu()?)
    }

    /// Graph embeddings of a batch.
    pub fn forward(&self, batch: &Batch, dropout: Option<Dropout>) -> Result<Tensor> {
        self.readout(&self.pooled(batch, dropout)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use rand::SeedableRng;

    use super::*;
    use crate::graph::StoredGraph;
    use crate::predict::batch::Vocabulary;
    use crate::predict::features::tests::node;
    use crate::predict::features::{FeatureConfig, PreparedGraph};
    use crate::predict::nn::Source;

    /// The encoder on every node of the graph, no deduplication: the definition.
    fn naive(encoder: &Encoder, graph: &StoredGraph, prepared: &PreparedGraph) -> Vec<f32> {
        let device = Device::Cpu;
        let vocabulary = Vocabulary::current();
        let n = graph.nodes.len();
        let labels: Vec<u32> = graph
            .nodes
            .iter()
            .map(|v| vocabulary.row(&v.label))
            .collect();
        let numeric: Vec<f32> = graph
            .nodes
            .iter()
            .flat_map(|v| FeatureConfig::default().numeric(v))
            .collect();
        let mut x = encoder
            .op_embedding
            .index_select(&Tensor::from_vec(labels, n, &device).unwrap(), 0)
            .unwrap()
            .add(
                &encoder
                    .numeric
                    .forward(&Tensor::from_vec(numeric, (n, NUM_NUMERIC), &device).unwrap())
                    .unwrap(),
            )
            .unwrap();
        let src: Vec<u32> = graph.edges.iter().map(|e| e[0]).collect();
        let dst: Vec<u32> = graph.edges.iter().map(|e| e[1]).collect();
        let (src, dst) = (
            Tensor::from_vec(src, graph.edges.len(), &device).unwrap(),
            Tensor::from_vec(dst, graph.edges.len(), &device).unwrap(),
        );
        for conv in &encoder.convs {
            let messages = x.matmul(&conv.neighbours.t().unwrap()).unwrap();
            let summed = x
                .zeros_like()
                .unwrap()
                .index_add(&dst, &messages.index_select(&src, 0).unwrap(), 0)
                .unwrap();
            let updated = conv
                .own
                .forward(&x)
                .unwrap()
                .add(&summed)
                .unwrap()
                .tanh()
                .unwrap();
            x = if encoder.residual {
                x.add(&updated).unwrap()
            } else {
                updated
            };
        }
        let mean = x.mean_keepdim(0).unwrap();
        let graph_features = Tensor::from_vec(prepared.graph.to_vec(), (1, NUM_GRAPH), &device);
        let pooled = Tensor::cat(&[mean, graph_features.unwrap()], 1).unwrap();
        encoder
            .readout(&pooled)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn deduplicated_message_passing_equals_the_definition() {
        // A random DAG over few distinct node kinds, so that many nodes share colours.
        let mut rng = StdRng::seed_from_u64(11);
        let kinds = [
            ("Conv", 16, true),
            ("ReLU", 16, false),
            ("Add", 16, false),
            ("Conv", 32, true),
        ];
        let nodes: Vec<_> = (0..40)
            .map(|i| {
                let (label, c, k) = if i == 0 {
                    ("Input", 3, false)
                } else {
                    kinds[rng.random_range(0..4)]
                };
                node(label, c, k)
            })
            .collect();
        let mut edges = Vec::new();
        for j in 1..40u32 {
            edges.push([rng.random_range(0..j), j]);
            if rng.random::<f32>() < 0.4 {
                edges.push([rng.random_range(0..j), j]);
            }
        }
        let graph = StoredGraph { nodes, edges };
        for residual in [false, true] {
            check_deduplication(&graph, residual, &mut rng);
        }
    }

    fn check_deduplication(graph: &StoredGraph, residual: bool, rng: &mut StdRng) {
        let config = EncoderConfig {
            hidden: 8,
            layers: 4,
            embedding: 8,
            graph_features: true,
            residual,
        };
        let vocabulary = Vocabulary::current();
        let mut params = Params::new(Source::Init(rng), &Device::Cpu);
        let encoder = Encoder::new(&mut params, &config, vocabulary.rows()).unwrap();
        let prepared = PreparedGraph::new(graph.as_cg(), &FeatureConfig::default(), 4).unwrap();
        let (rows, all) = prepared.unique_rows();
        assert!(
            rows < all,
            "the test graph must exercise deduplication: {rows} of {all}"
        );
        let batch = crate::predict::batch::Batch::new(&[&prepared], &vocabulary, &Device::Cpu);
        let fast: Vec<f32> = encoder
            .forward(&batch.unwrap(), None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, b) in fast.iter().zip(naive(&encoder, graph, &prepared)) {
            assert!((a - b).abs() < 1e-5, "residual {residual}: {a} vs {b}");
        }
    }
}
