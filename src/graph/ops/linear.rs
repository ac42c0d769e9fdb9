//! Matrix products: Gemm, MatMul, Einsum.

use std::collections::BTreeMap;

use super::{OpDef, Role, out_volume, volume};
use crate::graph::shape::{NodeCtx, TensorInfo, broadcast};

pub(super) static OPS: &[OpDef] = &[
    OpDef {
        op_type: "Gemm",
        label: "Linear",
        role: Role::Compute,
        infer: infer_gemm,
        macs: gemm_macs,
    },
    OpDef {
        op_type: "MatMul",
        label: "MatMul",
        role: Role::Compute,
        infer: infer_matmul,
        macs: matmul_macs,
    },
    OpDef {
        op_type: "MatMulInteger",
        label: "MatMul",
        role: Role::Compute,
        infer: infer_matmul,
        macs: matmul_macs,
    },
    OpDef {
        op_type: "Einsum",
        label: "Einsum",
        role: Role::Compute,
        infer: infer_einsum,
        macs: einsum_macs,
    },
];

/// `(M, K, N)` of a Gemm after its transpose flags.
fn gemm_dims(ctx: &NodeCtx) -> Option<(i64, i64, i64)> {
    let a = ctx.shape(0)?;
    let b = ctx.shape(1)?;
    let (&[a0, a1], &[b0, b1]) = (a, b) else {
        return None;
    };
    let (m, k) = if ctx.attr_i("transA").unwrap_or(0) != 0 {
        (a1, a0)
    } else {
        (a0, a1)
    };
    let n = if ctx.attr_i("transB").unwrap_or(0) != 0 {
        b0
    } else {
        b1
    };
    Some((m, k, n))
}

fn infer_gemm(ctx: &NodeCtx) -> Vec<TensorInfo> {
    vec![TensorInfo::shaped(
        gemm_dims(ctx).map(|(m, _, n)| vec![m, n]),
    )]
}

/// Gemm MACs (onnx-tool): `M·K·N` products plus `M·N` bias additions when C is given.
fn gemm_macs(ctx: &NodeCtx, _: &[TensorInfo]) -> u64 {
    let Some((m, k, n)) = gemm_dims(ctx) else {
        return 0;
    };
    let mn = volume(&[m, n]);
    let bias = if ctx.has_input(2) { mn } else { 0 };
    mn.saturating_mul(k.max(0) as u64).saturating_add(bias)
}

/// Output shape and inner dimension of a NumPy-style matmul.
fn matmul_dims(ctx: &NodeCtx) -> Option<(Vec<i64>, i64)> {
    let a = ctx.shape(0)?;
    let b = ctx.shape(1)?;
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2: Vec<i64> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<i64> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let k = a2[a2.len() - 1];
    if b2[b2.len() - 2] != k {
        return None;
    }
    let batch = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    let mut out = batch;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2]);
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1]);
    }
    Some((out, k))
}

fn infer_matmul(ctx: &NodeCtx) -> Vec<TensorInfo> {
    vec![TensorInfo::shaped(matmul_dims(ctx).map(|(s, _)| s))]
}

/// MatMul MACs: each output element is a `K`-long dot product.
fn matmul_macs(ctx: &NodeCtx, _: &[TensorInfo]) -> u64 {
    matmul_dims(ctx).map_or(0, |(s, k)| volume(&s).saturating_mul(k.max(0) as u64))
}

/// Index sizes of an explicit Einsum equation (no ellipsis) and its output letters.
fn einsum_indices(ctx: &NodeCtx) -> Option<(BTreeMap<u8, i64>, Vec<u8>)> {
    let eq: Vec<u8> = ctx
        .attr_s("equation")?
        .iter()
        .copied()
        .filter(|c| *c != b' ')
        .collect();
    if eq.contains(&b'.') {
        return None;
    }
    let text = std::str::from_utf8(&eq).ok()?;
    let (lhs, rhs) = text.split_once("->")?;
    let mut sizes = BTreeMap::new();
    for (i, term) in lhs.split(',').enumerate() {
        let shape = ctx.shape(i)?;
        if shape.len() != term.len() {
            return None;
        }
        for (c, &d) in term.bytes().zip(shape) {
            let size = sizes.entry(c).or_insert(d);
            if *size == 1 {
                *size = d;
            }
        }
    }
    let out: Vec<u8> = rhs.bytes().collect();
    Some((sizes, out))
}

fn infer_einsum(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = einsum_indices(ctx)
        .and_then(|(sizes, out)| out.iter().map(|c| sizes.get(c).copied()).collect());
    vec![TensorInfo::shaped(shape)]
}

/// Einsum MACs: one product per point of the full index space.
fn einsum_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    einsum_indices(ctx).map_or_else(
        || out_volume(outputs, 0),
        |(sizes, _)| volume(&sizes.values().copied().collect::<Vec<_>>()),
    )
}
