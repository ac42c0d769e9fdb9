//! Training sets for other trainers (the PyTorch one in `python/archdb_torch`, run where a GPU
//! is): ONE safetensors file with the graphs **per node**, no Weisfeiler–Lehman deduplication
//! (that is an optimisation of archdb's encoder, tested equal to the per-node definition):
//!
//! | tensor | dtype, shape | content |
//! |---|---|---|
//! | `labels` | i64 `[N]` | embedding row of each node's op label (out of vocabulary: last row) |
//! | `numeric` | f32 `[N, 18]` | [`FeatureConfig::numeric`] of each node |
//! | `edges` | i64 `[E, 2]` | `[source, target]`, global node indices, graph after graph |
//! | `node_offsets` | i64 `[G + 1]` | graph `g` owns nodes `node_offsets[g]..node_offsets[g+1]` |
//! | `graph_features` | f32 `[G, 3]` | the whole-graph features of [`PreparedGraph`] |
//! | `flops` | f64 `[G]` | 2 × Σ node MACs (the target transform's FLOPs) |
//! | `accuracy` | f64 `[G]` | the training target, NaN when unlabelled |
//! | `spectral` | f32 `[G, q]` | the spectral signature contrastive pre-training weighs with |
//! | `architecture_ids` | i64 `[G]` | database ids (or any caller's ids) |
//!
//! The header's `__metadata__` holds `format = "archdb-training-set"`, `version`, and JSON
//! strings `vocabulary`, `features` ([`FeatureConfig`]), `numeric_features`, `graph_features`,
//! `target` (what `accuracy` is) and `train_config` (the [`TrainConfig`] to train with).

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::PredictError;
use super::batch::Vocabulary;
use super::features::{CgGraphRef, GRAPH_FEATURES, NUM_GRAPH, NUM_NUMERIC, NUMERIC_FEATURES};
use super::spectral::spectral_signature;
use super::train::TrainConfig;

type Result<T> = std::result::Result<T, PredictError>;

/// `format` of a training-set file.
pub const SET_FORMAT: &str = "archdb-training-set";
/// Layout version of the tensors above.
pub const SET_VERSION: u32 = 1;

/// One graph of a set.
#[derive(Debug, Clone, Copy)]
pub struct SetGraph<'a> {
    pub id: i64,
    pub graph: CgGraphRef<'a>,
    /// The target value (`None`: unlabelled, for pre-training and clustering only).
    pub accuracy: Option<f64>,
}

/// The training-set file of `graphs`, featurised as `config` prescribes; `target` describes
/// what the accuracies are (stored as is).
pub fn training_set<T: Serialize>(
    graphs: &[SetGraph<'_>],
    config: &TrainConfig,
    target: &T,
) -> Result<Vec<u8>> {
    let vocabulary = Vocabulary::current();
    let eigenvalues = config.contrastive.eigenvalues;
    let (mut labels, mut numeric, mut edges) = (Vec::new(), Vec::new(), Vec::new());
    let mut node_offsets = vec![0i64];
    let mut graph_features = Vec::with_capacity(graphs.len() * NUM_GRAPH);
    let mut flops = Vec::with_capacity(graphs.len());
    let mut spectral = Vec::with_capacity(graphs.len() * eigenvalues);
    for g in graphs {
        // The same featurisation (and validation) as archdb's own training.
        let prepared = config.prepare(g.graph)?;
        let base = *node_offsets.last().expect("starts with 0");
        for node in g.graph.nodes {
            labels.push(vocabulary.row(&node.label) as i64);
            numeric.extend(config.features.numeric(node));
        }
        edges.extend(
            g.graph
                .edges
                .iter()
                .flat_map(|&[a, b]| [base + a as i64, base + b as i64]),
        );
        node_offsets.push(base + g.graph.nodes.len() as i64);
        graph_features.extend(prepared.graph);
        flops.push(prepared.flops);
        spectral.extend(spectral_signature(prepared.spectrum(), eigenvalues));
    }
    let (n, e, count) = (labels.len(), edges.len() / 2, graphs.len());
    let cpu = &Device::Cpu;
    let tensors = [
        ("labels", Tensor::from_vec(labels, n, cpu)?),
        ("numeric", Tensor::from_vec(numeric, (n, NUM_NUMERIC), cpu)?),
        ("edges", Tensor::from_vec(edges, (e, 2), cpu)?),
        ("node_offsets", Tensor::new(node_offsets, cpu)?),
        (
            "graph_features",
            Tensor::from_vec(graph_features, (count, NUM_GRAPH), cpu)?,
        ),
        ("flops", Tensor::from_vec(flops, count, cpu)?),
        (
            "accuracy",
            Tensor::from_iter(graphs.iter().map(|g| g.accuracy.unwrap_or(f64::NAN)), cpu)?,
        ),
        (
            "spectral",
            Tensor::from_vec(spectral, (count, eigenvalues), cpu)?,
        ),
        (
            "architecture_ids",
            Tensor::from_iter(graphs.iter().map(|g| g.id), cpu)?,
        ),
    ];
    let metadata = HashMap::from([
        ("format".to_string(), SET_FORMAT.to_string()),
        ("version".to_string(), SET_VERSION.to_string()),
        (
            "vocabulary".to_string(),
            serde_json::to_string(vocabulary.labels())?,
        ),
        (
            "features".to_string(),
            serde_json::to_string(&config.features)?,
        ),
        (
            "numeric_features".to_string(),
            serde_json::to_string(&NUMERIC_FEATURES)?,
        ),
        (
            "graph_features".to_string(),
            serde_json::to_string(&GRAPH_FEATURES)?,
        ),
        ("target".to_string(), serde_json::to_string(target)?),
        ("train_config".to_string(), serde_json::to_string(config)?),
    ]);
    Ok(safetensors::serialize(
        tensors.iter().map(|(name, t)| (*name, t)),
        Some(metadata),
    )?)
}

/// The ids and accuracies (NaN: unlabelled) of a training-set file, in graph order.
pub fn set_ids(bytes: &[u8]) -> Result<(Vec<i64>, Vec<f64>)> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)?;
    let format = header.metadata().as_ref().and_then(|m| m.get("format"));
    if format.map(String::as_str) != Some(SET_FORMAT) {
        return Err(PredictError::Artifact(format!("not an {SET_FORMAT} file")));
    }
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
    let get = |name: &str| {
        tensors
            .get(name)
            .ok_or_else(|| PredictError::Artifact(format!("missing tensor '{name}'")))
    };
    let ids = get("architecture_ids")?.to_vec1::<i64>()?;
    let accuracy = get("accuracy")?.to_vec1::<f64>()?;
    if ids.len() != accuracy.len() {
        return Err(PredictError::Artifact(
            "architecture_ids and accuracy differ in length".into(),
        ));
    }
    Ok((ids, accuracy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::features::tests::branchy;

    #[test]
    fn sets_hold_every_node_and_edge_with_offsets() {
        let graphs = [branchy(1, 4), branchy(3, 8)];
        let set: Vec<SetGraph> = graphs
            .iter()
            .enumerate()
            .map(|(i, g)| SetGraph {
                id: 10 + i as i64,
                graph: g.as_cg(),
                accuracy: (i == 0).then_some(70.0),
            })
            .collect();
        let config = TrainConfig::default();
        let bytes = training_set(&set, &config, &"test target").unwrap();
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
        let offsets = tensors["node_offsets"].to_vec1::<i64>().unwrap();
        let (n0, n1) = (graphs[0].nodes.len() as i64, graphs[1].nodes.len() as i64);
        assert_eq!(offsets, vec![0, n0, n0 + n1]);
        let edges = tensors["edges"].to_vec2::<i64>().unwrap();
        assert_eq!(edges.len(), graphs[0].edges.len() + graphs[1].edges.len());
        // The second graph's edges are shifted by the first graph's nodes.
        let e0 = graphs[0].edges.len();
        assert_eq!(
            edges[e0],
            vec![
                graphs[1].edges[0][0] as i64 + n0,
                graphs[1].edges[0][1] as i64 + n0
            ]
        );
        let numeric = tensors["numeric"].to_vec2::<f32>().unwrap();
        assert_eq!(
            numeric[n0 as usize + 1],
            config.features.numeric(&graphs[1].nodes[1]).to_vec()
        );
        let labels = tensors["labels"].to_vec1::<i64>().unwrap();
        let vocabulary = Vocabulary::current();
        assert_eq!(labels[1], vocabulary.row(&graphs[0].nodes[1].label) as i64);
        assert_eq!(
            tensors["spectral"].dims(),
            &[2, config.contrastive.eigenvalues]
        );
        let (ids, accuracy) = set_ids(&bytes).unwrap();
        assert_eq!(ids, vec![10, 11]);
        assert!(accuracy[0] == 70.0 && accuracy[1].is_nan());
        assert!(set_ids(b"not a set").is_err());
    }
}
