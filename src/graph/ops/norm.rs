//! Normalisation layers. MACs follow onnx-tool; GroupNorm and RMSNorm, which onnx-tool does not
//! profile, are costed like LayerNorm (per-element statistics plus one SQRT and DIV per group).

use super::activation::{ADD, DIV, SQRT, per_element};
use super::{OpDef, Role, same_as_input, volume};
use crate::graph::shape::{NodeCtx, TensorInfo, norm_axis};

pub(super) static OPS: &[OpDef] = &[
    OpDef {
        op_type: "BatchNormalization",
        label: "BatchNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<{ ADD + SQRT + DIV + ADD + 1 }>,
    },
    OpDef {
        op_type: "InstanceNormalization",
        label: "InstanceNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<{ ADD + 1 + ADD + DIV }>,
    },
    OpDef {
        op_type: "MeanVarianceNormalization",
        label: "InstanceNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<{ ADD + 1 + ADD + DIV }>,
    },
    OpDef {
        op_type: "LayerNormalization",
        label: "LayerNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: layer_norm_macs,
    },
    OpDef {
        op_type: "SimplifiedLayerNormalization",
        label: "RMSNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: layer_norm_macs,
    },
    OpDef {
        op_type: "RMSNormalization",
        label: "RMSNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: layer_norm_macs,
    },
    OpDef {
        op_type: "GroupNormalization",
        label: "GroupNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: group_norm_macs,
    },
    OpDef {
        op_type: "LpNormalization",
        label: "LpNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<33>,
    },
    OpDef {
        op_type: "LRN",
        label: "LRN",
        role: Role::Compute,
        infer: same_as_input,
        macs: lrn_macs,
    },
];

/// Per-element cost of normalising (3 MUL + 4 ADD) and per-statistic cost (ADD + SQRT + DIV).
const PER_ELEMENT: u64 = 7;
const PER_STATISTIC: u64 = ADD + SQRT + DIV;

/// LayerNorm (onnx-tool): `in·7 + in_reduced·29`, where `in_reduced` collapses the `axis` dim.
fn layer_norm_macs(ctx: &NodeCtx, _: &[TensorInfo]) -> u64 {
    let Some(x) = ctx.shape(0) else { return 0 };
    let axis = norm_axis(ctx.attr_i("axis").unwrap_or(-1), x.len()).unwrap_or(0);
    let mut reduced = x.to_vec();
    if let Some(d) = reduced.get_mut(axis) {
        *d = 1;
    }
    volume(x)
        .saturating_mul(PER_ELEMENT)
        .saturating_add(volume(&reduced).saturating_mul(PER_STATISTIC))
}

fn group_norm_macs(ctx: &NodeCtx, _: &[TensorInfo]) -> u64 {
    let Some(x) = ctx.shape(0) else { return 0 };
    let groups = ctx.attr_i("num_groups").unwrap_or(1).max(1) as u64;
    let batch = x.first().copied().unwrap_or(1).max(0) as u64;
    volume(x)
        .saturating_mul(PER_ELEMENT)
        .saturating_add(batch.saturating_mul(groups).saturating_mul(PER_STATISTIC))
}

/// LRN (onnx-tool): `out · (4 + 32 + 1 + size)`.
fn lrn_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    let size = ctx.attr_i("size").unwrap_or(1).max(0) as u64;
    super::out_volume(outputs, 0).saturating_mul(4 + 32 + 1 + size)
}
