//! ONNX `ModelProto` → [`CompGraph`]: validation (dangling inputs, cycles, size, plausible
//! shapes and attributes), shape and constant inference in topological order, then CG
//! construction with weights folded and shape-only ops bypassed.

use std::collections::{BTreeMap, VecDeque};

// foldhash instead of SipHash: tensor-name lookups are a large share of building a graph, and
// the maps are bounded by the model's node limit.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::rc::Rc;

use petgraph::graph::{DiGraph, NodeIndex};

use super::ops::{self, Role, volume};
use super::shape::{MAX_TRACKED_VALUES, NodeCtx, TensorInfo};
use super::{CgNode, CompGraph, GraphSummary};
use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, TypeProto, type_proto};
use crate::onnx::{self, Budget, OnnxError};

/// Largest plausible dim: ONNX runtimes index tensors with 32-bit dims.
const MAX_DIM: i64 = i32::MAX as i64;

/// Largest plausible tensor (2^40 elements, 4 TB of float32) at batch 1.
const MAX_ELEMENTS: u64 = 1 << 40;

/// Computation-graph edges (and merged bypass producers) allowed per ONNX node and graph output.
/// Real models have one or two; a merge of every upstream producer into each consumer would
/// otherwise grow quadratically (2,000 Relu→Expand→Sigmoid links: two million edges).
const EDGES_PER_NODE: usize = 4;

/// Integer attributes that must be positive wherever they occur (a blocksize or stride of 0
/// divides by zero).
const POSITIVE_ATTRIBUTES: [&str; 7] = [
    "blocksize",
    "group",
    "strides",
    "dilations",
    "kernel_shape",
    "num_groups",
    "num_outputs",
];

/// What a node input that the walk knows nothing of (omitted, or a bad name) reads as.
static UNKNOWN: TensorInfo = TensorInfo {
    shape: None,
    value: None,
};

/// Limits applied while building.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    /// Most ONNX nodes accepted (after inlining local functions).
    pub max_nodes: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            max_nodes: onnx::DEFAULT_MAX_NODES,
        }
    }
}

/// Builds the computation graph of a decoded model. Local functions are inlined in place.
pub fn build(model: &mut ModelProto, options: BuildOptions) -> Result<CompGraph, OnnxError> {
    let count = model.graph.as_ref().map_or(0, |g| g.node.len());
    if count > options.max_nodes {
        return Err(OnnxError::TooManyNodes {
            count,
            limit: options.max_nodes,
        });
    }
    onnx::inline_functions(model, options.max_nodes)?;
    let opset = onnx::default_opset(model).unwrap_or(21);
    let graph = model
        .graph
        .as_ref()
        .ok_or(OnnxError::NotOnnx("the model has no graph"))?;
    let order = topological_order(graph)?;
    let mut walk = Walk::new(graph, opset)?;
    for &i in &order {
        walk.visit(&graph.node[i])?;
    }
    walk.finish(graph, model)
}

/// The inferred shape of every tensor (graph inputs, initializers, node outputs) by the walk
/// that [`build`] does, for renderers of the ONNX graph itself (`crate::text`). Functions are
/// not inlined: their call nodes' outputs have the shapes the file declares, if any.
pub fn tensor_shapes(
    model: &ModelProto,
) -> Result<std::collections::HashMap<String, Vec<i64>>, OnnxError> {
    let opset = onnx::default_opset(model).unwrap_or(21);
    let graph = model
        .graph
        .as_ref()
        .ok_or(OnnxError::NotOnnx("the model has no graph"))?;
    let mut walk = Walk::new(graph, opset)?;
    for i in topological_order(graph)? {
        walk.visit(&graph.node[i])?;
    }
    Ok(walk
        .tensors
        .into_iter()
        .filter_map(|(name, t)| Some((name.to_string(), t.shape?)))
        .collect())
}

/// Shape of a declared graph input/output/value_info; symbolic, missing or non-positive dims
/// become 1 (archdb describes a forward pass at batch 1).
fn declared_shape(t: Option<&TypeProto>) -> Option<Vec<i64>> {
    let Some(type_proto::Value::TensorType(tensor)) = t?.value.as_ref() else {
        return None;
    };
    let shape = tensor.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(crate::onnx::proto::tensor_shape_proto::dimension::Value::DimValue(v))
                    if v > 0 =>
                {
                    v
                }
                _ => 1,
            })
            .collect(),
    )
}

/// Refuses shapes no model can have: negative dims, dims beyond 32 bits, more than
/// [`MAX_ELEMENTS`] elements. Every MAC and parameter count is a product of such shapes.
fn check_plausible(shape: &[i64], what: impl FnOnce() -> String) -> Result<(), OnnxError> {
    if shape.iter().all(|d| (0..=MAX_DIM).contains(d)) && volume(shape) <= MAX_ELEMENTS {
        return Ok(());
    }
    Err(OnnxError::Invalid(format!(
        "implausible shape {shape:?} of {}: dims must be 0..=2^31-1 and tensors at most 2^40 elements",
        what()
    )))
}

/// Refuses non-positive values of [`POSITIVE_ATTRIBUTES`].
fn check_attributes(node: &NodeProto) -> Result<(), OnnxError> {
    for a in &node.attribute {
        if POSITIVE_ATTRIBUTES.contains(&a.name())
            && let Some(bad) = a.i.iter().chain(&a.ints).find(|&&v| v <= 0)
        {
            return Err(OnnxError::Invalid(format!(
                "attribute `{}` of node '{}' ({}) must be positive, got {bad}",
                a.name(),
                node.name(),
                node.op_type()
            )));
        }
    }
    Ok(())
}

/// Sorted, deduplicated CG nodes feeding a tensor. Shared between the tensors that a bypassed op
/// forwards unchanged, never copied per consumer.
type Producers = Rc<[NodeIndex]>;

/// Node indices in dependency order. Fails on dangling inputs, tensors produced twice, cycles.
fn topological_order(graph: &GraphProto) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::with_capacity(graph.node.len() * 2);
    for (i, node) in graph.node.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(out, i).is_some() {
                return Err(OnnxError::Invalid(format!(
                    "tensor '{out}' is produced by more than one node"
                )));
            }
        }
    }
    let external: HashSet<&str> = graph
        .input
        .iter()
        .map(|v| v.name())
        .chain(graph.initializer.iter().map(|t| t.name()))
        .chain(
            graph
                .sparse_initializer
                .iter()
                .filter_map(|s| s.values.as_ref().map(|t| t.name())),
        )
        .collect();
    let mut indegree = vec![0usize; graph.node.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, node) in graph.node.iter().enumerate() {
        for input in node.input.iter().filter(|n| !n.is_empty()) {
            match producer.get(input.as_str()) {
                Some(&p) => {
                    indegree[i] += 1;
                    consumers[p].push(i);
                }
                None if external.contains(input.as_str()) => {}
                None => {
                    return Err(OnnxError::Invalid(format!(
                        "node '{}' ({}) reads tensor '{input}', which no node, graph input or initializer provides",
                        node.name(),
                        node.op_type()
                    )));
                }
            }
        }
    }
    let mut queue: VecDeque<usize> = (0..graph.node.len())
        .filter(|&i| indegree[i] == 0)
        .collect();
    let mut order = Vec::with_capacity(graph.node.len());
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &c in &consumers[i] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                queue.push_back(c);
            }
        }
    }
    if order.len() != graph.node.len() {
        let stuck = (0..graph.node.len())
            .find(|&i| indegree[i] > 0)
            .map(|i| graph.node[i].name().to_string());
        return Err(OnnxError::Invalid(format!(
            "the graph has a cycle (through node '{}')",
            stuck.unwrap_or_default()
        )));
    }
    Ok(order)
}

/// State of the walk over the ONNX graph in topological order.
struct Walk<'g> {
    opset: i64,
    tensors: HashMap<&'g str, TensorInfo>,
    /// Shapes declared by the file (value_info, outputs): the fallback where inference fails.
    declared: HashMap<&'g str, Vec<i64>>,
    /// Initializer names (and Identity aliases of them) → the initializer.
    weights: HashMap<&'g str, &'g crate::onnx::proto::TensorProto>,
    /// Data tensors (derived from a graph input) → the CG nodes producing them.
    producers: HashMap<&'g str, Producers>,
    /// Edges plus merged bypass producers allowed ([`EDGES_PER_NODE`] per node and output).
    max_wiring: usize,
    /// Producer entries created by bypass ops that merge several data inputs.
    merged: usize,
    /// Initializers used as BatchNorm running mean/variance: buffers, not parameters.
    bn_stats: HashSet<&'g str>,
    cg: DiGraph<CgNode, ()>,
    onnx_nodes: usize,
    total_macs: u64,
    unknown_ops: BTreeMap<String, ()>,
}

impl<'g> Walk<'g> {
    fn new(graph: &'g GraphProto, opset: i64) -> Result<Self, OnnxError> {
        // Sized up front: growing the maps was a visible part of building small graphs.
        let values = graph.initializer.len() + graph.input.len() + graph.node.len();
        let mut walk = Walk {
            opset,
            tensors: HashMap::with_capacity(values),
            declared: HashMap::with_capacity(graph.value_info.len() + graph.output.len()),
            weights: HashMap::with_capacity(graph.initializer.len()),
            producers: HashMap::with_capacity(graph.input.len() + graph.node.len()),
            max_wiring: EDGES_PER_NODE * (graph.node.len() + graph.output.len()),
            merged: 0,
            bn_stats: HashSet::new(),
            cg: DiGraph::with_capacity(
                graph.input.len() + graph.node.len() + graph.output.len(),
                graph.node.len() * 2,
            ),
            onnx_nodes: graph.node.len(),
            total_macs: 0,
            unknown_ops: BTreeMap::new(),
        };
        for t in &graph.initializer {
            check_plausible(&t.dims, || format!("initializer '{}'", t.name()))?;
            walk.weights.insert(t.name(), t);
            walk.tensors.insert(
                t.name(),
                TensorInfo {
                    shape: Some(t.dims.clone()),
                    value: onnx::tensor_values(t, MAX_TRACKED_VALUES),
                },
            );
        }
        for v in graph.value_info.iter().chain(&graph.output) {
            if let Some(shape) = declared_shape(v.r#type.as_ref()) {
                check_plausible(&shape, || format!("declared tensor '{}'", v.name()))?;
                walk.declared.insert(v.name(), shape);
            }
        }
        for v in graph
            .input
            .iter()
            .filter(|v| !walk.weights.contains_key(v.name()))
        {
            let shape = declared_shape(v.r#type.as_ref());
            if let Some(s) = &shape {
                check_plausible(s, || format!("graph input '{}'", v.name()))?;
            }
            let idx = walk
                .cg
                .add_node(structural("Input", v.name(), shape.clone()));
            walk.tensors.insert(v.name(), TensorInfo::shaped(shape));
            walk.producers.insert(v.name(), Rc::new([idx]));
        }
        Ok(walk)
    }

    fn visit(&mut self, node: &'g NodeProto) -> Result<(), OnnxError> {
        let def = ops::lookup(node.op_type())
            .filter(|_| matches!(node.domain(), "" | "ai.onnx" | "com.microsoft"));
        match def {
            Some(_) => check_attributes(node)?,
            None => {
                self.unknown_ops.insert(node.op_type().to_string(), ());
            }
        }
        let inputs: Vec<&TensorInfo> = node
            .input
            .iter()
            .map(|n| self.tensors.get(n.as_str()).unwrap_or(&UNKNOWN))
            .collect();
        let ctx = NodeCtx {
            node,
            inputs,
            opset: self.opset,
        };
        let mut outputs = def.map_or_else(Vec::new, |d| (d.infer)(&ctx));
        outputs.resize(node.output.len(), TensorInfo::unknown());
        for (name, info) in node.output.iter().zip(outputs.iter_mut()) {
            match &info.shape {
                Some(shape) => check_plausible(shape, || {
                    format!(
                        "tensor '{name}' (output of node '{}', {})",
                        node.name(),
                        node.op_type()
                    )
                })?,
                None => info.shape = self.declared.get(name.as_str()).cloned(),
            }
        }
        let macs = def.map_or(0, |d| (d.macs)(&ctx, &outputs));
        self.total_macs = self.total_macs.saturating_add(macs);

        if node.op_type() == "BatchNormalization" {
            for i in [3, 4] {
                if let Some(name) = node.input.get(i).and_then(|n| self.weight_root(n)) {
                    self.bn_stats.insert(name);
                }
            }
        }
        let role = def.map_or(Role::Compute, |d| d.role);
        let data_inputs: Vec<&'g str> = node
            .input
            .iter()
            .filter(|n| self.producers.contains_key(n.as_str()))
            .map(String::as_str)
            .collect();
        let is_data = role != Role::Meta && !data_inputs.is_empty();

        if !is_data {
            // Identity of a weight keeps naming the weight (legacy exports route biases so).
            if role == Role::Bypass
                && let (Some(out), Some(root)) = (
                    node.output.first(),
                    node.input
                        .first()
                        .and_then(|n| self.weights.get(n.as_str()).copied()),
                )
            {
                self.weights.insert(out, root);
            }
        } else if role == Role::Bypass {
            let from = self.merged_producers(&data_inputs)?;
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                self.producers.insert(out, from.clone());
            }
        } else {
            let cg_node = self.compute_node(
                node,
                &ctx,
                def.map_or(ops::UNKNOWN_LABEL, |d| d.label),
                &outputs,
                macs,
            );
            let sources = self.union(&data_inputs);
            self.spend_edges(sources.len())?;
            let idx = self.cg.add_node(cg_node);
            for &s in sources.iter() {
                self.cg.add_edge(s, idx, ());
            }
            let own: Producers = Rc::new([idx]);
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                self.producers.insert(out, own.clone());
            }
        }
        for (name, info) in node.output.iter().zip(outputs) {
            if !name.is_empty() {
                self.tensors.insert(name, info);
            }
        }
        Ok(())
    }

    /// The producers of several data tensors: the shared set itself when they all have the same
    /// one (the usual single-input bypass), else a new sorted union.
    fn union(&self, tensors: &[&str]) -> Producers {
        let first = &self.producers[tensors[0]];
        if tensors[1..]
            .iter()
            .all(|t| Rc::ptr_eq(first, &self.producers[t]))
        {
            return first.clone();
        }
        let mut all: Vec<NodeIndex> = tensors
            .iter()
            .flat_map(|t| self.producers[t].iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all.into()
    }

    /// [`Self::union`] for a bypassed op, counting merged sets against the wiring budget.
    fn merged_producers(&mut self, tensors: &[&str]) -> Result<Producers, OnnxError> {
        let from = self.union(tensors);
        if !Rc::ptr_eq(&from, &self.producers[tensors[0]]) {
            self.merged += from.len();
            if self.merged > self.max_wiring {
                return Err(OnnxError::OverBudget {
                    what: Budget::Edges,
                    count: self.merged as u64,
                    limit: self.max_wiring as u64,
                });
            }
        }
        Ok(from)
    }

    /// Refuses `more` edges when the graph would exceed its edge budget.
    fn spend_edges(&self, more: usize) -> Result<(), OnnxError> {
        let count = self.cg.edge_count() + more;
        if count > self.max_wiring {
            return Err(OnnxError::OverBudget {
                what: Budget::Edges,
                count: count as u64,
                limit: self.max_wiring as u64,
            });
        }
        Ok(())
    }

    /// The initializer a tensor name refers to, through Identity aliases.
    fn weight_root(&self, name: &str) -> Option<&'g str> {
        self.weights.get(name).map(|t| t.name())
    }

    fn compute_node(
        &self,
        node: &NodeProto,
        ctx: &NodeCtx,
        label: &'static str,
        outputs: &[TensorInfo],
        macs: u64,
    ) -> CgNode {
        let op = node.op_type();
        let first_data = node
            .input
            .iter()
            .position(|n| self.producers.contains_key(n.as_str()));
        let input_shape = first_data.and_then(|i| ctx.inputs[i].shape.clone());
        let output_shape = outputs.first().and_then(|o| o.shape.clone());
        // Folded weights: initializer inputs other than BatchNorm's running statistics.
        let mut params = 0u64;
        let mut weight_shape = None;
        for (i, name) in node.input.iter().enumerate() {
            let Some(w) = self.weights.get(name.as_str()) else {
                continue;
            };
            if !onnx::is_float(w.data_type()) || (op == "BatchNormalization" && i >= 3) {
                continue;
            }
            params = params.saturating_add(onnx::element_count(w));
            if weight_shape.is_none() && w.dims.len() >= 2 {
                weight_shape = Some(w.dims.clone());
            }
        }
        let windowed = matches!(
            op,
            "Conv" | "ConvTranspose" | "ConvInteger" | "MaxPool" | "AveragePool" | "LpPool"
        );
        let window = windowed
            .then(|| {
                ops::conv_window(
                    ctx,
                    matches!(op, "Conv" | "ConvTranspose" | "ConvInteger").then_some(1),
                )
            })
            .flatten();
        let groups = if op.starts_with("Conv") {
            ctx.attr_i("group").unwrap_or(1)
        } else {
            1
        };
        let channel_first = windowed
            || label.contains("Pool")
            || matches!(label, "BatchNorm" | "InstanceNorm" | "GroupNorm" | "Resize");
        let (h_in, w_in, c_in) = hwc(input_shape.as_deref(), channel_first);
        let (h_out, w_out, c_out) = hwc(output_shape.as_deref(), channel_first);
        let label = refine_label(
            label,
            ctx,
            groups,
            c_in,
            weight_shape.is_some(),
            input_shape.as_deref(),
            output_shape.as_deref(),
        );
        let bias = match op {
            "Conv" | "ConvTranspose" | "Gemm" | "LayerNormalization" => ctx.has_input(2),
            "BatchNormalization" => true,
            _ => false,
        };
        CgNode {
            label: label.to_string(),
            op_type: op.to_string(),
            name: node.name().to_string(),
            input_shape,
            output_shape,
            resolution: [h_in, h_out, w_in, w_out, c_in, c_out],
            kernel: window
                .as_ref()
                .map(|w| w.kernel.clone())
                .unwrap_or_default(),
            strides: window
                .as_ref()
                .map(|w| w.strides.clone())
                .unwrap_or_default(),
            dilations: window.map(|w| w.dilations).unwrap_or_default(),
            groups,
            bias,
            weight_shape,
            params,
            macs,
            subgraph: node
                .attribute
                .iter()
                .any(|a| a.g.is_some() || !a.graphs.is_empty()),
        }
    }

    fn finish(mut self, graph: &'g GraphProto, model: &ModelProto) -> Result<CompGraph, OnnxError> {
        for out in &graph.output {
            let shape = self
                .tensors
                .get(out.name())
                .and_then(|t| t.shape.clone())
                .or_else(|| declared_shape(out.r#type.as_ref()));
            let from = self.producers.get(out.name()).cloned();
            if let Some(from) = &from {
                self.spend_edges(from.len())?;
            }
            let idx = self.cg.add_node(structural("Output", out.name(), shape));
            for &s in from.iter().flat_map(|f| f.iter()) {
                self.cg.add_edge(s, idx, ());
            }
        }
        let params = graph
            .initializer
            .iter()
            .filter(|t| onnx::is_float(t.data_type()) && !self.bn_stats.contains(t.name()))
            .fold(0u64, |acc, t| acc.saturating_add(onnx::element_count(t)));
        // Stored as PostgreSQL bigint: a sum past i64 is overflow, not a model.
        for (what, total) in [("parameters", params), ("MACs", self.total_macs)] {
            if i64::try_from(total).is_err() {
                return Err(OnnxError::Invalid(format!(
                    "implausible model: {what} exceed 2^63"
                )));
            }
        }
        let mut op_counts = BTreeMap::new();
        let mut unknown_shapes = 0;
        for n in self.cg.node_weights() {
            if n.label != "Input" && n.label != "Output" {
                *op_counts.entry(n.label.clone()).or_insert(0u64) += 1;
                unknown_shapes += usize::from(n.output_shape.is_none());
            }
        }
        let input_shape = self
            .cg
            .node_weights()
            .find(|n| n.label == "Input")
            .and_then(|n| n.output_shape.clone())
            .unwrap_or_default();
        let summary = GraphSummary {
            params,
            macs: self.total_macs,
            num_nodes: self.cg.node_count(),
            num_edges: self.cg.edge_count(),
            depth: longest_path(&self.cg),
            input_shape,
            op_counts,
            onnx_nodes: self.onnx_nodes,
            opset: onnx::default_opset(model),
            ir_version: model.ir_version,
            producer: format!("{} {}", model.producer_name(), model.producer_version())
                .trim()
                .to_string(),
            unknown_ops: self.unknown_ops.into_keys().collect(),
            unknown_shapes,
        };
        Ok(CompGraph {
            graph: self.cg,
            summary,
        })
    }
}

/// An `Input` or `Output` node.
fn structural(label: &str, name: &str, shape: Option<Vec<i64>>) -> CgNode {
    let (h, w, c) = hwc(shape.as_deref(), true);
    CgNode {
        label: label.to_string(),
        op_type: String::new(),
        name: name.to_string(),
        input_shape: shape.clone(),
        output_shape: shape,
        resolution: [h, h, w, w, c, c],
        kernel: vec![],
        strides: vec![],
        dilations: vec![],
        groups: 1,
        bias: false,
        weight_shape: None,
        params: 0,
        macs: 0,
        subgraph: false,
    }
}

/// `(H, W, C)` of a tensor shape. Rank 4+: NCHW (depth of 5-D tensors folded away). Rank 3:
/// `[N, C, L]` for channel-first ops (Conv1d, pools, BN), else `[N, tokens, features]`.
/// Rank ≤ 2: `H = W = 1`, C = last dim. Unknown: zeros.
fn hwc(shape: Option<&[i64]>, channel_first: bool) -> (i64, i64, i64) {
    match shape {
        None => (0, 0, 0),
        Some([]) => (1, 1, 1),
        Some([c]) | Some([_, c]) => (1, 1, *c),
        Some([_, a, b]) if channel_first => (*b, 1, *a),
        Some([_, a, b]) => (*a, 1, *b),
        Some([_, c, .., h, w]) => (*h, *w, *c),
    }
}

/// Labels that depend on attributes, constants or shapes: depthwise convolutions, ReLU6 clips,
/// MatMuls with a folded weight (linear layers), and spatial means (the dynamo exporter's
/// `ReduceMean` over H, W is a global average pool).
fn refine_label(
    label: &'static str,
    ctx: &NodeCtx,
    groups: i64,
    c_in: i64,
    weighted: bool,
    input: Option<&[i64]>,
    output: Option<&[i64]>,
) -> &'static str {
    match label {
        "ReduceMean" => match (input, output) {
            (Some([n, c, _, _]), Some([n2, c2, 1, 1] | [n2, c2])) if n == n2 && c == c2 => {
                "GlobalAvgPool"
            }
            _ => "ReduceMean",
        },
        "Conv" if groups > 1 && groups == c_in => "DepthwiseConv",
        "Clip" => {
            let bound = |input: usize, attr: &str| -> Option<f64> {
                if ctx.opset >= 11 {
                    ctx.value(input).and_then(|v| v.first().copied())
                } else {
                    ctx.attr_f(attr).map(f64::from)
                }
            };
            if bound(1, "min") == Some(0.0) && bound(2, "max") == Some(6.0) {
                "ReLU6"
            } else {
                "Clip"
            }
        }
        "MatMul" if weighted => "Linear",
        other => other,
    }
}

/// Number of compute nodes on the longest path (nodes are added in topological order).
fn longest_path(g: &DiGraph<CgNode, ()>) -> usize {
    let mut depth = vec![0usize; g.node_count()];
    for idx in g.node_indices() {
        let own = usize::from(!matches!(g[idx].label.as_str(), "Input" | "Output"));
        let best = g
            .neighbors_directed(idx, petgraph::Direction::Incoming)
            .map(|p| depth[p.index()])
            .max()
            .unwrap_or(0);
        depth[idx.index()] = best + own;
    }
    depth.into_iter().max().unwrap_or(0)
}
