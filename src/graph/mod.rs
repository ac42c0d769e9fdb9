//! The computation graph (CG): GENNAPE's representation adapted to ONNX. One node per primitive
//! compute op, weights folded into their consumer as features, shape-only ops bypassed, explicit
//! input and output nodes. See `docs/graph.md` for the rules and the label vocabulary.

mod builder;
pub mod hash;
pub mod ops;
#[cfg(test)]
mod robustness;
pub mod shape;

use std::collections::BTreeMap;

use petgraph::graph::DiGraph;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use builder::{BuildOptions, build, tensor_shapes};

/// One node of a computation graph with its GENNAPE-style features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CgNode {
    /// Label in archdb's op vocabulary (`Conv`, `DepthwiseConv`, `ReLU6`, `Input`, …).
    pub label: String,
    /// The ONNX op type the node came from (empty for `Input`/`Output`).
    pub op_type: String,
    /// ONNX node (or graph input/output) name; informational, never hashed.
    pub name: String,
    /// Shape of the first data input (batch 1), when known.
    pub input_shape: Option<Vec<i64>>,
    /// Shape of the first output (batch 1), when known.
    pub output_shape: Option<Vec<i64>>,
    /// `[H_in, H_out, W_in, W_out, C_in, C_out]`, 0 where unknown.
    pub resolution: [i64; 6],
    /// Spatial kernel size of windowed ops (Conv, pools); empty otherwise.
    pub kernel: Vec<i64>,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    /// Convolution groups (1 for other ops).
    pub groups: i64,
    /// Whether the op adds a learned bias.
    pub bias: bool,
    /// Shape of the folded weight tensor (Conv/Gemm/MatMul weights), when there is one.
    pub weight_shape: Option<Vec<i64>>,
    /// Trainable parameters folded into this node.
    pub params: u64,
    /// Multiply-accumulates of this node (including bypassed ops folded into it: none count).
    pub macs: u64,
    /// Control-flow op (If/Loop/Scan) whose subgraphs are recorded as this one node.
    #[serde(default)]
    pub subgraph: bool,
}

/// Whole-graph figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GraphSummary {
    /// Elements of the floating-point weight tensors (BatchNorm running statistics excluded).
    pub params: u64,
    /// Multiply-accumulates of one forward pass at batch 1 (onnx-tool conventions).
    pub macs: u64,
    pub num_nodes: usize,
    pub num_edges: usize,
    /// Compute nodes on the longest input→output path.
    pub depth: usize,
    /// Shape of the first graph input, symbolic dims bound to 1.
    pub input_shape: Vec<i64>,
    /// CG label histogram (Input/Output excluded).
    pub op_counts: BTreeMap<String, u64>,
    /// Number of nodes in the ONNX graph after inlining local functions.
    pub onnx_nodes: usize,
    pub opset: Option<i64>,
    pub ir_version: Option<i64>,
    pub producer: String,
    /// ONNX op types the registry does not know (shape unknown, MACs 0).
    pub unknown_ops: Vec<String>,
    /// CG nodes whose output shape could not be inferred.
    pub unknown_shapes: usize,
}

/// A computation graph: nodes in topological order and their featureless directed edges.
#[derive(Debug, Clone)]
pub struct CompGraph {
    pub graph: DiGraph<CgNode, ()>,
    pub summary: GraphSummary,
}

impl CompGraph {
    /// Edges as `(source, target)` node-index pairs.
    pub fn edge_list(&self) -> Vec<[u32; 2]> {
        self.graph
            .raw_edges()
            .iter()
            .map(|e| [e.source().index() as u32, e.target().index() as u32])
            .collect()
    }
}

/// Graphviz rendering of a computation graph (`?format=dot`).
pub fn to_dot(nodes: &[CgNode], edges: &[[u32; 2]]) -> String {
    let mut out =
        String::from("digraph cg {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n");
    for (i, n) in nodes.iter().enumerate() {
        let shape = n
            .output_shape
            .as_ref()
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "  n{i} [label=\"{}\\n{shape}\"];\n",
            n.label.replace('"', "'")
        ));
    }
    for [a, b] in edges {
        out.push_str(&format!("  n{a} -> n{b};\n"));
    }
    out.push_str("}\n");
    out
}

/// The stored computation graph: nodes (topological order) and `[source, target]` edges.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoredGraph {
    pub nodes: Vec<CgNode>,
    pub edges: Vec<[u32; 2]>,
}

/// First byte of [`StoredGraph::encode`]'s output. postcard is not self-describing: bump this
/// whenever `CgNode` or `StoredGraph` change, and keep decoding the forms databases hold.
const STORED_FORMAT: u8 = 1;

/// Why stored graph bytes could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoredGraphError {
    #[error("stored graph of unknown format {0} (written by a newer archdb?)")]
    UnknownFormat(u8),
    #[error("stored graph is empty")]
    Empty,
    #[error("stored graph is corrupt: {0}")]
    Decompress(#[from] lz4_flex::block::DecompressError),
    #[error("stored graph is corrupt: {0}")]
    Decode(#[from] postcard::Error),
}

impl StoredGraph {
    /// The form the database keeps (`architecture_graphs.graph`): a format byte, then the
    /// postcard encoding of the graph, lz4-compressed. About 20× smaller than the graph as JSON,
    /// and cheap to write: the server stores the bytes as they are, instead of parsing JSON.
    pub fn encode(graph: &CompGraph) -> Vec<u8> {
        /// `StoredGraph` with borrowed nodes: the same postcard bytes without cloning them.
        #[derive(Serialize)]
        struct Borrowed<'a> {
            nodes: Vec<&'a CgNode>,
            edges: Vec<[u32; 2]>,
        }
        let plain = postcard::to_stdvec(&Borrowed {
            nodes: graph.graph.node_weights().collect(),
            edges: graph.edge_list(),
        })
        .expect("postcard encodes every CgNode");
        let mut out = vec![STORED_FORMAT];
        out.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
        out
    }

    /// Reads back [`StoredGraph::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoredGraphError> {
        match bytes.split_first() {
            None => Err(StoredGraphError::Empty),
            Some((&STORED_FORMAT, compressed)) => {
                let plain = lz4_flex::decompress_size_prepended(compressed)?;
                Ok(postcard::from_bytes(&plain)?)
            }
            Some((&format, _)) => Err(StoredGraphError::UnknownFormat(format)),
        }
    }
}

impl From<&CompGraph> for StoredGraph {
    fn from(graph: &CompGraph) -> Self {
        Self {
            nodes: graph.graph.node_weights().cloned().collect(),
            edges: graph.edge_list(),
        }
    }
}
