//! Tensor facts tracked while walking an ONNX graph: shapes (batch 1, symbolic dims bound to 1)
//! and, for small integer/float tensors, their values, so that shape arithmetic built from
//! `Shape → Gather → Concat → Reshape` chains resolves to concrete shapes.

use crate::onnx::proto::{AttributeProto, NodeProto, TensorProto};

/// Largest tensor whose values are tracked (shape vectors, axes, scales).
pub const MAX_TRACKED_VALUES: u64 = 4096;

/// What is known about one tensor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorInfo {
    /// Concrete dims, or `None` when unknown.
    pub shape: Option<Vec<i64>>,
    /// Values of a small constant tensor, row-major.
    pub value: Option<Vec<f64>>,
}

impl TensorInfo {
    pub fn shaped(shape: Option<Vec<i64>>) -> Self {
        Self { shape, value: None }
    }

    pub fn constant(shape: Vec<i64>, value: Vec<f64>) -> Self {
        Self {
            shape: Some(shape),
            value: Some(value),
        }
    }

    pub fn unknown() -> Self {
        Self::default()
    }
}

/// A node with what is known about its inputs: what op inference rules read.
pub struct NodeCtx<'a> {
    pub node: &'a NodeProto,
    /// What is known of each input, borrowed from the walk (unknown for missing ones).
    pub inputs: Vec<&'a TensorInfo>,
    /// Default-domain opset of the model (attribute-vs-input conventions changed over opsets).
    pub opset: i64,
}

impl<'a> NodeCtx<'a> {
    /// Shape of input `i`, if present and known.
    pub fn shape(&self, i: usize) -> Option<&[i64]> {
        self.inputs.get(i)?.shape.as_deref()
    }

    /// Values of input `i`, if it is a known small constant.
    pub fn value(&self, i: usize) -> Option<&[f64]> {
        self.inputs.get(i)?.value.as_deref()
    }

    /// Integer values of input `i`.
    pub fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.value(i).map(|v| v.iter().map(|&x| x as i64).collect())
    }

    /// Whether input `i` is given (ONNX marks omitted optional inputs with an empty name).
    pub fn has_input(&self, i: usize) -> bool {
        self.node.input.get(i).is_some_and(|n| !n.is_empty())
    }

    pub fn attr(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }

    pub fn attr_i(&self, name: &str) -> Option<i64> {
        self.attr(name).and_then(|a| a.i)
    }

    pub fn attr_f(&self, name: &str) -> Option<f32> {
        self.attr(name).and_then(|a| a.f)
    }

    pub fn attr_ints(&self, name: &str) -> Option<&'a [i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }

    pub fn attr_s(&self, name: &str) -> Option<&'a [u8]> {
        self.attr(name).and_then(|a| a.s.as_deref())
    }

    pub fn attr_t(&self, name: &str) -> Option<&'a TensorProto> {
        self.attr(name).and_then(|a| a.t.as_deref())
    }

    /// Integer list from an input (newer opsets) or else an attribute (older opsets).
    pub fn ints_input_or_attr(&self, input: usize, attr: &str) -> Option<Vec<i64>> {
        if self.has_input(input) {
            self.ints(input)
        } else {
            self.attr_ints(attr).map(<[i64]>::to_vec)
        }
    }

    /// Rank of input 0.
    pub fn rank(&self) -> Option<usize> {
        self.shape(0).map(<[i64]>::len)
    }
}

/// Resolves a possibly negative axis against a rank.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// NumPy broadcasting of several shapes.
pub fn broadcast(shapes: &[&[i64]]) -> Option<Vec<i64>> {
    let rank = shapes.iter().map(|s| s.len()).max()?;
    let mut out = vec![1i64; rank];
    for s in shapes {
        let offset = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[offset + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}

/// Product of dims, `None` on overflow (hostile shapes must not wrap or panic).
pub fn checked_product(dims: &[i64]) -> Option<i64> {
    dims.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d))
}

/// Row-major strides of a shape (saturating: callers bound the volume they walk).
pub fn strides(shape: &[i64]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1].saturating_mul(shape[i + 1].max(0) as usize);
    }
    strides
}

/// Elementwise combination of broadcast constant values (shape arithmetic such as `Mul(dim, -1)`).
pub fn broadcast_values(
    inputs: &[(&[i64], &[f64])],
    out_shape: &[i64],
    f: impl Fn(&[f64]) -> f64,
) -> Option<Vec<f64>> {
    let n = super::ops::volume(out_shape);
    if n > MAX_TRACKED_VALUES {
        return None;
    }
    let out_strides = strides(out_shape);
    let rank = out_shape.len();
    let mut args = vec![0.0; inputs.len()];
    let mut result = Vec::with_capacity(n as usize);
    for flat in 0..n as usize {
        for (k, (shape, values)) in inputs.iter().enumerate() {
            let offset = rank - shape.len();
            let in_strides = strides(shape);
            let mut idx = 0usize;
            for (d, &dim) in shape.iter().enumerate() {
                let coord =
                    (flat / out_strides[offset + d]) % out_shape[offset + d].max(1) as usize;
                if dim != 1 {
                    idx = idx.saturating_add(coord.saturating_mul(in_strides[d]));
                }
            }
            args[k] = *values.get(idx)?;
        }
        result.push(f(&args));
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[&[1, 3, 1], &[4, 1, 5]]), Some(vec![4, 3, 5]));
        assert_eq!(broadcast(&[&[2, 3], &[3]]), Some(vec![2, 3]));
        assert_eq!(broadcast(&[&[2, 3], &[4]]), None);
        assert_eq!(broadcast(&[&[], &[7, 2]]), Some(vec![7, 2]));
    }

    #[test]
    fn broadcast_values_combines_elementwise() {
        let v = broadcast_values(
            &[(&[2, 1], &[1.0, 2.0]), (&[3], &[10.0, 20.0, 30.0])],
            &[2, 3],
            |a| a[0] + a[1],
        )
        .unwrap();
        assert_eq!(v, vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    }
}
