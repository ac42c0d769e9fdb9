//! Data movement and shape ops: reshaping, slicing, joining, gathering, padding, resizing,
//! constants, and control flow (recorded as one opaque node).

use super::{OpDef, Role, no_macs, out_volume, same_as_input, volume};
use crate::graph::shape::{
    MAX_TRACKED_VALUES, NodeCtx, TensorInfo, broadcast, checked_product, norm_axis, strides,
};
use crate::onnx::tensor_values;

macro_rules! op {
    ($op:literal, $label:literal, $role:ident, $infer:expr) => {
        OpDef {
            op_type: $op,
            label: $label,
            role: Role::$role,
            infer: $infer,
            macs: no_macs,
        }
    };
    ($op:literal, $label:literal, $role:ident, $infer:expr, $macs:expr) => {
        OpDef {
            op_type: $op,
            label: $label,
            role: Role::$role,
            infer: $infer,
            macs: $macs,
        }
    };
}

pub(super) static OPS: &[OpDef] = &[
    op!("Identity", "Identity", Bypass, pass_through),
    op!("Dropout", "Identity", Bypass, pass_through),
    op!("Cast", "Identity", Bypass, pass_through),
    op!("CastLike", "Identity", Bypass, pass_through),
    op!("Flatten", "Reshape", Bypass, infer_flatten),
    op!("Reshape", "Reshape", Bypass, infer_reshape),
    op!("Squeeze", "Reshape", Bypass, infer_squeeze),
    op!("Unsqueeze", "Reshape", Bypass, infer_unsqueeze),
    op!("Transpose", "Transpose", Bypass, infer_transpose),
    op!("Expand", "Expand", Bypass, infer_expand),
    op!("Shape", "Shape", Meta, infer_shape),
    op!("Size", "Shape", Meta, infer_size),
    op!("Constant", "Constant", Compute, infer_constant),
    op!(
        "ConstantOfShape",
        "Constant",
        Compute,
        infer_constant_of_shape
    ),
    op!("Range", "Range", Compute, infer_range),
    op!("Concat", "Concat", Compute, infer_concat),
    op!("Split", "Split", Compute, infer_split),
    op!("Slice", "Slice", Compute, infer_slice),
    op!("Gather", "Gather", Compute, infer_gather),
    op!("GatherElements", "Gather", Compute, infer_gather_elements),
    op!("GatherND", "Gather", Compute, unknown),
    op!("ScatterND", "Scatter", Compute, same_as_input),
    op!("ScatterElements", "Scatter", Compute, same_as_input),
    op!("Tile", "Tile", Compute, infer_tile),
    op!("Pad", "Pad", Compute, infer_pad),
    op!("Resize", "Resize", Compute, infer_resize, resize_macs),
    op!("Upsample", "Resize", Compute, infer_resize, resize_macs),
    op!(
        "DepthToSpace",
        "DepthToSpace",
        Compute,
        infer_depth_to_space
    ),
    op!(
        "SpaceToDepth",
        "SpaceToDepth",
        Compute,
        infer_space_to_depth
    ),
    op!("Trilu", "Mask", Compute, same_as_input),
    op!("NonZero", "NonZero", Compute, unknown),
    op!("OneHot", "OneHot", Compute, infer_one_hot),
    op!("If", "ControlFlow", Compute, unknown),
    op!("Loop", "ControlFlow", Compute, unknown),
    op!("Scan", "ControlFlow", Compute, unknown),
    op!("EyeLike", "Constant", Compute, same_as_input),
    op!("RandomNormalLike", "Constant", Compute, same_as_input),
    op!("RandomUniformLike", "Constant", Compute, same_as_input),
];

fn unknown(_: &NodeCtx) -> Vec<TensorInfo> {
    vec![TensorInfo::unknown()]
}

/// Output is input 0, values included (Identity, Cast, Dropout).
fn pass_through(ctx: &NodeCtx) -> Vec<TensorInfo> {
    vec![
        ctx.inputs
            .first()
            .map_or_else(TensorInfo::unknown, |&t| t.clone()),
    ]
}

/// Same values, new shape (Reshape, Flatten, Squeeze, Unsqueeze keep row-major order).
fn reshaped(ctx: &NodeCtx, shape: Option<Vec<i64>>) -> Vec<TensorInfo> {
    let value = shape.as_ref().and(ctx.value(0).map(<[f64]>::to_vec));
    vec![TensorInfo { shape, value }]
}

fn infer_flatten(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = ctx.shape(0).and_then(|x| {
        let axis = ctx.attr_i("axis").unwrap_or(1);
        let axis = if axis < 0 {
            axis + x.len() as i64
        } else {
            axis
        } as usize;
        if axis > x.len() {
            return None;
        }
        Some(vec![
            checked_product(&x[..axis])?,
            checked_product(&x[axis..])?,
        ])
    });
    reshaped(ctx, shape)
}

fn infer_reshape(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let x = ctx.shape(0)?;
        let target = ctx.ints_input_or_attr(1, "shape")?;
        let allow_zero = ctx.attr_i("allowzero").unwrap_or(0) != 0;
        let mut out: Vec<i64> = target
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if d == 0 && !allow_zero {
                    x.get(i).copied().unwrap_or(0)
                } else {
                    d
                }
            })
            .collect();
        if let Some(pos) = out.iter().position(|&d| d == -1) {
            let rest: Vec<i64> = out.iter().copied().filter(|&d| d != -1).collect();
            let known = checked_product(&rest)?;
            if known == 0 {
                return None;
            }
            out[pos] = checked_product(x)? / known;
        }
        (out.iter().all(|&d| d >= 0) && volume(&out) == volume(x)).then_some(out)
    })();
    reshaped(ctx, shape)
}

fn infer_squeeze(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = ctx
        .shape(0)
        .and_then(|x| match ctx.ints_input_or_attr(1, "axes") {
            Some(axes) => {
                let axes: Option<Vec<usize>> =
                    axes.iter().map(|&a| norm_axis(a, x.len())).collect();
                let axes = axes?;
                Some(
                    x.iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, &d)| d)
                        .collect(),
                )
            }
            None if ctx.has_input(1) => None,
            None => Some(x.iter().copied().filter(|&d| d != 1).collect()),
        });
    reshaped(ctx, shape)
}

fn infer_unsqueeze(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let x = ctx.shape(0)?;
        let axes = ctx.ints_input_or_attr(1, "axes")?;
        let rank = x.len() + axes.len();
        let mut axes: Vec<usize> = axes
            .iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<Option<_>>()?;
        axes.sort_unstable();
        let mut out = x.to_vec();
        for a in axes {
            if a > out.len() {
                return None;
            }
            out.insert(a, 1);
        }
        Some(out)
    })();
    reshaped(ctx, shape)
}

fn infer_transpose(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let info = ctx.shape(0).and_then(|x| {
        let perm: Vec<usize> = match ctx.attr_ints("perm") {
            Some(p) if !p.is_empty() => p
                .iter()
                .map(|&a| usize::try_from(a).ok())
                .collect::<Option<_>>()?,
            _ => (0..x.len()).rev().collect(),
        };
        if perm.len() != x.len() {
            return None;
        }
        let shape: Vec<i64> = perm
            .iter()
            .map(|&p| x.get(p).copied())
            .collect::<Option<_>>()?;
        // Exporters transpose pad vectors: input axis `perm[i]` is output axis `i`.
        let value = ctx.value(0).and_then(|v| {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            gather_values_with(v, x, &shape, |out_coord, in_axis| {
                out_coord[inverse[in_axis]]
            })
        });
        Some(TensorInfo {
            shape: Some(shape),
            value,
        })
    });
    vec![info.unwrap_or_default()]
}

/// Values of an output tensor whose coordinate on each axis maps to one input coordinate on the
/// same axis (slicing).
fn gather_values(
    values: &[f64],
    in_shape: &[i64],
    out_shape: &[i64],
    map: impl Fn(usize, i64) -> i64,
) -> Option<Vec<f64>> {
    gather_values_with(values, in_shape, out_shape, |out_coord, axis| {
        map(axis, out_coord[axis])
    })
}

/// Values of an output tensor where each input coordinate is computed from the whole output
/// coordinate (slicing, transposition).
fn gather_values_with(
    values: &[f64],
    in_shape: &[i64],
    out_shape: &[i64],
    map: impl Fn(&[i64], usize) -> i64,
) -> Option<Vec<f64>> {
    let n = volume(out_shape);
    if n > MAX_TRACKED_VALUES || values.len() as u64 != volume(in_shape) {
        return None;
    }
    let in_strides = strides(in_shape);
    let mut coord = vec![0i64; out_shape.len()];
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let mut idx = 0usize;
        for (axis, &stride) in in_strides.iter().enumerate() {
            idx = idx.saturating_add(
                usize::try_from(map(&coord, axis))
                    .ok()?
                    .saturating_mul(stride),
            );
        }
        out.push(*values.get(idx)?);
        for axis in (0..coord.len()).rev() {
            coord[axis] += 1;
            if coord[axis] < out_shape[axis] {
                break;
            }
            coord[axis] = 0;
        }
    }
    Some(out)
}

fn infer_expand(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| broadcast(&[ctx.shape(0)?, &ctx.ints(1)?]))();
    let value = shape.as_ref().and_then(|s| {
        let v = ctx.value(0)?;
        (v.len() == 1 && volume(s) <= MAX_TRACKED_VALUES).then(|| vec![v[0]; volume(s) as usize])
    });
    vec![TensorInfo { shape, value }]
}

fn infer_shape(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let Some(x) = ctx.shape(0) else {
        return unknown(ctx);
    };
    let rank = x.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(ctx.attr_i("start").unwrap_or(0));
    let end = clamp(ctx.attr_i("end").unwrap_or(rank));
    let dims: Vec<f64> = x[start..end.max(start)].iter().map(|&d| d as f64).collect();
    vec![TensorInfo::constant(vec![dims.len() as i64], dims)]
}

fn infer_size(ctx: &NodeCtx) -> Vec<TensorInfo> {
    match ctx.shape(0) {
        Some(x) => vec![TensorInfo::constant(vec![], vec![volume(x) as f64])],
        None => unknown(ctx),
    }
}

fn infer_constant(ctx: &NodeCtx) -> Vec<TensorInfo> {
    if let Some(t) = ctx.attr_t("value") {
        let mut info = TensorInfo::shaped(Some(t.dims.clone()));
        info.value = tensor_values(t, MAX_TRACKED_VALUES);
        return vec![info];
    }
    let info = if let Some(v) = ctx.attr_f("value_float") {
        TensorInfo::constant(vec![], vec![v as f64])
    } else if let Some(v) = ctx.attr_i("value_int") {
        TensorInfo::constant(vec![], vec![v as f64])
    } else if let Some(a) = ctx.attr("value_floats") {
        TensorInfo::constant(
            vec![a.floats.len() as i64],
            a.floats.iter().map(|&v| v as f64).collect(),
        )
    } else if let Some(v) = ctx.attr_ints("value_ints") {
        TensorInfo::constant(vec![v.len() as i64], v.iter().map(|&v| v as f64).collect())
    } else {
        TensorInfo::unknown()
    };
    vec![info]
}

fn infer_constant_of_shape(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let Some(shape) = ctx.ints(0) else {
        return unknown(ctx);
    };
    let fill = ctx
        .attr_t("value")
        .and_then(|t| tensor_values(t, 1))
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0);
    let n = volume(&shape);
    let value = (n <= MAX_TRACKED_VALUES).then(|| vec![fill; n as usize]);
    vec![TensorInfo {
        shape: Some(shape),
        value,
    }]
}

fn infer_range(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let (Some(start), Some(limit), Some(delta)) = (ctx.value(0), ctx.value(1), ctx.value(2)) else {
        return unknown(ctx);
    };
    let (Some(&start), Some(&limit), Some(&delta)) = (start.first(), limit.first(), delta.first())
    else {
        return unknown(ctx);
    };
    if delta == 0.0 {
        return unknown(ctx);
    }
    let n = ((limit - start) / delta).ceil().max(0.0) as i64;
    let value = (n as u64 <= MAX_TRACKED_VALUES)
        .then(|| (0..n).map(|i| start + i as f64 * delta).collect());
    vec![TensorInfo {
        shape: Some(vec![n]),
        value,
    }]
}

fn infer_concat(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let info = (|| {
        let present: Vec<usize> = (0..ctx.node.input.len())
            .filter(|&i| ctx.has_input(i))
            .collect();
        let shapes: Vec<&[i64]> = present
            .iter()
            .map(|&i| ctx.shape(i))
            .collect::<Option<_>>()?;
        let first = *shapes.first()?;
        let axis = norm_axis(ctx.attr_i("axis")?, first.len())?;
        let mut out = first.to_vec();
        out[axis] = shapes
            .iter()
            .map(|s| s.get(axis).copied().unwrap_or(0))
            .try_fold(0i64, i64::checked_add)?;
        let value = (first.len() == 1)
            .then(|| {
                present
                    .iter()
                    .map(|&i| ctx.value(i))
                    .collect::<Option<Vec<_>>>()
            })
            .flatten()
            .map(|vs| vs.concat());
        Some(TensorInfo {
            shape: Some(out),
            value,
        })
    })();
    vec![info.unwrap_or_default()]
}

fn infer_split(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let outputs = ctx.node.output.len();
    let shapes = (|| {
        let x = ctx.shape(0)?;
        let axis = norm_axis(ctx.attr_i("axis").unwrap_or(0), x.len())?;
        let parts = match ctx.ints_input_or_attr(1, "split") {
            Some(p) if !p.is_empty() => p,
            _ => {
                // Never more parts than declared outputs (a hostile `num_outputs` must not allocate).
                let n = ctx
                    .attr_i("num_outputs")
                    .unwrap_or(outputs as i64)
                    .clamp(1, outputs.max(1) as i64);
                let chunk = x[axis].saturating_add(n - 1) / n;
                (0..n)
                    .map(|i| {
                        chunk
                            .min(x[axis].saturating_sub(i.saturating_mul(chunk)))
                            .max(0)
                    })
                    .collect()
            }
        };
        Some(
            parts
                .iter()
                .map(|&p| {
                    let mut s = x.to_vec();
                    s[axis] = p;
                    TensorInfo::shaped(Some(s))
                })
                .collect::<Vec<_>>(),
        )
    })();
    shapes.unwrap_or_else(|| vec![TensorInfo::unknown(); outputs])
}

/// Resolved `(start, end, step)` per axis of a Slice.
fn slice_ranges(ctx: &NodeCtx, x: &[i64]) -> Option<Vec<(i64, i64, i64)>> {
    let (starts, ends, axes, steps) = if ctx.opset >= 10 {
        (
            ctx.ints(1)?,
            ctx.ints(2)?,
            if ctx.has_input(3) {
                Some(ctx.ints(3)?)
            } else {
                None
            },
            if ctx.has_input(4) {
                Some(ctx.ints(4)?)
            } else {
                None
            },
        )
    } else {
        (
            ctx.attr_ints("starts")?.to_vec(),
            ctx.attr_ints("ends")?.to_vec(),
            ctx.attr_ints("axes").map(<[i64]>::to_vec),
            None,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let mut ranges: Vec<(i64, i64, i64)> = x.iter().map(|&d| (0, d, 1)).collect();
    for (i, &axis) in axes.iter().enumerate() {
        let a = norm_axis(axis, x.len())?;
        let dim = x[a];
        let step = steps.as_ref().and_then(|s| s.get(i).copied()).unwrap_or(1);
        if step == 0 {
            return None;
        }
        if dim <= 0 {
            ranges[a] = (0, 0, 1);
            continue;
        }
        let clamp = |v: i64, lo: i64, hi: i64| {
            let v = if v < 0 { v.saturating_add(dim) } else { v };
            v.clamp(lo, hi)
        };
        let (start, end) = if step > 0 {
            (clamp(*starts.get(i)?, 0, dim), clamp(*ends.get(i)?, 0, dim))
        } else {
            (
                clamp(*starts.get(i)?, 0, dim - 1),
                clamp(*ends.get(i)?, -1, dim - 1),
            )
        };
        ranges[a] = (start, end, step);
    }
    Some(ranges)
}

fn infer_slice(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let info = (|| {
        let x = ctx.shape(0)?;
        let ranges = slice_ranges(ctx, x)?;
        // ceil(len / |step|) elements; `start`/`end` are clamped into the dim, so `len` is small.
        let shape: Vec<i64> = ranges
            .iter()
            .map(|&(s, e, st)| {
                let len = (if st > 0 { e - s } else { s - e }).max(0) as u64;
                len.div_ceil(st.unsigned_abs()) as i64
            })
            .collect();
        // Values of any rank: output coordinate c on an axis reads input coordinate start + c·step.
        let value = ctx.value(0).and_then(|v| {
            gather_values(v, x, &shape, |axis, c| {
                ranges[axis]
                    .0
                    .saturating_add(c.saturating_mul(ranges[axis].2))
            })
        });
        Some(TensorInfo {
            shape: Some(shape),
            value,
        })
    })();
    vec![info.unwrap_or_default()]
}

fn infer_gather(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let info = (|| {
        let x = ctx.shape(0)?;
        let idx = ctx.shape(1)?;
        let axis = norm_axis(ctx.attr_i("axis").unwrap_or(0), x.len())?;
        let mut shape = x[..axis].to_vec();
        shape.extend_from_slice(idx);
        shape.extend_from_slice(&x[axis + 1..]);
        let value = (|| {
            let data = ctx.value(0)?;
            let indices = ctx.ints(1)?;
            if x.len() != 1 {
                return None;
            }
            indices
                .iter()
                .map(|&i| {
                    data.get(usize::try_from(if i < 0 { i + x[0] } else { i }).ok()?)
                        .copied()
                })
                .collect()
        })();
        Some(TensorInfo {
            shape: Some(shape),
            value,
        })
    })();
    vec![info.unwrap_or_default()]
}

fn infer_gather_elements(ctx: &NodeCtx) -> Vec<TensorInfo> {
    vec![TensorInfo::shaped(ctx.shape(1).map(<[i64]>::to_vec))]
}

fn infer_tile(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let x = ctx.shape(0)?;
        let reps = ctx.ints(1)?;
        if reps.len() != x.len() {
            return None;
        }
        x.iter()
            .zip(&reps)
            .map(|(d, r)| d.checked_mul(*r))
            .collect()
    })();
    vec![TensorInfo::shaped(shape)]
}

fn infer_pad(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let x = ctx.shape(0)?;
        let pads = if ctx.opset >= 11 {
            ctx.ints(1)?
        } else {
            ctx.attr_ints("pads")
                .or(ctx.attr_ints("paddings"))?
                .to_vec()
        };
        let axes: Vec<usize> = if ctx.has_input(3) {
            ctx.ints(3)?
                .iter()
                .map(|&a| norm_axis(a, x.len()))
                .collect::<Option<_>>()?
        } else {
            (0..x.len()).collect()
        };
        let n = axes.len();
        if pads.len() != 2 * n {
            return None;
        }
        let mut out = x.to_vec();
        for (i, &a) in axes.iter().enumerate() {
            out[a] = out[a].checked_add(pads[i])?.checked_add(pads[i + n])?;
        }
        Some(out)
    })();
    vec![TensorInfo::shaped(shape)]
}

fn infer_resize(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let x = ctx.shape(0)?;
        // Resize ≥ 11: (X, roi, scales, sizes); Resize 10 / Upsample 9: (X, scales); Upsample 7: attr.
        let (scales, sizes) = match (ctx.node.op_type(), ctx.opset) {
            ("Resize", o) if o >= 11 => (
                ctx.value(2).filter(|v| !v.is_empty()).map(<[f64]>::to_vec),
                ctx.ints(3),
            ),
            (_, o) if o >= 9 => (ctx.value(1).map(<[f64]>::to_vec), None),
            _ => (
                ctx.attr("scales")
                    .map(|a| a.floats.iter().map(|&f| f as f64).collect()),
                None,
            ),
        };
        if let Some(sizes) = sizes.filter(|s| s.len() == x.len()) {
            return Some(sizes);
        }
        let scales = scales.filter(|s| s.len() == x.len())?;
        Some(
            x.iter()
                .zip(&scales)
                .map(|(&d, &s)| (d as f64 * s).floor() as i64)
                .collect(),
        )
    })();
    vec![TensorInfo::shaped(shape)]
}

/// Resize MACs (onnx-tool): interpolation cost per output element by mode.
fn resize_macs(ctx: &NodeCtx, outputs: &[TensorInfo]) -> u64 {
    let per = match ctx.attr_s("mode").unwrap_or(b"nearest") {
        b"linear" | b"bilinear" => 4,
        b"cubic" => 8,
        _ => 0,
    };
    out_volume(outputs, 0).saturating_mul(per)
}

fn infer_depth_to_space(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let &[n, c, h, w] = ctx.shape(0)? else {
            return None;
        };
        let b = ctx.attr_i("blocksize").filter(|&b| b > 0)?;
        Some(vec![
            n,
            c / b.checked_mul(b)?,
            h.checked_mul(b)?,
            w.checked_mul(b)?,
        ])
    })();
    vec![TensorInfo::shaped(shape)]
}

fn infer_space_to_depth(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let &[n, c, h, w] = ctx.shape(0)? else {
            return None;
        };
        let b = ctx.attr_i("blocksize")?.max(1);
        Some(vec![n, c.checked_mul(b)?.checked_mul(b)?, h / b, w / b])
    })();
    vec![TensorInfo::shaped(shape)]
}

fn infer_one_hot(ctx: &NodeCtx) -> Vec<TensorInfo> {
    let shape = (|| {
        let idx = ctx.shape(0)?;
        let depth = *ctx.ints(1)?.first()?;
        let axis = norm_axis(ctx.attr_i("axis").unwrap_or(-1), idx.len() + 1)?;
        let mut s = idx.to_vec();
        s.insert(axis, depth);
        Some(s)
    })();
    vec![TensorInfo::shaped(shape)]
}
