//! The ingest pipeline shared by the HTTP API and the CLI: bytes → validated model → CG → hash,
//! plus the stored (weight-stripped) ONNX.

use prost::Message;

use crate::graph::{self, BuildOptions, CompGraph};
use crate::onnx::{self, OnnxError};

/// A model ready to be stored.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub graph: CompGraph,
    pub graph_hash: String,
    /// The model with weight payloads removed (dims kept), re-encoded.
    pub stripped_onnx: Vec<u8>,
    /// Size of the upload in bytes.
    pub original_size: usize,
}

/// Parses, builds and hashes one ONNX model. CPU-bound: call from a blocking task.
pub fn ingest(bytes: bytes::Bytes, options: BuildOptions) -> Result<Ingested, OnnxError> {
    let original_size = bytes.len();
    let mut model = onnx::decode_model(bytes)?;
    let graph = graph::build(&mut model, options)?;
    let graph_hash = graph::hash::graph_hash(&graph);
    onnx::strip_weights(&mut model);
    Ok(Ingested {
        graph,
        graph_hash,
        stripped_onnx: model.encode_to_vec(),
        original_size,
    })
}
