//! Batching graphs of different sizes without padding: the colours of every graph's message-
//! passing plan are interned across the batch, so each layer is one dense tensor of the batch's
//! distinct rows, messages are `index_select` + `index_add` over concatenated edge lists, and the
//! mean readout is an `index_add` of count-weighted rows into per-graph slots.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::PredictError;
use super::features::{Interner, NUM_GRAPH, NUM_NUMERIC, PreparedGraph};

/// Label → embedding row; labels not in the vocabulary share the last row (out of vocabulary).
#[derive(Debug, Clone)]
pub struct Vocabulary {
    labels: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocabulary {
    pub fn new(labels: Vec<String>) -> Self {
        let index = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i as u32))
            .collect();
        Self { labels, index }
    }

    /// The current op vocabulary of archdb's registry.
    pub fn current() -> Self {
        Self::new(
            crate::graph::ops::vocabulary()
                .into_iter()
                .map(String::from)
                .collect(),
        )
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Rows of the embedding table: the labels plus one out-of-vocabulary row.
    pub fn rows(&self) -> usize {
        self.labels.len() + 1
    }

    pub fn row(&self, label: &str) -> u32 {
        self.index
            .get(label)
            .copied()
            .unwrap_or(self.labels.len() as u32)
    }
}

/// Index tensors of one GraphConv layer over the batch's distinct rows.
pub struct LayerPlan {
    /// Rows of this layer.
    pub rows: usize,
    /// For each row, its own row in the previous layer.
    pub self_prev: Tensor,
    /// Messages: previous-layer source row → this layer's target row (empty: no edges).
    pub edges: Option<(Tensor, Tensor)>,
}

/// A batch of graphs ready for the encoder.
pub struct Batch {
    pub graphs: usize,
    /// Embedding row of every distinct input row.
    pub labels: Tensor,
    /// Numeric features of every distinct input row, `rows × NUM_NUMERIC`.
    pub numeric: Tensor,
    pub layers: Vec<LayerPlan>,
    /// Readout: last-layer row, graph, and weight count/nodes of each (graph, row) pair.
    pub pool_rows: Tensor,
    pub pool_graphs: Tensor,
    pub pool_weights: Tensor,
    /// Whole-graph features, `graphs × NUM_GRAPH`.
    pub graph_features: Tensor,
}

impl Batch {
    pub fn new(
        graphs: &[&PreparedGraph],
        vocabulary: &Vocabulary,
        device: &Device,
    ) -> Result<Self, PredictError> {
        let layers = graphs.first().map_or(0, |g| g.layers());
        if graphs.iter().any(|g| g.layers() != layers) {
            return Err(PredictError::Config(
                "graphs prepared for different layer counts".into(),
            ));
        }
        // Round 0: distinct (label, features) rows over the batch.
        let mut labels = Vec::new();
        let mut numeric = Vec::new();
        let mut interner = Interner::default();
        let mut key = Vec::with_capacity(NUM_NUMERIC + 1);
        let mut maps: Vec<Vec<u32>> = graphs
            .iter()
            .map(|g| {
                g.inputs
                    .iter()
                    .map(|row| {
                        let label = vocabulary.row(&row.label);
                        key.clear();
                        key.push(label);
                        key.extend(row.numeric.map(f32::to_bits));
                        let (id, new) = interner.id(&key);
                        if new {
                            labels.push(label);
                            numeric.extend_from_slice(&row.numeric);
                        }
                        id
                    })
                    .collect()
            })
            .collect();

        let mut plans = Vec::with_capacity(layers);
        for layer in 0..layers {
            let mut interner = Interner::default();
            let (mut self_prev, mut src, mut dst) = (Vec::new(), Vec::new(), Vec::new());
            for (g, map) in graphs.iter().zip(maps.iter_mut()) {
                let round = &g.rounds[layer];
                *map = (0..round.len())
                    .map(|c| {
                        key.clear();
                        key.push(map[round.self_prev[c] as usize]);
                        key.extend(round.neighbours(c).iter().map(|&u| map[u as usize]));
                        key[1..].sort_unstable();
                        let (id, new) = interner.id(&key);
                        if new {
                            self_prev.push(key[0]);
                            src.extend_from_slice(&key[1..]);
                            dst.extend(std::iter::repeat_n(id, key.len() - 1));
                        }
                        id
                    })
                    .collect();
            }
            let edges = if src.is_empty() {
                None
            } else {
                let n = src.len();
                Some((
                    Tensor::from_vec(src, n, device)?,
                    Tensor::from_vec(dst, n, device)?,
                ))
            };
            let rows = self_prev.len();
            plans.push(LayerPlan {
                rows,
                self_prev: Tensor::from_vec(self_prev, rows, device)?,
                edges,
            });
        }

        let (mut pool_rows, mut pool_graphs, mut pool_weights) =
            (Vec::new(), Vec::new(), Vec::new());
        for (g, (graph, map)) in graphs.iter().zip(&maps).enumerate() {
            for (c, &count) in graph.final_counts.iter().enumerate() {
                pool_rows.push(map[c]);
                pool_graphs.push(g as u32);
                pool_weights.push(count as f32 / graph.num_nodes as f32);
            }
        }
        let pooled = pool_rows.len();
        let rows = labels.len();
        Ok(Self {
            graphs: graphs.len(),
            labels: Tensor::from_vec(labels, rows, device)?,
            numeric: Tensor::from_vec(numeric, (rows, NUM_NUMERIC), device)?,
            layers: plans,
            pool_rows: Tensor::from_vec(pool_rows, pooled, device)?,
            pool_graphs: Tensor::from_vec(pool_graphs, pooled, device)?,
            pool_weights: Tensor::from_vec(pool_weights, (pooled, 1), device)?,
            graph_features: Tensor::from_vec(
                graphs.iter().flat_map(|g| g.graph).collect::<Vec<_>>(),
                (graphs.len(), NUM_GRAPH),
                device,
            )?,
        })
    }
}
