//! Convolutions and pooling.

use super::{OpDef, Role, out_volume, volume};
use crate::graph::shape::{NodeCtx, TensorInfo};

pub(super) static OPS: &[OpDef] = &[
    OpDef {
        op_type: "Conv",
        label: "Conv",
        role: Role::Compute,
        infer: infer_conv,
        macs: conv_macs,
    },
    OpDef {
        op_type: "ConvInteger",
        label: "Conv",
        role: Role::Compute,
        infer: infer_conv,
        macs: conv_macs,
    },
    OpDef {
        op_type: "QLinearConv",
        label: "Conv",
        role: Role::Compute,
        infer: infer_qconv,
        macs: qconv_macs,
    },
    OpDef {
        op_type: "ConvTranspose",
        label: "ConvTranspose",
        role: Role::Compute,
        infer: infer_conv_transpose,
        macs: conv_transpose_macs,
    },
    OpDef {
        op_type: "MaxPool",
        label: "MaxPool",
        role: Role::Compute,
        infer: infer_pool,
        macs: pool_macs,
    },
    OpDef {
        op_type: "AveragePool",
        label: "AvgPool",
        role: Role::Compute,
        infer: infer_pool,
        macs: pool_macs,
    },
    OpDef {
        op_type: "LpPool",
        label: "LpPool",
        role: Role::Compute,
        infer: infer_pool,
        macs: pool_macs,
    },
    OpDef {
        op_type: "GlobalAveragePool",
        label: "GlobalAvgPool",
        role: Role::Compute,
        infer: infer_global_pool,
        macs: global_pool_macs,
    },
    OpDef {
        op_type: "GlobalMaxPool",
        label: "GlobalMaxPool",
        role: Role::Compute,
        infer: infer_global_pool,
        macs: global_pool_macs,
    },
    OpDef {
        op_type: "GlobalLpPool",
        label: "GlobalLpPool",
        role: Role::Compute,
        infer: infer_global_pool,
        macs: global_pool_macs,
    },
];

/// Kernel, strides, dilations and pads of a windowed op, resolved against its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub kernel: Vec<i64>,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
}

/// The window of a Conv/pool node: kernel from `kernel_shape` or else the weight's spatial dims.
pub fn window(ctx: &NodeCtx, weight: Option<usize>) -> Option<Window> {
    let kernel = match ctx.attr_ints("kernel_shape") {
        Some(k) if !k.is_empty() => k.to_vec(),
        _ => ctx.shape(weight?)?.get(2..)?.to_vec(),
    };
    let n = kernel.len();
    let pick = |name: &str| -> Vec<i64> {
        match ctx.attr_ints(name) {
            Some(v) if v.len() == n => v.to_vec(),
            _ => vec![1; n],
        }
    };
    Some(Window {
        strides: pick("strides"),
        dilations: pick("dilations"),
        kernel,
    })
}

/// Spatial output sizes of a windowed op (Conv, pools), following the ONNX operator spec
/// including `auto_pad` and pooling's `ceil_mode`. Computed in i128, where products of two
/// attributes cannot overflow; results beyond i64 are unknown.
fn spatial_out(ctx: &NodeCtx, input: &[i64], w: &Window, ceil_mode: bool) -> Option<Vec<i64>> {
    let n = w.kernel.len();
    let spatial = input.get(2..)?;
    if spatial.len() != n {
        return None;
    }
    let auto_pad = ctx.attr_s("auto_pad").unwrap_or(b"NOTSET");
    let pads = ctx.attr_ints("pads").filter(|p| p.len() == 2 * n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (x, k, s, d) = (
            i128::from(spatial[i]),
            i128::from(w.kernel[i]),
            i128::from(w.strides[i].max(1)),
            i128::from(w.dilations[i].max(1)),
        );
        let effective = (k - 1) * d + 1;
        let o = match auto_pad {
            b"SAME_UPPER" | b"SAME_LOWER" => (x + s - 1) / s,
            b"VALID" => (x - effective) / s + 1,
            _ => {
                let (pb, pe) = pads.map_or((0, 0), |p| (i128::from(p[i]), i128::from(p[i + n])));
                let span = x + pb + pe - effective;
                if span < 0 {
                    return None;
                }
                if ceil_mode {
                    let mut o = (span + s - 1) / s + 1;
                    // The last window must start inside the input or the left padding.
                    if (o - 1) * s >= x + pb {
                        o -= 1;
                    }
                    o
                } else {
                    span / s + 1
                }
            }
        };
        if o <= 0 {
            return None;
        }
        out.push(i64::try_from(o).ok()?);
    }
    Some(out)
}

fn infer_conv(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let x = ctx.shape(0)?;
        let w = ctx.shape(1)?;
        let win = window(ctx, Some(1))?;
        let mut out = vec![*x.first()?, *w.first()?];
        out.extend(spatial_out(ctx, x, &win, false)?);
        Some(out)
    })();
    vec![TensorInfo::shaped(shape)]
}

fn infer_qconv(ctx: &NodeCtx) -> Vec<TensorInfo> {
    // QLinearConv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B)
    let shape = (|| {
        let x = ctx.shape(0)?;
        let w = ctx.shape(3)?;
        let win = window(ctx, Some(3))?;
        let mut out = vec![*x.first()?, *w.first()?];
        out.extend(spatial_out(ctx, x, &win, false)?);
        Some(out)
    })();
    vec![TensorInfo::shaped(shape)]
}

/// Conv MACs (onnx-tool): every output element accumulates `C_in/group · ∏kernel` products,
/// plus one addition per output element for the bias.
fn conv_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    conv_like_macs(ctx, outputs, 1, ctx.has_input(2))
}

fn qconv_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    conv_like_macs(ctx, outputs, 3, ctx.has_input(8))
}

fn conv_like_macs(ctx: &NodeCtx, outputs: &[TensorInfo], weight: usize, bias: bool) -> u64 {
    let Some(w) = ctx.shape(weight) else { return 0 };
    let per_output = volume(w.get(1..).unwrap_or(&[]));
    let out = out_volume(outputs, 0);
    out.saturating_mul(per_output)
        .saturating_add(if bias { out } else { 0 })
}

fn infer_conv_transpose(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let x = ctx.shape(0)?;
        let w = ctx.shape(1)?;
        let win = window(ctx, Some(1))?;
        let n = win.kernel.len();
        let group = ctx.attr_i("group").unwrap_or(1);
        let mut out = vec![*x.first()?, w.get(1)?.checked_mul(group)?];
        if let Some(shape) = ctx.attr_ints("output_shape").filter(|s| !s.is_empty()) {
            out.extend(shape.iter().rev().take(n).rev());
            return Some(out);
        }
        let pads = ctx.attr_ints("pads").filter(|p| p.len() == 2 * n);
        let output_padding = ctx.attr_ints("output_padding").filter(|p| p.len() == n);
        let auto_pad = ctx.attr_s("auto_pad").unwrap_or(b"NOTSET");
        // i128 as in `spatial_out`.
        for i in 0..n {
            let xi = i128::from(*x.get(2 + i)?);
            let s = i128::from(win.strides[i]);
            let size = if matches!(auto_pad, b"SAME_UPPER" | b"SAME_LOWER") {
                xi * s
            } else {
                let (pb, pe) = pads.map_or((0, 0), |p| (i128::from(p[i]), i128::from(p[i + n])));
                let op = i128::from(output_padding.map_or(0, |p| p[i]));
                let (k, d) = (i128::from(win.kernel[i]), i128::from(win.dilations[i]));
                s * (xi - 1) + op + (k - 1) * d + 1 - pb - pe
            };
            out.push(i64::try_from(size).ok()?);
        }
        Some(out)
    })();
    vec![TensorInfo::shaped(shape)]
}

/// ConvTranspose MACs (onnx-tool): every *input* element is scattered through
/// `C_out/group · ∏kernel` products, plus bias additions on the output.
fn conv_transpose_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    let (Some(x), Some(w)) = (ctx.shape(0), ctx.shape(1)) else {
        return 0;
    };
    let per_input = volume(w.get(1..).unwrap_or(&[]));
    let bias = if ctx.has_input(2) {
        out_volume(outputs, 0)
    } else {
        0
    };
    volume(x).saturating_mul(per_input).saturating_add(bias)
}

fn infer_pool(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let x = ctx.shape(0)?;
        let win = window(ctx, None)?;
        let ceil = ctx.attr_i("ceil_mode").unwrap_or(0) != 0;
        let mut out = x.get(..2)?.to_vec();
        out.extend(spatial_out(ctx, x, &win, ceil)?);
        Some(out)
    })();
    // MaxPool's optional second output (indices) has the same shape.
    vec![TensorInfo::shaped(shape.clone()), TensorInfo::shaped(shape)]
}

/// Pool MACs (onnx-tool): each output element reduces a `∏kernel` window.
fn pool_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    let k = window(ctx, None).map_or(1, |w| volume(&w.kernel));
    out_volume(outputs, 0).saturating_mul(k)
}

fn infer_global_pool(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = ctx.shape(0).map(|x| {
        x.iter()
            .enumerate()
            .map(|(i, &d)| if i < 2 { d } else { 1 })
            .collect()
    });
    vec![TensorInfo::shaped(shape)]
}

/// Global pool MACs: onnx-tool's GlobalAveragePool is one ADD per input element plus one DIV
/// (4) per output; max and Lp pools (not profiled by onnx-tool) count the input elements.
fn global_pool_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    let input = ctx.shape(0).map_or(0, volume);
    let divisions = if ctx.node.op_type() == "GlobalAveragePool" {
        out_volume(outputs, 0).saturating_mul(4)
    } else {
        0
    };
    input.saturating_add(divisions)
}
