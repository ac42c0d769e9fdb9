//! ONNX front end: decoding `ModelProto` bytes (prost types generated from the vendored
//! `proto/onnx.proto`), validating them, inlining local functions and stripping weight payloads.

mod budget;
mod inline;
mod strip;

pub use budget::{Budget, Census, DEFAULT_MAX_NODES, Limits, scan};
pub use inline::inline_functions;
pub use strip::strip_weights;

/// The ONNX protobuf types, generated at build time by `build.rs`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use prost::Message;
use proto::{ModelProto, TensorProto, tensor_proto::DataType};

/// Why a byte string is not an ONNX model archdb can use.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("the body is empty: expected an ONNX model (protobuf ModelProto)")]
    Empty,
    #[error("not a valid ONNX model: {0} (the file is truncated or not ONNX protobuf)")]
    Decode(String),
    #[error("not an ONNX model: {0}")]
    NotOnnx(&'static str),
    #[error("the model has {count} nodes (after inlining functions); the limit is {limit}")]
    TooManyNodes { count: usize, limit: usize },
    /// Over a budget of [`Limits`] (checked before decoding) or of the graph builder.
    #[error("the model has {count} {what}; the limit is {limit}")]
    OverBudget {
        what: Budget,
        count: u64,
        limit: u64,
    },
    #[error("invalid ONNX graph: {0}")]
    Invalid(String),
}

/// [`decode_model_within`] the default [`Limits`].
pub fn decode_model(bytes: bytes::Bytes) -> Result<ModelProto, OnnxError> {
    decode_model_within(bytes, &Limits::default())
}

/// Decodes and sanity-checks an ONNX model, after checking on the wire format that decoding
/// stays within `limits`. `bytes` is shared, not copied: tensor payloads are slices of it
/// (prost is configured with `bytes` fields).
pub fn decode_model_within(bytes: bytes::Bytes, limits: &Limits) -> Result<ModelProto, OnnxError> {
    if bytes.is_empty() {
        return Err(OnnxError::Empty);
    }
    limits.check(&scan(&bytes)?)?;
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    check_model(&model)?;
    Ok(model)
}

/// The checks of [`decode_model`] on a model built in memory (e.g. by the generators).
pub fn check_model(model: &ModelProto) -> Result<(), OnnxError> {
    // Random bytes can decode as a protobuf message with unknown fields only; a real model has
    // an IR version and a graph, and every node has an op type.
    if model.ir_version.is_none() && model.opset_import.is_empty() {
        return Err(OnnxError::NotOnnx("no ir_version and no opset_import"));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or(OnnxError::NotOnnx("the model has no graph"))?;
    if graph.node.is_empty() {
        return Err(OnnxError::NotOnnx("the graph has no nodes"));
    }
    if graph.node.iter().any(|n| n.op_type().is_empty()) {
        return Err(OnnxError::Invalid("a node has an empty op_type".into()));
    }
    Ok(())
}

/// The default-domain opset the model imports (ONNX's own ops), if any.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map(|o| o.version())
}

/// True for the floating-point element types (weights); integer tensors are indices or shapes.
pub fn is_float(data_type: i32) -> bool {
    matches!(
        DataType::try_from(data_type),
        Ok(DataType::Float
            | DataType::Double
            | DataType::Float16
            | DataType::Bfloat16
            | DataType::Float8e4m3fn
            | DataType::Float8e4m3fnuz
            | DataType::Float8e5m2
            | DataType::Float8e5m2fnuz
            | DataType::Float4e2m1
            | DataType::Float8e8m0)
    )
}

/// Number of elements of a tensor from its dims (saturating: hostile dims must not overflow).
pub fn element_count(t: &TensorProto) -> u64 {
    t.dims
        .iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d.max(0) as u64))
}

/// Small integer or float tensor contents, when they are stored inline. Weights stored as
/// external data (or stripped) have no contents: callers treat them as unknown.
pub fn tensor_values(t: &TensorProto, max_elements: u64) -> Option<Vec<f64>> {
    let n = element_count(t);
    if n > max_elements {
        return None;
    }
    let n = n as usize;
    let raw = t.raw_data();
    let dt = DataType::try_from(t.data_type()).ok()?;
    let from_raw = |width: usize, f: &dyn Fn(&[u8]) -> f64| -> Option<Vec<f64>> {
        (raw.len() == n * width).then(|| raw.chunks_exact(width).map(f).collect())
    };
    let values = match dt {
        DataType::Int64 if !raw.is_empty() => {
            from_raw(8, &|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)?
        }
        DataType::Int64 => t.int64_data.iter().map(|&v| v as f64).collect(),
        DataType::Int32 if !raw.is_empty() => {
            from_raw(4, &|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)?
        }
        DataType::Int32 | DataType::Int16 | DataType::Int8 | DataType::Uint8 | DataType::Bool
            if raw.is_empty() =>
        {
            t.int32_data.iter().map(|&v| v as f64).collect()
        }
        DataType::Int8 => from_raw(1, &|c| c[0] as i8 as f64)?,
        DataType::Uint8 | DataType::Bool => from_raw(1, &|c| c[0] as f64)?,
        DataType::Float if !raw.is_empty() => {
            from_raw(4, &|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)?
        }
        DataType::Float => t.float_data.iter().map(|&v| v as f64).collect(),
        DataType::Double if !raw.is_empty() => {
            from_raw(8, &|c| f64::from_le_bytes(c.try_into().unwrap()))?
        }
        DataType::Double => t.double_data.clone(),
        _ => return None,
    };
    (values.len() == n).then_some(values)
}
