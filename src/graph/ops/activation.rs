//! Unary activations and elementwise math functions: output shape equals input shape.

use super::{OpDef, Role, out_volume, same_as_input};
use crate::graph::shape::{NodeCtx, TensorInfo};

/// onnx-tool's per-element operation costs.
const CMP: u64 = 1;
const EXP: u64 = 1;

/// `K` operations per output element.
pub(super) fn per_element<const K: u64>(_: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    out_volume(outputs, 0).saturating_mul(K)
}

macro_rules! unary {
    ($op:literal, $label:literal, $cost:expr) => {
        OpDef {
            op_type: $op,
            label: $label,
            role: Role::Compute,
            infer: same_as_input,
            macs: per_element::<{ $cost }>,
        }
    };
}

pub(super) static OPS: &[OpDef] = &[
    unary!("Relu", "ReLU", CMP),
    unary!("LeakyRelu", "LeakyReLU", CMP + 1),
    unary!("ThresholdedRelu", "ReLU", CMP),
    unary!("Elu", "ELU", EXP + 2),
    unary!("Selu", "SELU", EXP + 3),
    unary!("Celu", "ELU", EXP + 3),
    unary!("Sigmoid", "Sigmoid", EXP + 2),
    unary!("HardSigmoid", "HardSigmoid", 3),
    unary!("Tanh", "Tanh", EXP + 4),
    unary!("Softplus", "Softplus", EXP + 2),
    unary!("Softsign", "Softsign", 3),
    unary!("HardSwish", "HardSwish", 5),
    unary!("Swish", "Swish", EXP + 3),
    unary!("Mish", "Mish", 3 * EXP + 5),
    unary!("Gelu", "GELU", EXP + 8),
    unary!("FastGelu", "GELU", EXP + 8),
    unary!("Erf", "Erf", EXP + 4),
    unary!("Exp", "Exp", EXP),
    unary!("Log", "Log", EXP),
    unary!("Sqrt", "Sqrt", 1),
    unary!("Reciprocal", "Reciprocal", 1),
    unary!("Abs", "Abs", CMP),
    unary!("Neg", "Neg", 1),
    unary!("Sign", "Sign", CMP),
    unary!("Floor", "Round", 1),
    unary!("Ceil", "Round", 1),
    unary!("Round", "Round", 1),
    unary!("Sin", "Trig", 1),
    unary!("Cos", "Trig", 1),
    unary!("Tan", "Trig", 1),
    unary!("Atan", "Trig", 1),
    unary!("Not", "Logical", CMP),
    unary!("IsNaN", "Logical", CMP),
    unary!("IsInf", "Logical", CMP),
    unary!("Shrink", "Shrink", 2 * CMP),
    unary!("Clip", "Clip", 2 * CMP),
    unary!("Softmax", "Softmax", EXP + 2),
    unary!("LogSoftmax", "Softmax", EXP + 3),
    unary!("Hardmax", "Softmax", CMP),
];
