//! Reductions over axes.

use super::{OpDef, Role, out_volume, volume};
use crate::graph::shape::{NodeCtx, TensorInfo, norm_axis};

macro_rules! reduce {
    ($op:literal, $label:literal) => {
        OpDef {
            op_type: $op,
            label: $label,
            role: Role::Compute,
            infer: infer_reduce,
            macs: reduce_macs,
        }
    };
}

pub(super) static OPS: &[OpDef] = &[
    reduce!("ReduceMean", "ReduceMean"),
    reduce!("ReduceSum", "ReduceSum"),
    reduce!("ReduceMax", "ReduceMax"),
    reduce!("ReduceMin", "ReduceMin"),
    reduce!("ReduceProd", "ReduceProd"),
    reduce!("ReduceL1", "ReduceNorm"),
    reduce!("ReduceL2", "ReduceNorm"),
    reduce!("ReduceLogSum", "ReduceSum"),
    reduce!("ReduceLogSumExp", "ReduceSum"),
    reduce!("ReduceSumSquare", "ReduceNorm"),
    OpDef {
        op_type: "ArgMax",
        label: "ArgMax",
        role: Role::Compute,
        infer: infer_arg,
        macs: reduce_macs,
    },
    OpDef {
        op_type: "ArgMin",
        label: "ArgMax",
        role: Role::Compute,
        infer: infer_arg,
        macs: reduce_macs,
    },
    OpDef {
        op_type: "TopK",
        label: "TopK",
        role: Role::Compute,
        infer: infer_topk,
        macs: reduce_macs,
    },
    OpDef {
        op_type: "CumSum",
        label: "CumSum",
        role: Role::Compute,
        infer: super::same_as_input,
        macs: reduce_macs,
    },
];

/// The reduced axes: from the `axes` input (ReduceSum ≥ 13, others ≥ 18) or attribute.
fn reduce_axes(ctx: &NodeCtx, rank: usize) -> Option<Vec<usize>> {
    let axes = ctx.ints_input_or_attr(1, "axes");
    match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&x| norm_axis(x, rank)).collect(),
        // An axes input that is given but not a known constant: cannot infer.
        _ if ctx.has_input(1) && ctx.value(1).is_none() => None,
        _ if ctx.attr_i("noop_with_empty_axes").unwrap_or(0) != 0 => Some(vec![]),
        _ => Some((0..rank).collect()),
    }
}

fn reduced_shape(shape: &[i64], axes: &[usize], keepdims: bool) -> Vec<i64> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(d),
        })
        .collect()
}

fn infer_reduce(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let keepdims = ctx.attr_i("keepdims").unwrap_or(1) != 0;
    let info = (|| {
        let x = ctx.shape(0)?;
        let axes = reduce_axes(ctx, x.len())?;
        let shape = reduced_shape(x, &axes, keepdims);
        // Shape arithmetic sometimes multiplies dims with ReduceProd.
        let value = match (ctx.node.op_type(), ctx.value(0)) {
            ("ReduceProd", Some(v)) if x.len() == 1 => Some(vec![v.iter().product()]),
            ("ReduceSum", Some(v)) if x.len() == 1 => Some(vec![v.iter().sum()]),
            _ => None,
        };
        Some(TensorInfo {
            shape: Some(shape),
            value,
        })
    })();
    vec![info.unwrap_or_default()]
}

fn infer_arg(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let keepdims = ctx.attr_i("keepdims").unwrap_or(1) != 0;
    let shape = ctx.shape(0).and_then(|x| {
        let axis = norm_axis(ctx.attr_i("axis").unwrap_or(0), x.len())?;
        Some(reduced_shape(x, &[axis], keepdims))
    });
    vec![TensorInfo::shaped(shape)]
}

fn infer_topk(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = ctx.shape(0).and_then(|x| {
        let axis = norm_axis(ctx.attr_i("axis").unwrap_or(-1), x.len())?;
        let k = ctx
            .ints(1)
            .and_then(|k| k.first().copied())
            .or(ctx.attr_i("k"))?;
        let mut s = x.to_vec();
        s[axis] = k;
        Some(s)
    });
    vec![TensorInfo::shaped(shape.clone()), TensorInfo::shaped(shape)]
}

/// Reductions (onnx-tool): one operation per input element (ReduceL2: 25, a square root
/// included); arg/top-k selections cost nothing, CumSum one per output.
fn reduce_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    let per_input = match ctx.node.op_type() {
        "ArgMax" | "ArgMin" | "TopK" => return 0,
        "CumSum" => return out_volume(outputs, 0),
        "ReduceL2" => 25,
        "ReduceSumSquare" => 2,
        "ReduceLogSumExp" => 33,
        _ => 1,
    };
    ctx.shape(0).map_or(0, volume).saturating_mul(per_input)
}
