//! Removes weight payloads from a model so that archdb stores the architecture, not the weights.

use super::proto::{GraphProto, ModelProto, TensorProto, tensor_proto::DataLocation};

/// Tensors with at most this many elements keep their contents: they are shapes, axes and scales
/// that shape inference needs when the stored file is read again.
const KEEP_ELEMENTS: u64 = 64;

/// Clears the payload of every tensor larger than [`KEEP_ELEMENTS`] (initializers, `Constant`
/// values, subgraphs), keeping name, dims and data type, and drops external-data references.
pub fn strip_weights(model: &mut ModelProto) {
    if let Some(graph) = model.graph.as_mut() {
        strip_graph(graph);
    }
    for f in &mut model.functions {
        for node in &mut f.node {
            for attr in &mut node.attribute {
                strip_attr(attr);
            }
        }
    }
}

fn strip_graph(graph: &mut GraphProto) {
    graph.initializer.iter_mut().for_each(strip_tensor);
    for node in &mut graph.node {
        for attr in &mut node.attribute {
            strip_attr(attr);
        }
    }
}

fn strip_attr(attr: &mut super::proto::AttributeProto) {
    if let Some(t) = attr.t.as_mut() {
        strip_tensor(t);
    }
    attr.tensors.iter_mut().for_each(strip_tensor);
    if let Some(g) = attr.g.as_mut() {
        strip_graph(g);
    }
    attr.graphs.iter_mut().for_each(strip_graph);
}

fn strip_tensor(t: &mut TensorProto) {
    let external = t.data_location() == DataLocation::External;
    if super::element_count(t) <= KEEP_ELEMENTS && !external {
        return;
    }
    t.raw_data = None;
    t.float_data.clear();
    t.int32_data.clear();
    t.string_data.clear();
    t.int64_data.clear();
    t.double_data.clear();
    t.uint64_data.clear();
    t.external_data.clear();
    t.data_location = None;
}
