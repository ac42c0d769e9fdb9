//! Budgets checked on the protobuf wire format *before* a model is decoded. prost allocates every
//! repeated field while decoding, so a 2 MB file of one million empty `NodeProto`s costs hundreds
//! of MB before any count can be checked on the decoded model. [`scan`] walks the wire format
//! with the ONNX schema's message nesting, allocating nothing, and counts what decoding would
//! create; [`Limits::check`] then refuses the file before prost sees it.

use std::fmt;
use std::mem::size_of;

use super::OnnxError;
use super::proto;

/// Default most ONNX nodes per model (`--max-nodes`).
pub const DEFAULT_MAX_NODES: usize = 200_000;

/// Deepest message nesting accepted; prost's own recursion limit is 100.
const MAX_MESSAGE_DEPTH: u32 = 100;

/// Largest decoded size of one model (estimated from the wire format): bounds a request's memory
/// whatever mix of fields a file uses.
const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;

/// Most levels of subgraphs (If/Loop/Scan bodies) inside subgraphs; real exports use a few.
const MAX_GRAPH_DEPTH: u64 = 16;

/// Tensor and shape dims allowed per node on average (real models: 4–8).
const DIMS_PER_NODE: u64 = 16;

/// What one model may hold. Derived from the node limit, so one setting scales them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nodes in all graphs, subgraphs and function bodies.
    pub max_nodes: u64,
    /// Initializers (dense and sparse) in all graphs.
    pub max_initializers: u64,
    /// Dims of all tensors and declared shapes.
    pub max_dims: u64,
    /// Levels of graphs nested in node attributes (1 = no subgraphs).
    pub max_graph_depth: u64,
    /// Estimated memory of the decoded `ModelProto`.
    pub max_decoded_bytes: u64,
}

impl Limits {
    /// The limits for models of at most `max_nodes` nodes.
    pub fn for_nodes(max_nodes: usize) -> Self {
        let max_nodes = max_nodes as u64;
        Self {
            max_nodes,
            max_initializers: max_nodes,
            max_dims: max_nodes.saturating_mul(DIMS_PER_NODE),
            max_graph_depth: MAX_GRAPH_DEPTH,
            max_decoded_bytes: MAX_DECODED_BYTES,
        }
    }

    /// Refuses a census over any limit (413 in the API).
    pub fn check(&self, census: &Census) -> Result<(), OnnxError> {
        for (what, count, limit) in [
            (Budget::Nodes, census.nodes, self.max_nodes),
            (
                Budget::Initializers,
                census.initializers,
                self.max_initializers,
            ),
            (Budget::Dims, census.dims, self.max_dims),
            (Budget::GraphDepth, census.graph_depth, self.max_graph_depth),
            (
                Budget::DecodedBytes,
                census.decoded_bytes,
                self.max_decoded_bytes,
            ),
        ] {
            if count > limit {
                return Err(OnnxError::OverBudget { what, count, limit });
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::for_nodes(DEFAULT_MAX_NODES)
    }
}

/// A resource a model can have too much of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Nodes,
    Initializers,
    Dims,
    GraphDepth,
    DecodedBytes,
    Edges,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Budget::Nodes => "nodes (in all graphs and functions)",
            Budget::Initializers => "initializers",
            Budget::Dims => "tensor and shape dims",
            Budget::GraphDepth => "levels of nested subgraphs",
            Budget::DecodedBytes => "bytes once decoded (estimated)",
            Budget::Edges => "computation-graph edges",
        })
    }
}

/// What decoding a file would create.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub nodes: u64,
    pub initializers: u64,
    pub dims: u64,
    /// Deepest graph nesting (the main graph is level 1).
    pub graph_depth: u64,
    /// Estimated heap and struct bytes of the decoded model.
    pub decoded_bytes: u64,
}

/// Counts the contents of an encoded `ModelProto`. Fails on malformed wire data (truncated
/// fields, bad varints) exactly where prost would.
pub fn scan(bytes: &[u8]) -> Result<Census, OnnxError> {
    let mut census = Census::default();
    scan_message(Msg::Model, bytes, 0, 0, &mut census).map_err(OnnxError::Decode)?;
    Ok(census)
}

/// The ONNX message types (those with repeated or nested content matter; the rest are leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Model,
    Graph,
    Node,
    Attribute,
    ValueInfo,
    Tensor,
    Segment,
    SparseTensor,
    TensorShape,
    Dimension,
    Type,
    TypeTensor,
    TypeSequence,
    TypeMap,
    TypeOptional,
    TypeSparseTensor,
    TypeOpaque,
    OperatorSetId,
    Function,
    TrainingInfo,
    StringString,
    TensorAnnotation,
    NodeDeviceConfiguration,
    ShardingSpec,
    IntIntListEntry,
    ShardedDim,
    SimpleShardedDim,
    DeviceConfiguration,
}

/// How a field is stored once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Message(Msg),
    /// A graph initializer (counted against `max_initializers`).
    Initializer(Msg),
    /// `String`: a struct plus its bytes.
    Text,
    /// Repeated varints of this width once decoded (packed or not).
    Varints(u64),
    /// Tensor dims (`repeated int64`).
    Dims,
    /// Scalars, fixed-width packed arrays and `bytes` (shared with the body): no growth.
    Flat,
}

impl Msg {
    /// Size of the decoded struct.
    fn size(self) -> u64 {
        use proto::*;
        (match self {
            Msg::Model => size_of::<ModelProto>(),
            Msg::Graph => size_of::<GraphProto>(),
            Msg::Node => size_of::<NodeProto>(),
            Msg::Attribute => size_of::<AttributeProto>(),
            Msg::ValueInfo => size_of::<ValueInfoProto>(),
            Msg::Tensor => size_of::<TensorProto>(),
            Msg::Segment => size_of::<tensor_proto::Segment>(),
            Msg::SparseTensor => size_of::<SparseTensorProto>(),
            Msg::TensorShape => size_of::<TensorShapeProto>(),
            Msg::Dimension => size_of::<tensor_shape_proto::Dimension>(),
            Msg::Type => size_of::<TypeProto>(),
            Msg::TypeTensor => size_of::<type_proto::Tensor>(),
            Msg::TypeSequence => size_of::<type_proto::Sequence>(),
            Msg::TypeMap => size_of::<type_proto::Map>(),
            Msg::TypeOptional => size_of::<type_proto::Optional>(),
            Msg::TypeSparseTensor => size_of::<type_proto::SparseTensor>(),
            Msg::TypeOpaque => size_of::<type_proto::Opaque>(),
            Msg::OperatorSetId => size_of::<OperatorSetIdProto>(),
            Msg::Function => size_of::<FunctionProto>(),
            Msg::TrainingInfo => size_of::<TrainingInfoProto>(),
            Msg::StringString => size_of::<StringStringEntryProto>(),
            Msg::TensorAnnotation => size_of::<TensorAnnotation>(),
            Msg::NodeDeviceConfiguration => size_of::<NodeDeviceConfigurationProto>(),
            Msg::ShardingSpec => size_of::<ShardingSpecProto>(),
            Msg::IntIntListEntry => size_of::<IntIntListEntryProto>(),
            Msg::ShardedDim => size_of::<ShardedDimProto>(),
            Msg::SimpleShardedDim => size_of::<SimpleShardedDimProto>(),
            Msg::DeviceConfiguration => size_of::<DeviceConfigurationProto>(),
        }) as u64
    }

    /// The field numbers of `proto/onnx.proto`.
    fn field(self, number: u64) -> Field {
        use Field::{Dims, Flat, Initializer, Message, Text, Varints};
        match (self, number) {
            (Msg::Model, 2 | 3 | 4 | 6) => Text,
            (Msg::Model, 7) => Message(Msg::Graph),
            (Msg::Model, 8) => Message(Msg::OperatorSetId),
            (Msg::Model, 14) => Message(Msg::StringString),
            (Msg::Model, 20) => Message(Msg::TrainingInfo),
            (Msg::Model, 25) => Message(Msg::Function),
            (Msg::Model, 26) => Message(Msg::DeviceConfiguration),
            (Msg::Graph, 1) => Message(Msg::Node),
            (Msg::Graph, 2 | 10) => Text,
            (Msg::Graph, 5) => Initializer(Msg::Tensor),
            (Msg::Graph, 15) => Initializer(Msg::SparseTensor),
            (Msg::Graph, 11..=13) => Message(Msg::ValueInfo),
            (Msg::Graph, 14) => Message(Msg::TensorAnnotation),
            (Msg::Graph, 16) => Message(Msg::StringString),
            (Msg::Node, 1..=4 | 6..=8) => Text,
            (Msg::Node, 5) => Message(Msg::Attribute),
            (Msg::Node, 9) => Message(Msg::StringString),
            (Msg::Node, 10) => Message(Msg::NodeDeviceConfiguration),
            (Msg::Attribute, 1 | 9 | 13 | 21) => Text,
            (Msg::Attribute, 5 | 10) => Message(Msg::Tensor),
            (Msg::Attribute, 6 | 11) => Message(Msg::Graph),
            (Msg::Attribute, 22 | 23) => Message(Msg::SparseTensor),
            (Msg::Attribute, 14 | 15) => Message(Msg::Type),
            (Msg::Attribute, 8) => Varints(8),
            (Msg::ValueInfo, 1 | 3) => Text,
            (Msg::ValueInfo, 2) => Message(Msg::Type),
            (Msg::ValueInfo, 4) => Message(Msg::StringString),
            (Msg::Tensor, 1) => Dims,
            (Msg::Tensor, 3) => Message(Msg::Segment),
            (Msg::Tensor, 5) => Varints(4),
            (Msg::Tensor, 6 | 8 | 12) => Text,
            (Msg::Tensor, 7 | 11) => Varints(8),
            (Msg::Tensor, 13 | 16) => Message(Msg::StringString),
            (Msg::SparseTensor, 1 | 2) => Message(Msg::Tensor),
            (Msg::SparseTensor, 3) => Dims,
            (Msg::TensorShape, 1) => Message(Msg::Dimension),
            (Msg::Dimension, 2 | 3) => Text,
            (Msg::Type, 1) => Message(Msg::TypeTensor),
            (Msg::Type, 4) => Message(Msg::TypeSequence),
            (Msg::Type, 5) => Message(Msg::TypeMap),
            (Msg::Type, 6) => Text,
            (Msg::Type, 7) => Message(Msg::TypeOpaque),
            (Msg::Type, 8) => Message(Msg::TypeSparseTensor),
            (Msg::Type, 9) => Message(Msg::TypeOptional),
            (Msg::TypeTensor | Msg::TypeSparseTensor, 2) => Message(Msg::TensorShape),
            (Msg::TypeSequence | Msg::TypeOptional, 1) => Message(Msg::Type),
            (Msg::TypeMap, 2) => Message(Msg::Type),
            (Msg::TypeOpaque, 1 | 2) => Text,
            (Msg::OperatorSetId, 1) => Text,
            (Msg::Function, 1 | 4..=6 | 8 | 10 | 13) => Text,
            (Msg::Function, 7) => Message(Msg::Node),
            (Msg::Function, 9) => Message(Msg::OperatorSetId),
            (Msg::Function, 11) => Message(Msg::Attribute),
            (Msg::Function, 12) => Message(Msg::ValueInfo),
            (Msg::Function, 14) => Message(Msg::StringString),
            (Msg::TrainingInfo, 1 | 2) => Message(Msg::Graph),
            (Msg::TrainingInfo, 3 | 4) => Message(Msg::StringString),
            (Msg::StringString, 1 | 2) => Text,
            (Msg::TensorAnnotation, 1) => Text,
            (Msg::TensorAnnotation, 2) => Message(Msg::StringString),
            (Msg::NodeDeviceConfiguration, 1) => Text,
            (Msg::NodeDeviceConfiguration, 2) => Message(Msg::ShardingSpec),
            (Msg::ShardingSpec, 1) => Text,
            (Msg::ShardingSpec, 2) => Varints(8),
            (Msg::ShardingSpec, 3) => Message(Msg::IntIntListEntry),
            (Msg::ShardingSpec, 4) => Message(Msg::ShardedDim),
            (Msg::IntIntListEntry, 2) => Varints(8),
            (Msg::ShardedDim, 2) => Message(Msg::SimpleShardedDim),
            (Msg::SimpleShardedDim, 2) => Text,
            (Msg::DeviceConfiguration, 1 | 3) => Text,
            _ => Flat,
        }
    }
}

/// Reads a base-128 varint (at most 10 bytes, as prost).
fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = buf.split_first() else {
            return Err("buffer underflow (truncated varint)".into());
        };
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("invalid varint".into())
}

/// Splits `len` bytes off the front of `buf`.
fn take<'a>(buf: &mut &'a [u8], len: u64) -> Result<&'a [u8], String> {
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= buf.len())
        .ok_or("buffer underflow (a field is longer than the file)")?;
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

/// Number of varints in a packed field (bytes that end one).
fn packed_varints(payload: &[u8]) -> Result<u64, String> {
    if payload.last().is_some_and(|&b| b >= 0x80) {
        return Err("truncated packed varint".into());
    }
    Ok(payload.iter().filter(|&&b| b < 0x80).count() as u64)
}

fn scan_message(
    msg: Msg,
    mut buf: &[u8],
    depth: u32,
    graphs: u64,
    census: &mut Census,
) -> Result<(), String> {
    if depth > MAX_MESSAGE_DEPTH {
        return Err(format!("messages nested deeper than {MAX_MESSAGE_DEPTH}"));
    }
    let graphs = graphs + u64::from(msg == Msg::Graph);
    census.graph_depth = census.graph_depth.max(graphs);
    census.decoded_bytes = census.decoded_bytes.saturating_add(msg.size());
    match msg {
        Msg::Node => census.nodes += 1,
        Msg::Dimension => census.dims += 1,
        _ => {}
    }
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let number = key >> 3;
        if number == 0 {
            return Err("invalid field number 0".into());
        }
        let field = msg.field(number);
        match key & 7 {
            0 => {
                varint(&mut buf)?;
                match field {
                    Field::Varints(width) => census.decoded_bytes += width,
                    Field::Dims => {
                        census.dims += 1;
                        census.decoded_bytes += 8;
                    }
                    _ => {}
                }
            }
            1 => {
                take(&mut buf, 8)?;
            }
            5 => {
                take(&mut buf, 4)?;
            }
            2 => {
                let len = varint(&mut buf)?;
                let payload = take(&mut buf, len)?;
                match field {
                    Field::Message(child) => {
                        scan_message(child, payload, depth + 1, graphs, census)?
                    }
                    Field::Initializer(child) => {
                        census.initializers += 1;
                        scan_message(child, payload, depth + 1, graphs, census)?;
                    }
                    Field::Text => {
                        census.decoded_bytes = census
                            .decoded_bytes
                            .saturating_add(size_of::<String>() as u64 + len);
                    }
                    Field::Varints(width) => {
                        census.decoded_bytes += width * packed_varints(payload)?;
                    }
                    Field::Dims => {
                        let n = packed_varints(payload)?;
                        census.dims += n;
                        census.decoded_bytes += 8 * n;
                    }
                    Field::Flat => {}
                }
            }
            wire => return Err(format!("invalid wire type {wire}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, TensorProto};

    fn node(i: usize) -> NodeProto {
        NodeProto {
            op_type: Some("Relu".into()),
            input: vec![format!("t{i}")],
            output: vec![format!("t{}", i + 1)],
            ..Default::default()
        }
    }

    #[test]
    fn counts_what_decoding_would_create() {
        let sub = GraphProto {
            node: vec![node(0)],
            ..Default::default()
        };
        let mut with_sub = node(1);
        with_sub.attribute.push(proto::AttributeProto {
            name: Some("then_branch".into()),
            g: Some(Box::new(sub)),
            ints: vec![1, 2, 300],
            ..Default::default()
        });
        let model = ModelProto {
            ir_version: Some(8),
            graph: Some(GraphProto {
                node: vec![node(2), with_sub],
                initializer: vec![TensorProto {
                    dims: vec![64, 3, 7, 7],
                    raw_data: Some(vec![0u8; 4096].into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = model.encode_to_vec();
        let census = scan(&bytes).unwrap();
        assert_eq!(census.nodes, 3);
        assert_eq!(census.initializers, 1);
        assert_eq!(census.dims, 4);
        assert_eq!(census.graph_depth, 2);
        // Raw tensor data is shared with the body, not counted.
        assert!(census.decoded_bytes < 4096, "{census:?}");
        assert!(census.decoded_bytes > 3 * size_of::<NodeProto>() as u64);
        Limits::default().check(&census).unwrap();
    }

    #[test]
    fn a_million_empty_nodes_are_refused_before_decoding() {
        // `0a 00` is an empty NodeProto in a GraphProto; the graph is field 7 of ModelProto.
        let graph: Vec<u8> = [0x0a, 0x00].repeat(1_000_000);
        let mut bytes = vec![0x08, 0x08, 0x3a];
        let mut len = graph.len() as u64;
        while len >= 0x80 {
            bytes.push((len as u8) | 0x80);
            len >>= 7;
        }
        bytes.push(len as u8);
        bytes.extend_from_slice(&graph);
        let census = scan(&bytes).unwrap();
        assert_eq!(census.nodes, 1_000_000);
        let err = Limits::default().check(&census).unwrap_err();
        assert!(
            matches!(
                err,
                OnnxError::OverBudget {
                    what: Budget::Nodes,
                    count: 1_000_000,
                    limit: 200_000
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn malformed_wire_data_is_a_decode_error() {
        for bytes in [&[0x3a, 0x05, 0x0a][..], &[0xff; 11], &[0x0b], &[0x00, 0x01]] {
            assert!(
                matches!(scan(bytes), Err(OnnxError::Decode(_))),
                "{bytes:?}"
            );
        }
    }
}
