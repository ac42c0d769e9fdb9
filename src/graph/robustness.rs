//! Property test of the whole ingest path (wire-format budget, decode, build, hash) over random
//! ONNX graphs: random registered ops wired to earlier tensors, with random attributes,
//! initializers and input shapes drawn towards the edges (0, negative, 2^31, 2^40, i64 extremes).
//! Whatever the graph, ingesting gives a typed error or a graph whose params and MACs fit i64;
//! it never panics (a panic is a 500 in the API).

use proptest::prelude::*;
use prost::Message;

use super::ops;
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::tensor_shape_proto::{Dimension, dimension};
use crate::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};

/// Integers that break careless arithmetic, and small ones that make valid graphs.
fn edgy_int() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -3i64..9,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(1 << 31),
        1 => Just(1 << 40),
        1 => Just(-(1 << 33)),
    ]
}

const INT_ATTRIBUTES: &[&str] = &[
    "axis",
    "blocksize",
    "group",
    "keepdims",
    "num_outputs",
    "transA",
    "transB",
    "allowzero",
    "ceil_mode",
    "k",
    "num_groups",
    "size",
    "start",
    "end",
    "value_int",
    "noop_with_empty_axes",
];

const INTS_ATTRIBUTES: &[&str] = &[
    "axes",
    "perm",
    "strides",
    "dilations",
    "kernel_shape",
    "pads",
    "split",
    "shape",
    "starts",
    "ends",
    "output_shape",
    "output_padding",
    "value_ints",
];

const STRING_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("auto_pad", &["NOTSET", "SAME_UPPER", "VALID"]),
    ("mode", &["nearest", "linear", "cubic"]),
    ("equation", &["ij,jk->ik", "bij->bji", "i,i->", "..."]),
];

fn attribute() -> impl Strategy<Value = AttributeProto> {
    prop_oneof![
        (prop::sample::select(INT_ATTRIBUTES), edgy_int()).prop_map(|(name, i)| AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(i),
            ..Default::default()
        }),
        (
            prop::sample::select(INTS_ATTRIBUTES),
            prop::collection::vec(edgy_int(), 0..6)
        )
            .prop_map(|(name, ints)| AttributeProto {
                name: Some(name.into()),
                r#type: Some(AttributeType::Ints as i32),
                ints,
                ..Default::default()
            }),
        (
            prop::sample::select(STRING_ATTRIBUTES),
            any::<prop::sample::Index>()
        )
            .prop_map(|((name, values), i)| AttributeProto {
                name: Some(name.into()),
                r#type: Some(AttributeType::String as i32),
                s: Some(i.get(values).as_bytes().to_vec().into()),
                ..Default::default()
            }),
        prop::collection::vec(-4.0f32..4.0, 0..5).prop_map(|floats| AttributeProto {
            name: Some("scales".into()),
            r#type: Some(AttributeType::Floats as i32),
            floats,
            ..Default::default()
        }),
        (
            prop::collection::vec(0i64..4, 0..3),
            prop::collection::vec(edgy_int(), 0..8)
        )
            .prop_map(|(dims, values)| AttributeProto {
                name: Some("value".into()),
                r#type: Some(AttributeType::Tensor as i32),
                t: Some(Box::new(TensorProto {
                    dims,
                    data_type: Some(7),
                    int64_data: values,
                    ..Default::default()
                })),
                ..Default::default()
            }),
    ]
}

/// One node: an op, indices of earlier tensors to read (resolved modulo what exists) and
/// attributes.
fn node_spec() -> impl Strategy<Value = (usize, Vec<usize>, usize, Vec<AttributeProto>)> {
    (
        any::<usize>(),
        prop::collection::vec(any::<usize>(), 0..5),
        1usize..3,
        prop::collection::vec(attribute(), 0..4),
    )
}

fn initializer() -> impl Strategy<Value = TensorProto> {
    prop_oneof![
        // Integer constants (shape vectors, axes, starts), values tracked.
        prop::collection::vec(edgy_int(), 0..6).prop_map(|v| TensorProto {
            dims: vec![v.len() as i64],
            data_type: Some(7),
            int64_data: v,
            ..Default::default()
        }),
        // Float weights with dims only.
        prop::collection::vec(edgy_int(), 0..5).prop_map(|dims| TensorProto {
            dims,
            data_type: Some(1),
            ..Default::default()
        }),
    ]
}

fn model() -> impl Strategy<Value = ModelProto> {
    (
        prop::collection::vec(edgy_int(), 0..6),
        prop::collection::vec(initializer(), 0..5),
        prop::collection::vec(node_spec(), 1..10),
        7i64..22,
    )
        .prop_map(|(input_dims, initializers, specs, opset)| {
            let registry = ops::all();
            let mut tensors = vec!["x".to_string()];
            let initializer: Vec<TensorProto> = initializers
                .into_iter()
                .enumerate()
                .map(|(i, mut t)| {
                    t.name = Some(format!("w{i}"));
                    tensors.push(format!("w{i}"));
                    t
                })
                .collect();
            let mut node = Vec::new();
            for (i, (op, inputs, outputs, attribute)) in specs.into_iter().enumerate() {
                let input = inputs
                    .iter()
                    .map(|&k| tensors[k % tensors.len()].clone())
                    .collect();
                let output: Vec<String> = (0..outputs).map(|o| format!("t{i}_{o}")).collect();
                tensors.extend(output.iter().cloned());
                node.push(NodeProto {
                    op_type: Some(registry[op % registry.len()].op_type.into()),
                    name: Some(format!("n{i}")),
                    input,
                    output,
                    attribute,
                    ..Default::default()
                });
            }
            let last = tensors.last().cloned().unwrap_or_default();
            let value = |name: &str, dims: &[i64]| ValueInfoProto {
                name: Some(name.into()),
                r#type: Some(TypeProto {
                    value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                        elem_type: Some(1),
                        shape: Some(TensorShapeProto {
                            dim: dims
                                .iter()
                                .map(|&d| Dimension {
                                    value: Some(dimension::Value::DimValue(d)),
                                    ..Default::default()
                                })
                                .collect(),
                        }),
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            };
            ModelProto {
                ir_version: Some(8),
                opset_import: vec![OperatorSetIdProto {
                    domain: Some(String::new()),
                    version: Some(opset),
                }],
                graph: Some(GraphProto {
                    node,
                    input: vec![value("x", &input_dims)],
                    output: vec![value(&last, &[])],
                    initializer,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("ARCHDB_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_graphs_never_panic_and_count_within_i64(model in model()) {
        let bytes = model.encode_to_vec();
        if let Ok(ingested) = crate::ingest::ingest(bytes.into(), super::BuildOptions::default()) {
            let s = &ingested.graph.summary;
            prop_assert!(i64::try_from(s.params).is_ok(), "params {}", s.params);
            prop_assert!(i64::try_from(s.macs).is_ok(), "MACs {}", s.macs);
            for n in ingested.graph.graph.node_weights() {
                prop_assert!(n.macs <= s.macs);
                for shape in [&n.input_shape, &n.output_shape].into_iter().flatten() {
                    prop_assert!(shape.iter().all(|d| (0..=i64::from(i32::MAX)).contains(d)), "{shape:?}");
                }
            }
        }
    }
}
