//! Normalisation layers.

use super::activation::per_element;
use super::{OpDef, Role, same_as_input};

pub(super) static OPS: &[OpDef] = &[
    OpDef {
        op_type: "BatchNormalization",
        label: "BatchNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<2>,
    },
    OpDef {
        op_type: "InstanceNormalization",
        label: "InstanceNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<5>,
    },
    OpDef {
        op_type: "LayerNormalization",
        label: "LayerNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<5>,
    },
    OpDef {
        op_type: "SimplifiedLayerNormalization",
        label: "RMSNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<4>,
    },
    OpDef {
        op_type: "RMSNormalization",
        label: "RMSNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<4>,
    },
    OpDef {
        op_type: "GroupNormalization",
        label: "GroupNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<5>,
    },
    OpDef {
        op_type: "MeanVarianceNormalization",
        label: "InstanceNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<5>,
    },
    OpDef {
        op_type: "LpNormalization",
        label: "LpNorm",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<3>,
    },
    OpDef {
        op_type: "LRN",
        label: "LRN",
        role: Role::Compute,
        infer: same_as_input,
        macs: per_element::<6>,
    },
];
