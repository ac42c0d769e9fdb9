//! ONNX-Net's `chain_slim` family, ported line by line from `get_onnx_infos_chain_slim*` so that
//! the texts equal theirs. Nodes are visited in file order (ONNX requires topological order);
//! a node with exactly one non-input, non-initializer input and one output continues the current
//! chain (`Op(prev, Param[..])(attrs) --> `) when it reads the chain's last output, else the
//! chain ends (`ValueN:shape`) and a new one starts. Any other node gets its own line
//! `Op(a, b) --> ValueN:shape`. Graph inputs are named by their shape, initializers
//! `Param[dims]`, graph outputs `Out`; values read before they were named print as `prev`.
//!
//! Kept from ONNX-Net: scalar attributes dropped (unless asked for), only the first output's
//! shape printed, a chain that starts right after another ends without a parameter input
//! printing `Op()`, values consumed from the middle of a chain printing `prev`. Fixed, because
//! ONNX-Net's output is garbled or it raises there: a node without inputs prints `Constant()`
//! (ONNX-Net cuts its name to `Consta)`), the `outshape` variant's multi-input lines print
//! `Add --> ` (ONNX-Net `Add) --> `), a value without a known shape prints without `:shape`
//! (ONNX-Net raises `KeyError`), and a last chain ending in a tensor that is not a graph output
//! is named (ONNX-Net raises `KeyError`).

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use super::Variant;
use crate::onnx::OnnxError;
use crate::onnx::proto::{AttributeProto, ModelProto, attribute_proto::AttributeType};

/// What a variant prints beside the op types.
#[derive(Clone, Copy)]
struct Parts {
    /// Node inputs, and numbered `ValueN` names (the other variants print `Value`).
    inputs: bool,
    attributes: bool,
    /// `:shape` after chain ends and multi-input nodes.
    out_shapes: bool,
}

impl Parts {
    fn of(variant: Variant) -> Self {
        let (inputs, attributes, out_shapes) = match variant {
            Variant::ChainSlim => (true, true, true),
            Variant::ChainSlimBase => (false, false, false),
            Variant::ChainSlimInput => (true, false, false),
            Variant::ChainSlimParam => (false, true, false),
            Variant::ChainSlimOutshape => (false, false, true),
            Variant::Cg => unreachable!("the cg variant is not a chain encoding"),
        };
        Self {
            inputs,
            attributes,
            out_shapes,
        }
    }
}

/// Shapes as `AxBxC`.
fn shape_text(dims: &[i64]) -> String {
    dims.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

pub(super) fn render(
    model: &ModelProto,
    variant: Variant,
    scalars: bool,
) -> Result<String, OnnxError> {
    let parts = Parts::of(variant);
    let graph = model
        .graph
        .as_ref()
        .ok_or(OnnxError::NotOnnx("the model has no graph"))?;
    let shapes: HashMap<String, String> = crate::graph::tensor_shapes(model)?
        .into_iter()
        .map(|(name, dims)| (name, shape_text(&dims)))
        .collect();
    let inputs: HashSet<&str> = graph.input.iter().map(|v| v.name()).collect();
    let params: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();

    let mut names: HashMap<&str, String> = HashMap::new();
    for v in &graph.input {
        names.insert(v.name(), shapes.get(v.name()).cloned().unwrap_or_default());
    }
    for t in &graph.initializer {
        let dims: Vec<String> = t.dims.iter().map(i64::to_string).collect();
        names.insert(t.name(), format!("Param[{}]", dims.join(",")));
    }
    for v in &graph.output {
        names.insert(v.name(), "Out".into());
    }

    let mut out = String::new();
    let mut counter = 1usize;
    let mut next_value = || {
        let name = if parts.inputs {
            format!("Value{counter}")
        } else {
            "Value".to_string()
        };
        counter += 1;
        name
    };
    let shape_suffix = |name: &str| match shapes.get(name) {
        Some(s) if parts.out_shapes => format!(":{s}"),
        _ => String::new(),
    };
    // A value's name, or `prev` when it has none yet.
    let named_or_prev = |names: &HashMap<&str, String>, i: &str| {
        names.get(i).map_or("prev", String::as_str).to_string()
    };
    // The output of the chain being written, if one is open.
    let mut current: Option<&str> = None;
    for node in &graph.node {
        let dynamic: Vec<&str> = node
            .input
            .iter()
            .map(String::as_str)
            .filter(|i| !inputs.contains(i) && !params.contains(i))
            .collect();
        let fixed: Vec<String> = node
            .input
            .iter()
            .map(String::as_str)
            .filter(|i| inputs.contains(i) || params.contains(i))
            .map(|i| names[i].clone())
            .collect();
        let with_fixed = |first: String| {
            let mut args = vec![first];
            args.extend(fixed.iter().cloned());
            args.join(", ")
        };
        let op = node.op_type();
        let args = if dynamic.len() == 1 && node.output.len() == 1 {
            let args = match current {
                None => with_fixed(named_or_prev(&names, dynamic[0])),
                Some(c) if c == dynamic[0] => with_fixed("prev".into()),
                Some(c) => {
                    // The chain breaks: name its output and start a new one, whose first input
                    // ONNX-Net prints only when the node also reads a parameter.
                    let name = next_value();
                    let _ = writeln!(out, "{name}{}", shape_suffix(c));
                    names.insert(c, name);
                    if fixed.is_empty() {
                        String::new()
                    } else {
                        with_fixed(named_or_prev(&names, dynamic[0]))
                    }
                }
            };
            current = Some(node.output[0].as_str());
            args
        } else {
            if let Some(c) = current.take() {
                let name = next_value();
                let _ = writeln!(out, "{name}{}", shape_suffix(c));
                names.insert(c, name);
            }
            let args: Vec<String> = node
                .input
                .iter()
                .map(|i| named_or_prev(&names, i))
                .collect();
            args.join(", ")
        };
        out.push_str(op);
        if parts.inputs {
            let _ = write!(out, "({args})");
        }
        if parts.attributes {
            let attrs = attributes(&node.attribute, scalars);
            if !attrs.is_empty() {
                let _ = write!(out, "({attrs})");
            }
        }
        out.push_str(" --> ");
        if current.is_none() {
            // A node on its own line: its outputs, named, and the first one's shape.
            for o in &node.output {
                if !names.contains_key(o.as_str()) {
                    let name = next_value();
                    names.insert(o.as_str(), name);
                }
            }
            let outputs: Vec<&str> = node
                .output
                .iter()
                .map(|o| names[o.as_str()].as_str())
                .collect();
            out.push_str(&outputs.join(", "));
            if let Some(first) = node.output.first() {
                out.push_str(&shape_suffix(first));
            }
            out.push('\n');
        }
    }
    if let Some(c) = current {
        match names.get(c) {
            Some(name) => out.push_str(name),
            None => {
                let name = next_value();
                let _ = write!(out, "{name}{}", shape_suffix(c));
            }
        }
    }
    Ok(out)
}

/// `name=value` pairs joined by `,`, as ONNX-Net's `attrtype_to_str`: int lists whose entries
/// are all equal collapse to one number, tensors and graphs become `<BLOB>`, and an attribute
/// printing as `[]` is dropped, which is every scalar one unless `scalars` is set.
fn attributes(attrs: &[AttributeProto], scalars: bool) -> String {
    attrs
        .iter()
        .filter_map(|a| {
            let value = attribute_value(a, scalars);
            (value != "[]").then(|| format!("{}={value}", a.name()))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn attribute_value(a: &AttributeProto, scalars: bool) -> String {
    let floats = |v: &[f32]| {
        let items: Vec<String> = v.iter().map(|&f| py_float(f64::from(f))).collect();
        format!("[{}]", items.join(","))
    };
    let ints = |v: &[i64]| {
        let items: Vec<String> = v.iter().map(i64::to_string).collect();
        format!("[{}]", items.join(","))
    };
    let strings = |v: &[bytes::Bytes]| {
        let items: Vec<String> = v.iter().map(|s| py_bytes(s)).collect();
        format!("[{}]", items.join(","))
    };
    match a.r#type() {
        AttributeType::Float if scalars => py_float(f64::from(a.f())),
        AttributeType::Int if scalars => a.i().to_string(),
        AttributeType::String if scalars => String::from_utf8_lossy(a.s()).into_owned(),
        // ONNX-Net prints the (empty) list field of a scalar attribute: `[]`, dropped.
        AttributeType::Float | AttributeType::Floats => floats(&a.floats),
        AttributeType::Int => ints(&a.ints),
        AttributeType::Ints => match a.ints.first() {
            Some(&first) if a.ints.iter().all(|&i| i == first) => first.to_string(),
            _ => ints(&a.ints),
        },
        AttributeType::String | AttributeType::Strings => strings(&a.strings),
        AttributeType::Tensor | AttributeType::Graph | AttributeType::SparseTensor => {
            "<BLOB>".into()
        }
        AttributeType::Tensors | AttributeType::Graphs | AttributeType::SparseTensors => {
            "<BLOB,...>".into()
        }
        AttributeType::TypeProto => "<TYPE>".into(),
        AttributeType::TypeProtos => "<TYPE,...>".into(),
        AttributeType::Undefined => "undefined".into(),
    }
}

/// Python's `repr` of a float: shortest round-trip digits, `.0` on integers, exponent form
/// below 1e-4 and from 1e16 (`1e-05`, `1.5e+16`).
fn py_float(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let magnitude = v.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        let e = format!("{v:e}");
        let (mantissa, exponent) = e.split_once('e').expect("exponent form");
        let exponent: i32 = exponent.parse().expect("exponent");
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let s = v.to_string();
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Python's `repr` of `bytes` for printable ASCII (`b'nearest'`); other bytes as `\xNN`.
fn py_bytes(s: &[u8]) -> String {
    let mut out = String::from("b'");
    for &b in s {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        for (v, want) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1e-5, "1e-05"),
            (f64::from(0.1f32), "0.10000000149011612"),
            (1.5e16, "1.5e+16"),
            (-2.0, "-2.0"),
            (0.0001, "0.0001"),
            (0.0, "0.0"),
        ] {
            assert_eq!(py_float(v), want);
        }
    }

    #[test]
    fn attributes_collapse_equal_int_lists_and_drop_scalars() {
        let ints = |name: &str, v: &[i64]| AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: v.to_vec(),
            ..Default::default()
        };
        let group = AttributeProto {
            name: Some("group".into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(32),
            ..Default::default()
        };
        let mode = AttributeProto {
            name: Some("mode".into()),
            r#type: Some(AttributeType::String as i32),
            s: Some(b"nearest".to_vec().into()),
            ..Default::default()
        };
        let attrs = [
            ints("kernel_shape", &[3, 3]),
            ints("pads", &[0, 1, 0, 1]),
            group,
            mode,
            ints("axes", &[]),
        ];
        assert_eq!(attributes(&attrs, false), "kernel_shape=3,pads=[0,1,0,1]");
        assert_eq!(
            attributes(&attrs, true),
            "kernel_shape=3,pads=[0,1,0,1],group=32,mode=nearest"
        );
        assert_eq!(py_bytes(b"a'b\x01"), "b'a\\'b\\x01'");
    }
}
