//! Inlines ONNX local functions (`ModelProto.functions`), which PyTorch's dynamo exporter emits,
//! so that the computation graph sees primitive ops only.

use std::collections::HashMap;

use super::OnnxError;
use super::proto::{AttributeProto, FunctionProto, ModelProto, NodeProto};

/// Nested function calls deeper than this are rejected (a function calling itself would never end).
const MAX_DEPTH: usize = 16;

/// Replaces every call of a model-local function by the function's body, recursively, renaming
/// the body's internal tensors so they cannot collide. Fails when the expanded graph would
/// exceed `max_nodes`, which also bounds exponential expansion by hostile files.
pub fn inline_functions(model: &mut ModelProto, max_nodes: usize) -> Result<(), OnnxError> {
    if model.functions.is_empty() {
        return Ok(());
    }
    let functions: HashMap<(String, String), FunctionProto> = std::mem::take(&mut model.functions)
        .into_iter()
        .map(|f| ((f.domain().to_string(), f.name().to_string()), f))
        .collect();
    let Some(graph) = model.graph.as_mut() else {
        return Ok(());
    };
    let nodes = std::mem::take(&mut graph.node);
    let mut out = Vec::with_capacity(nodes.len());
    let mut counter = 0usize;
    expand(nodes, &functions, 0, &mut counter, max_nodes, &mut out)?;
    graph.node = out;
    Ok(())
}

fn expand(
    nodes: Vec<NodeProto>,
    functions: &HashMap<(String, String), FunctionProto>,
    depth: usize,
    counter: &mut usize,
    max_nodes: usize,
    out: &mut Vec<NodeProto>,
) -> Result<(), OnnxError> {
    for node in nodes {
        let key = (node.domain().to_string(), node.op_type().to_string());
        let Some(function) = functions.get(&key) else {
            if out.len() >= max_nodes {
                return Err(OnnxError::TooManyNodes {
                    count: out.len() + 1,
                    limit: max_nodes,
                });
            }
            out.push(node);
            continue;
        };
        if depth >= MAX_DEPTH {
            return Err(OnnxError::Invalid(format!(
                "local functions nested deeper than {MAX_DEPTH} (recursive function {}?)",
                function.name()
            )));
        }
        *counter += 1;
        let body = instantiate(function, &node, *counter);
        expand(body, functions, depth + 1, counter, max_nodes, out)?;
    }
    Ok(())
}

/// The function body with formal parameters bound to the call's tensors and attributes.
fn instantiate(function: &FunctionProto, call: &NodeProto, call_id: usize) -> Vec<NodeProto> {
    let mut names: HashMap<&str, String> = HashMap::new();
    for (i, formal) in function.input.iter().enumerate() {
        names.insert(formal, call.input.get(i).cloned().unwrap_or_default());
    }
    for (i, formal) in function.output.iter().enumerate() {
        names.insert(formal, call.output.get(i).cloned().unwrap_or_default());
    }
    let prefix = format!("{}#{call_id}/", function.name());
    let rename = |name: &String| -> String {
        if name.is_empty() {
            return String::new();
        }
        names
            .get(name.as_str())
            .cloned()
            .unwrap_or_else(|| format!("{prefix}{name}"))
    };
    let attr_value = |attr: &AttributeProto| -> Option<AttributeProto> {
        let reference = attr.ref_attr_name();
        if reference.is_empty() {
            return Some(attr.clone());
        }
        let bound = call
            .attribute
            .iter()
            .find(|a| a.name() == reference)
            .or_else(|| {
                function
                    .attribute_proto
                    .iter()
                    .find(|a| a.name() == reference)
            })?;
        let mut value = bound.clone();
        value.name = attr.name.clone();
        value.ref_attr_name = None;
        Some(value)
    };
    function
        .node
        .iter()
        .map(|n| {
            let mut node = n.clone();
            node.input = n.input.iter().map(rename).collect();
            node.output = n.output.iter().map(rename).collect();
            node.name = Some(format!("{prefix}{}", n.name()));
            node.attribute = n.attribute.iter().filter_map(attr_value).collect();
            node
        })
        .collect()
}
