//! The op registry: for every ONNX op type archdb understands, its label in the computation-graph
//! vocabulary, its role, its shape-inference rule and its MAC count. One module per op family;
//! adding an op is adding one [`OpDef`] entry to a family's `OPS` table.
//!
//! MACs follow onnx-tool's conventions (the reference the tests use): multiply-accumulates of
//! one forward pass at batch 1, where elementwise and normalisation ops count as well.

mod activation;
mod conv;
mod elementwise;
mod linear;
mod norm;
mod reduce;
mod tensor;

use foldhash::HashMap;
use std::sync::LazyLock;

use super::shape::{NodeCtx, TensorInfo};
pub use conv::window as conv_window;

/// What an op becomes in the computation graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A primitive compute op: one CG node.
    Compute,
    /// Layout/shape-only op (Reshape, Flatten, Identity, …): bypassed, its producers wired to its
    /// consumers.
    Bypass,
    /// Produces shape metadata, not activations (Shape, Size): never part of the data flow.
    Meta,
}

/// Computes output tensors (shapes, and values of small constant tensors) of a node.
pub type InferFn = fn(&NodeCtx) -> Vec<TensorInfo>;
/// Counts multiply-accumulates of a node given its inputs and inferred outputs.
pub type MacsFn = fn(&NodeCtx, &[TensorInfo]) -> u64;

/// One registry entry.
pub struct OpDef {
    /// ONNX op type in the default domain (or `com.microsoft` contrib ops, same name space).
    pub op_type: &'static str,
    /// Label in archdb's CG vocabulary (`docs/graph.md`).
    pub label: &'static str,
    pub role: Role,
    pub infer: InferFn,
    pub macs: MacsFn,
}

/// Label for ops the registry does not know: they keep their ONNX op type as a feature.
pub const UNKNOWN_LABEL: &str = "Other";

static REGISTRY: LazyLock<HashMap<&'static str, &'static OpDef>> = LazyLock::new(|| {
    [
        activation::OPS,
        conv::OPS,
        elementwise::OPS,
        linear::OPS,
        norm::OPS,
        reduce::OPS,
        tensor::OPS,
    ]
    .into_iter()
    .flatten()
    .map(|def| (def.op_type, def))
    .collect()
});

/// The registry entry of an ONNX op type.
pub fn lookup(op_type: &str) -> Option<&'static OpDef> {
    REGISTRY.get(op_type).copied()
}

/// Every registered op, sorted by op type (for documentation and the vocabulary endpoint).
pub fn all() -> Vec<&'static OpDef> {
    let mut ops: Vec<_> = REGISTRY.values().copied().collect();
    ops.sort_by_key(|d| d.op_type);
    ops
}

/// The label vocabulary: the sorted, deduplicated labels of all registered ops plus the
/// structural labels. Encoders index their op embeddings with it.
pub fn vocabulary() -> Vec<&'static str> {
    let mut labels: Vec<&str> = REGISTRY.values().map(|d| d.label).collect();
    labels.extend(["Input", "Output", "DepthwiseConv", "ReLU6", UNKNOWN_LABEL]);
    labels.sort_unstable();
    labels.dedup();
    labels
}

/// Output shape equal to the first input's (unary elementwise ops, normalisations, …).
pub(crate) fn same_as_input(ctx: &NodeCtx) -> Vec<TensorInfo> {
    vec![TensorInfo::shaped(ctx.shape(0).map(<[i64]>::to_vec))]
}

/// MACs of ops that do no arithmetic (data movement, shape ops).
pub(crate) fn no_macs(_: &NodeCtx, _: &[TensorInfo]) -> u64 {
    0
}

/// Number of elements of a shape (saturating).
pub(crate) fn volume(shape: &[i64]) -> u64 {
    shape
        .iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d.max(0) as u64))
}

/// Elements of output `i` for MAC counting: 0 when unknown, and 0 for scalars, as onnx-tool
/// counts them (its `volume([])` is 0).
pub(crate) fn out_volume(outputs: &[TensorInfo], i: usize) -> u64 {
    outputs
        .get(i)
        .and_then(|t| t.shape.as_deref())
        .filter(|s| !s.is_empty())
        .map_or(0, volume)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_label_is_documented() {
        let doc = include_str!("../../../docs/graph.md");
        for label in super::vocabulary() {
            assert!(
                doc.contains(&format!("`{label}`")),
                "docs/graph.md does not list `{label}`"
            );
        }
    }

    #[test]
    fn op_types_are_registered_once() {
        let count: usize = [
            super::activation::OPS,
            super::conv::OPS,
            super::elementwise::OPS,
            super::linear::OPS,
            super::norm::OPS,
            super::reduce::OPS,
            super::tensor::OPS,
        ]
        .iter()
        .map(|t| t.len())
        .sum();
        assert_eq!(count, super::all().len());
    }
}
