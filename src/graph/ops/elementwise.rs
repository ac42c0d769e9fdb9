//! Broadcasting binary and variadic elementwise ops. Their values are propagated for small
//! constant tensors, because exporters build shapes with integer arithmetic.

use super::activation::{DIV, EXP};
use super::{OpDef, Role, out_volume};
use crate::graph::shape::{NodeCtx, TensorInfo, broadcast, broadcast_values};

pub(super) static OPS: &[OpDef] = &[
    binary("Add", "Add"),
    binary("Sub", "Sub"),
    binary("Mul", "Mul"),
    binary("Div", "Div"),
    binary("Pow", "Pow"),
    binary("Mod", "Mod"),
    binary("Max", "Max"),
    binary("Min", "Min"),
    binary("Sum", "Add"),
    binary("Mean", "Mean"),
    binary("PRelu", "PReLU"),
    binary("Equal", "Compare"),
    binary("Less", "Compare"),
    binary("Greater", "Compare"),
    binary("LessOrEqual", "Compare"),
    binary("GreaterOrEqual", "Compare"),
    binary("And", "Logical"),
    binary("Or", "Logical"),
    binary("Xor", "Logical"),
    binary("BitShift", "Logical"),
    binary("Where", "Where"),
];

/// A broadcasting op; its constant values are computed by [`value_rule`].
const fn binary(op_type: &'static str, label: &'static str) -> OpDef {
    OpDef {
        op_type,
        label,
        role: Role::Compute,
        infer: infer_broadcast,
        macs: broadcast_macs,
    }
}

/// Operands a value rule reads: variadic ops need one, `Where` three, the rest two (a node
/// with fewer inputs is invalid and gets no values).
fn arity(op_type: &str) -> usize {
    match op_type {
        "Add" | "Sum" | "Mul" | "Max" | "Min" | "Mean" => 1,
        "Where" => 3,
        _ => 2,
    }
}

/// How constant values combine, per op type.
fn value_rule(op_type: &str) -> fn(&[f64]) -> f64 {
    match op_type {
        "Add" | "Sum" => add,
        "Sub" => sub,
        "Mul" => mul,
        "Div" => div,
        "Pow" => pow,
        "Mod" => modulo,
        "Max" => max,
        "Min" => min,
        "Mean" => mean,
        "Equal" => equal,
        "Less" => less,
        "Greater" => greater,
        "LessOrEqual" => less_equal,
        "GreaterOrEqual" => greater_equal,
        "And" => and,
        "Or" => or,
        "Xor" => xor,
        "Where" => select,
        _ => no_value,
    }
}

fn add(a: &[f64]) -> f64 {
    a.iter().sum()
}
fn sub(a: &[f64]) -> f64 {
    a[0] - a[1]
}
fn mul(a: &[f64]) -> f64 {
    a.iter().product()
}
/// Integer shape arithmetic divides with truncation; exact quotients are unaffected.
fn div(a: &[f64]) -> f64 {
    let q = a[0] / a[1];
    if a[0].fract() == 0.0 && a[1].fract() == 0.0 {
        q.trunc()
    } else {
        q
    }
}
fn pow(a: &[f64]) -> f64 {
    a[0].powf(a[1])
}
fn modulo(a: &[f64]) -> f64 {
    a[0] % a[1]
}
fn max(a: &[f64]) -> f64 {
    a.iter().copied().fold(f64::MIN, f64::max)
}
fn min(a: &[f64]) -> f64 {
    a.iter().copied().fold(f64::MAX, f64::min)
}
fn mean(a: &[f64]) -> f64 {
    add(a) / a.len() as f64
}
fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}
fn equal(a: &[f64]) -> f64 {
    bool_value(a[0] == a[1])
}
fn less(a: &[f64]) -> f64 {
    bool_value(a[0] < a[1])
}
fn greater(a: &[f64]) -> f64 {
    bool_value(a[0] > a[1])
}
fn less_equal(a: &[f64]) -> f64 {
    bool_value(a[0] <= a[1])
}
fn greater_equal(a: &[f64]) -> f64 {
    bool_value(a[0] >= a[1])
}
fn and(a: &[f64]) -> f64 {
    bool_value(a[0] != 0.0 && a[1] != 0.0)
}
fn or(a: &[f64]) -> f64 {
    bool_value(a[0] != 0.0 || a[1] != 0.0)
}
fn xor(a: &[f64]) -> f64 {
    bool_value((a[0] != 0.0) != (a[1] != 0.0))
}
fn select(a: &[f64]) -> f64 {
    if a[0] != 0.0 { a[1] } else { a[2] }
}
fn no_value(_: &[f64]) -> f64 {
    f64::NAN
}

fn infer_broadcast(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let present: Vec<usize> = (0..ctx.node.input.len())
        .filter(|&i| ctx.has_input(i))
        .collect();
    let shapes: Option<Vec<&[i64]>> = present.iter().map(|&i| ctx.shape(i)).collect();
    let Some(shape) = shapes.as_deref().and_then(broadcast) else {
        return vec![TensorInfo::unknown()];
    };
    let rule = value_rule(ctx.node.op_type());
    let value = (|| {
        if present.len() < arity(ctx.node.op_type()) {
            return None;
        }
        let args: Option<Vec<(&[i64], &[f64])>> = present
            .iter()
            .map(|&i| Some((ctx.shape(i)?, ctx.value(i)?)))
            .collect();
        let values = broadcast_values(&args?, &shape, rule)?;
        values.iter().all(|v| v.is_finite()).then_some(values)
    })();
    vec![TensorInfo {
        shape: Some(shape),
        value,
    }]
}

/// Broadcast ops (onnx-tool): a per-op cost per output element, whatever the operand count
/// (onnx-tool's intended per-operand factor is never applied), except variadic `Sum`/`Mean`.
fn broadcast_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    let operands = ctx.node.input.iter().filter(|n| !n.is_empty()).count() as u64;
    let adds = operands.saturating_sub(1).max(1);
    let cost = match ctx.node.op_type() {
        "Div" => DIV,
        "Pow" => EXP,
        "PRelu" => 2,
        "Where" => 0,
        "Sum" => adds,
        "Mean" => adds + DIV,
        _ => 1,
    };
    out_volume(outputs, 0).saturating_mul(cost)
}
