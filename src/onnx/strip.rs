//! Removes weight payloads from a model so that archdb stores the architecture, not the weights.

use super::proto::{GraphProto, ModelProto, TensorProto, tensor_proto::DataLocation};

/// Tensors with at most this many elements keep their contents: they are shapes, axes and scales
/// that shape inference needs when the stored file is read again.
const KEEP_ELEMENTS: u64 = 64;

/// Clears the payload of every tensor larger than [`KEEP_ELEMENTS`] (initializers, `Constant`
/// values, subgraphs), keeping name, dims and data type, and drops external-data references.
/// Returns whether anything was removed: if not, the model's encoding is the uploaded file's.
pub fn strip_weights(model: &mut ModelProto) -> bool {
    let mut stripped = model.graph.as_mut().is_some_and(strip_graph);
    for f in &mut model.functions {
        for node in &mut f.node {
            for attr in &mut node.attribute {
                stripped |= strip_attr(attr);
            }
        }
    }
    stripped
}

fn strip_graph(graph: &mut GraphProto) -> bool {
    let mut stripped = false;
    for t in &mut graph.initializer {
        stripped |= strip_tensor(t);
    }
    for node in &mut graph.node {
        for attr in &mut node.attribute {
            stripped |= strip_attr(attr);
        }
    }
    stripped
}

fn strip_attr(attr: &mut super::proto::AttributeProto) -> bool {
    let mut stripped = attr.t.as_deref_mut().is_some_and(strip_tensor);
    for t in &mut attr.tensors {
        stripped |= strip_tensor(t);
    }
    stripped |= attr.g.as_deref_mut().is_some_and(strip_graph);
    for g in &mut attr.graphs {
        stripped |= strip_graph(g);
    }
    stripped
}

fn strip_tensor(t: &mut TensorProto) -> bool {
    let external = t.data_location() == DataLocation::External;
    if super::element_count(t) <= KEEP_ELEMENTS && !external {
        return false;
    }
    let payload = t.raw_data.is_some()
        || !t.float_data.is_empty()
        || !t.int32_data.is_empty()
        || !t.string_data.is_empty()
        || !t.int64_data.is_empty()
        || !t.double_data.is_empty()
        || !t.uint64_data.is_empty()
        || !t.external_data.is_empty()
        || t.data_location.is_some();
    t.raw_data = None;
    t.float_data.clear();
    t.int32_data.clear();
    t.string_data.clear();
    t.int64_data.clear();
    t.double_data.clear();
    t.uint64_data.clear();
    t.external_data.clear();
    t.data_location = None;
    payload
}
