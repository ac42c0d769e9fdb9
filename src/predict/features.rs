//! Node features of a computation graph and its Weisfeiler–Lehman message-passing plan.
//!
//! A k-GNN layer's output at a node depends only on the node's previous state and the multiset
//! of its in-neighbours' previous states. So nodes with the same colour after `r` rounds of
//! in-neighbour colour refinement have bit-identical embeddings after `r` layers, and a layer
//! needs to be computed once per colour, not once per node. NB201 CGs repeat one cell 15 times,
//! so this is ~3× fewer rows than nodes, exactly (see `PreparedGraph::unique_rows`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use super::PredictError;
use super::spectral;
use crate::graph::CgNode;
use crate::graph::StoredGraph;

/// A computation graph as the predictor reads it: nodes in any order and `[source, target]`
/// edges, as `CompGraph` and the database's stored graphs hold them.
#[derive(Debug, Clone, Copy)]
pub struct CgGraphRef<'a> {
    pub nodes: &'a [CgNode],
    pub edges: &'a [[u32; 2]],
}

impl StoredGraph {
    /// The graph as the predictor reads it.
    pub fn as_cg(&self) -> CgGraphRef<'_> {
        CgGraphRef {
            nodes: &self.nodes,
            edges: &self.edges,
        }
    }
}

/// Names of the numeric node features, in order (stored in the artifact for other trainers).
pub const NUMERIC_FEATURES: [&str; 18] = [
    "log_h_in",
    "log_h_out",
    "log_w_in",
    "log_w_out",
    "log_c_in",
    "log_c_out",
    "kernel_h",
    "kernel_w",
    "log2_stride_h",
    "log2_stride_w",
    "log2_dilation",
    "log_groups",
    "groups_per_c_in",
    "bias",
    "has_weight",
    "log_params",
    "log_macs",
    "subgraph",
];
/// Number of numeric node features.
pub const NUM_NUMERIC: usize = NUMERIC_FEATURES.len();

/// Scales of the numeric features. Sizes are log-scaled, `ln(1+v)/ln(1+ref)`, rather than
/// GENNAPE's `v/ref`: CIFAR cells (C = 16–64, 32×32) and ImageNet nets (C = 2048, 224×224)
/// then both spread over [0, ~1.3] instead of one of them being squeezed near 0; unknown (0)
/// stays 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Reference H and W (GENNAPE: 256).
    pub spatial_ref: f64,
    /// Reference channel count (GENNAPE: 512).
    pub channel_ref: f64,
    /// Kernel sizes are divided by this (linear: 1, 3, 5, 7 are few and small).
    pub kernel_ref: f64,
    pub groups_ref: f64,
    pub params_ref: f64,
    pub macs_ref: f64,
    /// References of the whole-graph features (node count, FLOPs, parameters).
    pub graph_nodes_ref: f64,
    pub graph_flops_ref: f64,
    pub graph_params_ref: f64,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            spatial_ref: 256.0,
            channel_ref: 512.0,
            kernel_ref: 7.0,
            groups_ref: 512.0,
            params_ref: 1e7,
            macs_ref: 1e9,
            graph_nodes_ref: 1e4,
            graph_flops_ref: 1e11,
            graph_params_ref: 1e9,
        }
    }
}

fn log_scaled(value: f64, reference: f64) -> f32 {
    ((value.max(0.0)).ln_1p() / reference.ln_1p()) as f32
}

fn log2_at_least_1(values: &[i64], i: usize) -> f32 {
    (values.get(i).copied().unwrap_or(1).max(1) as f64).log2() as f32
}

impl FeatureConfig {
    /// The numeric features of one node (see [`NUMERIC_FEATURES`]).
    pub fn numeric(&self, node: &CgNode) -> [f32; NUM_NUMERIC] {
        let r = node.resolution.map(|v| v as f64);
        let kernel = |i: usize| {
            node.kernel
                .get(i)
                .or(node.kernel.first())
                .map_or(0.0, |&k| k as f64 / self.kernel_ref) as f32
        };
        let groups = node.groups.max(1) as f64;
        let groups_per_c_in = if r[4] > 0.0 {
            (groups / r[4]) as f32
        } else {
            0.0
        };
        let dilation = node.dilations.iter().copied().max().unwrap_or(1);
        [
            log_scaled(r[0], self.spatial_ref),
            log_scaled(r[1], self.spatial_ref),
            log_scaled(r[2], self.spatial_ref),
            log_scaled(r[3], self.spatial_ref),
            log_scaled(r[4], self.channel_ref),
            log_scaled(r[5], self.channel_ref),
            kernel(0),
            kernel(1),
            log2_at_least_1(&node.strides, 0),
            log2_at_least_1(&node.strides, 1.min(node.strides.len().saturating_sub(1))),
            log2_at_least_1(&[dilation], 0),
            log_scaled(groups - 1.0, self.groups_ref - 1.0),
            groups_per_c_in,
            node.bias as u8 as f32,
            node.weight_shape.is_some() as u8 as f32,
            log_scaled(node.params as f64, self.params_ref),
            log_scaled(node.macs as f64, self.macs_ref),
            node.subgraph as u8 as f32,
        ]
    }
}

/// Gives equal `u32` sequences equal ids, numbered in order of first appearance. Lookups borrow
/// the key, so only new colours allocate.
#[derive(Default)]
pub struct Interner {
    ids: HashMap<Box<[u32]>, u32, Xxh3DefaultBuilder>,
}

impl Interner {
    /// The id of `key`, and whether it is new.
    pub fn id(&mut self, key: &[u32]) -> (u32, bool) {
        if let Some(&id) = self.ids.get(key) {
            return (id, false);
        }
        let id = self.ids.len() as u32;
        self.ids.insert(key.into(), id);
        (id, true)
    }
}

/// Names of the whole-graph features the encoder can add to its mean readout, which by itself
/// cannot tell a graph's size (mean over nodes).
pub const GRAPH_FEATURES: [&str; 3] = ["log_nodes", "log_flops", "log_params"];
/// Number of whole-graph features.
pub const NUM_GRAPH: usize = GRAPH_FEATURES.len();

/// Distinct input rows of a graph: one per (label, numeric features).
#[derive(Debug, Clone)]
pub struct InputRow {
    pub label: String,
    pub numeric: [f32; NUM_NUMERIC],
}

/// One refinement round: for every colour of this round, its colour in the previous round and
/// the sorted multiset of its in-neighbours' previous colours (CSR).
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub self_prev: Vec<u32>,
    pub nbr_start: Vec<u32>,
    pub nbrs: Vec<u32>,
}

impl Round {
    pub fn len(&self) -> usize {
        self.self_prev.len()
    }

    pub fn is_empty(&self) -> bool {
        self.self_prev.is_empty()
    }

    pub fn neighbours(&self, colour: usize) -> &[u32] {
        &self.nbrs[self.nbr_start[colour] as usize..self.nbr_start[colour + 1] as usize]
    }
}

/// A computation graph featurised for the predictor: distinct input rows, the per-layer
/// message-passing plan over colours, and what the target transform and contrastive loss need.
/// Built once per graph and reusable across training runs (the spectrum is cached).
#[derive(Debug)]
pub struct PreparedGraph {
    pub num_nodes: usize,
    /// 2 × Σ node MACs (onnx-tool MACs, every CG node): the FLOPs of the target transform.
    pub flops: f64,
    /// See [`GRAPH_FEATURES`].
    pub graph: [f32; NUM_GRAPH],
    pub inputs: Vec<InputRow>,
    /// Rounds 1..=layers.
    pub rounds: Vec<Round>,
    /// Nodes per colour of the last round (for the mean readout).
    pub final_counts: Vec<u32>,
    edges: Vec<[u32; 2]>,
    spectrum: OnceLock<Vec<f64>>,
}

impl PreparedGraph {
    /// Featurises `graph` for an encoder of `layers` GraphConv layers.
    pub fn new(
        graph: CgGraphRef<'_>,
        features: &FeatureConfig,
        layers: usize,
    ) -> Result<Self, PredictError> {
        let n = graph.nodes.len();
        if n == 0 {
            return Err(PredictError::InvalidGraph("graph has no nodes".into()));
        }
        // In-neighbours as CSR.
        let mut start = vec![0u32; n + 1];
        for &[a, b] in graph.edges {
            if a as usize >= n || b as usize >= n {
                return Err(PredictError::InvalidGraph(format!(
                    "edge [{a}, {b}] refers to a node beyond {n}"
                )));
            }
            start[b as usize + 1] += 1;
        }
        for v in 0..n {
            start[v + 1] += start[v];
        }
        let mut fill = start.clone();
        let mut in_nbrs = vec![0u32; graph.edges.len()];
        for &[a, b] in graph.edges {
            in_nbrs[fill[b as usize] as usize] = a;
            fill[b as usize] += 1;
        }

        let mut inputs = Vec::new();
        let mut labels: HashMap<&str, u32> = HashMap::new();
        let mut interner = Interner::default();
        let mut key = Vec::with_capacity(NUM_NUMERIC + 1);
        let mut colour: Vec<u32> = graph
            .nodes
            .iter()
            .map(|node| {
                let numeric = features.numeric(node);
                let next = labels.len() as u32;
                key.clear();
                key.push(*labels.entry(node.label.as_str()).or_insert(next));
                key.extend(numeric.map(f32::to_bits));
                let (c, new) = interner.id(&key);
                if new {
                    inputs.push(InputRow {
                        label: node.label.clone(),
                        numeric,
                    });
                }
                c
            })
            .collect();

        let mut rounds = Vec::with_capacity(layers);
        for _ in 0..layers {
            let mut round = Round {
                nbr_start: vec![0],
                ..Round::default()
            };
            let mut interner = Interner::default();
            let next: Vec<u32> = (0..n)
                .map(|v| {
                    key.clear();
                    key.push(colour[v]);
                    let nbrs = &in_nbrs[start[v] as usize..start[v + 1] as usize];
                    key.extend(nbrs.iter().map(|&u| colour[u as usize]));
                    key[1..].sort_unstable();
                    let (c, new) = interner.id(&key);
                    if new {
                        round.self_prev.push(key[0]);
                        round.nbrs.extend_from_slice(&key[1..]);
                        round.nbr_start.push(round.nbrs.len() as u32);
                    }
                    c
                })
                .collect();
            colour = next;
            rounds.push(round);
        }
        let last = rounds.last().map_or(inputs.len(), Round::len);
        let mut final_counts = vec![0u32; last];
        for &c in &colour {
            final_counts[c as usize] += 1;
        }
        let flops = 2.0 * graph.nodes.iter().map(|node| node.macs as f64).sum::<f64>();
        let params: f64 = graph.nodes.iter().map(|node| node.params as f64).sum();
        Ok(Self {
            num_nodes: n,
            flops,
            graph: [
                log_scaled(n as f64, features.graph_nodes_ref),
                log_scaled(flops, features.graph_flops_ref),
                log_scaled(params, features.graph_params_ref),
            ],
            inputs,
            rounds,
            final_counts,
            edges: graph.edges.to_vec(),
            spectrum: OnceLock::new(),
        })
    }

    /// Number of GraphConv layers this plan is for.
    pub fn layers(&self) -> usize {
        self.rounds.len()
    }

    /// Rows computed per layer summed over layers, against nodes × layers without deduplication.
    pub fn unique_rows(&self) -> (usize, usize) {
        (
            self.rounds.iter().map(Round::len).sum(),
            self.num_nodes * self.rounds.len(),
        )
    }

    /// Normalised-Laplacian eigenvalues of the undirected graph, ascending (computed once).
    pub fn spectrum(&self) -> &[f64] {
        self.spectrum
            .get_or_init(|| spectral::normalized_laplacian_spectrum(self.num_nodes, &self.edges))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CG node with a label, channels and an optional 3×3 kernel: enough for tiny test graphs.
    pub fn node(label: &str, channels: i64, kernel: bool) -> CgNode {
        CgNode {
            label: label.into(),
            op_type: label.into(),
            name: String::new(),
            input_shape: None,
            output_shape: None,
            resolution: [32, 32, 32, 32, channels, channels],
            kernel: if kernel { vec![3, 3] } else { vec![] },
            strides: if kernel { vec![1, 1] } else { vec![] },
            dilations: vec![],
            groups: 1,
            bias: false,
            weight_shape: kernel.then(|| vec![channels, channels, 3, 3]),
            params: if kernel {
                (channels * channels * 9) as u64
            } else {
                0
            },
            macs: (channels * 32 * 32) as u64 * if kernel { 9 * channels as u64 } else { 1 },
            subgraph: false,
        }
    }

    /// Input → `k` parallel branches of (Conv, ReLU) → Add → Output.
    pub fn branchy(k: usize, channels: i64) -> StoredGraph {
        let mut nodes = vec![node("Input", 3, false)];
        let mut edges = Vec::new();
        for b in 0..k {
            let conv = nodes.len() as u32;
            nodes.push(node("Conv", channels + b as i64 % 2, true));
            nodes.push(node("ReLU", channels, false));
            edges.push([0, conv]);
            edges.push([conv, conv + 1]);
        }
        let add = nodes.len() as u32;
        nodes.push(node("Add", channels, false));
        nodes.push(node("Output", channels, false));
        for b in 0..k as u32 {
            edges.push([2 + 2 * b, add]);
        }
        edges.push([add, add + 1]);
        StoredGraph { nodes, edges }
    }

    #[test]
    fn identical_branches_share_colours() {
        // Four branches: channels alternate, so two distinct (Conv, ReLU) pairs.
        let g = PreparedGraph::new(branchy(4, 8).as_cg(), &FeatureConfig::default(), 3).unwrap();
        assert_eq!(g.num_nodes, 11);
        // Input, Conv(8), Conv(9), ReLU(8), Add, Output.
        assert_eq!(g.inputs.len(), 6);
        assert_eq!(g.rounds.len(), 3);
        assert_eq!(g.final_counts.iter().sum::<u32>(), 11);
        // The Add's in-neighbour multiset keeps multiplicities.
        let last = &g.rounds[0];
        assert!((0..last.len()).any(|c| last.neighbours(c).len() == 4));
        let (rows, nodes) = g.unique_rows();
        assert!(rows < nodes, "{rows} < {nodes}");
    }

    #[test]
    fn numeric_features_are_scaled() {
        let f = FeatureConfig::default().numeric(&node("Conv", 512, true));
        assert!(
            (f[4] - 1.0).abs() < 1e-6 && (f[0] - (33f64.ln() / 257f64.ln()) as f32).abs() < 1e-6
        );
        assert!((f[6] - 3.0 / 7.0).abs() < 1e-6 && f[8] == 0.0 && f[14] == 1.0);
        assert_eq!(f[11], 0.0, "one group is log 0");
    }

    #[test]
    fn rejects_bad_graphs() {
        let g = branchy(1, 4);
        let bad = [[0u32, 99u32]];
        let r = CgGraphRef {
            nodes: &g.nodes,
            edges: &bad,
        };
        assert!(PreparedGraph::new(r, &FeatureConfig::default(), 2).is_err());
        let empty = CgGraphRef {
            nodes: &[],
            edges: &[],
        };
        assert!(PreparedGraph::new(empty, &FeatureConfig::default(), 2).is_err());
    }
}
