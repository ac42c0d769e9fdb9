//! Unary activations and elementwise math functions: output shape equals input shape.

use super::{OpDef, Role, out_volume, same_as_input};
use crate::graph::shape::{NodeCtx, TensorInfo};

/// onnx-tool's per-element operation costs (`onnx_tool/node.py`).
pub(super) const ADD: u64 = 1;
pub(super) const CMP: u64 = 1;
pub(super) const DIV: u64 = 4;
pub(super) const EXP: u64 = 32;
pub(super) const LOG: u64 = 43;
pub(super) const SQRT: u64 = 24;
pub(super) const TRIG: u64 = 39;
/// onnx-tool counts tanh twice (its `ratio` of 2 on `TANH_MACS` = EXP + 2·ADD + DIV).
pub(super) const TANH: u64 = 2 * (EXP + 2 * ADD + DIV);

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
    unary!("LeakyRelu", "LeakyReLU", 2),
    unary!("ThresholdedRelu", "ReLU", CMP),
    unary!("Elu", "ELU", CMP + EXP + 2),
    unary!("Selu", "SELU", CMP + EXP + 2),
    unary!("Celu", "ELU", CMP + EXP + 2),
    unary!("Sigmoid", "Sigmoid", EXP),
    unary!("HardSigmoid", "HardSigmoid", 4),
    unary!("Tanh", "Tanh", TANH),
    unary!("Softplus", "Softplus", EXP + ADD + LOG),
    unary!("Softsign", "Softsign", ADD + DIV),
    unary!("HardSwish", "HardSwish", 5),
    unary!("Swish", "Swish", EXP + 1),
    unary!("Mish", "Mish", EXP + ADD + LOG + TANH + 1),
    unary!("Gelu", "GELU", EXP + 2),
    unary!("FastGelu", "GELU", EXP + 2),
    unary!("Erf", "Erf", 0),
    unary!("Exp", "Exp", EXP),
    unary!("Log", "Log", LOG),
    unary!("Sqrt", "Sqrt", SQRT),
    unary!("Reciprocal", "Reciprocal", DIV),
    unary!("Abs", "Abs", 1),
    unary!("Neg", "Neg", 1),
    unary!("Sign", "Sign", CMP),
    unary!("Floor", "Round", 1),
    unary!("Ceil", "Round", 1),
    unary!("Round", "Round", 1),
    unary!("Sin", "Trig", TRIG),
    unary!("Cos", "Trig", TRIG),
    unary!("Tan", "Trig", TRIG),
    unary!("Atan", "Trig", 2 * EXP),
    unary!("Not", "Logical", 1),
    unary!("IsNaN", "Logical", CMP),
    unary!("IsInf", "Logical", CMP),
    unary!("Shrink", "Shrink", 2 * CMP),
    unary!("Clip", "Clip", 2 * CMP),
    unary!("Softmax", "Softmax", EXP + DIV),
    unary!("LogSoftmax", "Softmax", EXP + DIV + ADD + LOG),
    unary!("Hardmax", "Softmax", ADD),
];
