//! Computation-graph construction on edge cases: local functions, control flow, old opsets,
//! initializers listed as inputs, constant-computed shapes, and the canonical hash.

use archdb::graph::GraphSummary;
use archdb::ingest::{Ingested, ingest};
use archdb::onnx::proto::{FunctionProto, GraphProto, OperatorSetIdProto};

use crate::models::{encode, floats, graph_attr, int, int64s, ints, model, node, value, weight};

fn build(m: &archdb::onnx::proto::ModelProto) -> Ingested {
    ingest(encode(m).into(), Default::default()).expect("valid model")
}

fn summary(m: &archdb::onnx::proto::ModelProto) -> GraphSummary {
    build(m).graph.summary
}

#[test]
fn local_functions_are_inlined() {
    let mut conv = node("Conv", &["inp", "w"], &["c"]);
    conv.attribute = vec![ints("pads", &[1, 1, 1, 1])];
    let block = FunctionProto {
        name: Some("ConvRelu".into()),
        domain: Some("custom".into()),
        input: vec!["inp".into(), "w".into()],
        output: vec!["out".into()],
        node: vec![conv, node("Relu", &["c"], &["out"])],
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(18),
        }],
        ..Default::default()
    };
    let mut call1 = node("ConvRelu", &["x", "w1"], &["h"]);
    call1.domain = Some("custom".into());
    let mut call2 = node("ConvRelu", &["h", "w2"], &["y"]);
    call2.domain = Some("custom".into());
    let mut m = model(
        18,
        vec![call1, call2],
        &[1, 3, 8, 8],
        &[1, 4, 8, 8],
        vec![weight("w1", &[4, 3, 3, 3]), weight("w2", &[4, 4, 3, 3])],
    );
    m.functions.push(block);
    let s = summary(&m);
    assert_eq!(s.op_counts.get("Conv"), Some(&2));
    assert_eq!(s.op_counts.get("ReLU"), Some(&2));
    assert!(s.unknown_ops.is_empty());
    assert_eq!(s.params, 4 * 3 * 9 + 4 * 4 * 9);
    // Conv: out · Cin · 9 per layer; ReLU: one per output element.
    assert_eq!(s.macs, 256 * 27 + 256 + 256 * 36 + 256);
    assert_eq!(s.depth, 4);
}

#[test]
fn self_recursive_functions_are_rejected() {
    let mut inner = node("Loopy", &["a"], &["b"]);
    inner.domain = Some("custom".into());
    let f = FunctionProto {
        name: Some("Loopy".into()),
        domain: Some("custom".into()),
        input: vec!["a".into()],
        output: vec!["b".into()],
        node: vec![inner],
        ..Default::default()
    };
    let mut call = node("Loopy", &["x"], &["y"]);
    call.domain = Some("custom".into());
    let mut m = model(18, vec![call], &[1, 3], &[1, 3], vec![]);
    m.functions.push(f);
    let err = ingest(encode(&m).into(), Default::default()).unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
}

#[test]
fn control_flow_is_one_flagged_node() {
    let branch = |op: &str| GraphProto {
        name: Some(op.into()),
        node: vec![node(op, &["x"], &[&format!("{op}_out")])],
        output: vec![value(&format!("{op}_out"), &[1, 3])],
        ..Default::default()
    };
    let mut if_node = node("If", &["cond"], &["y"]);
    if_node.attribute = vec![
        graph_attr("then_branch", branch("Relu")),
        graph_attr("else_branch", branch("Sigmoid")),
    ];
    let m = model(
        17,
        vec![node("ReduceMax", &["x"], &["cond"]), if_node],
        &[1, 3],
        &[1, 3],
        vec![],
    );
    let built = build(&m);
    let flagged: Vec<_> = built
        .graph
        .graph
        .node_weights()
        .filter(|n| n.subgraph)
        .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].label, "ControlFlow");
    // The If's output shape comes from the declared graph output.
    assert_eq!(flagged[0].output_shape, Some(vec![1, 3]));
}

#[test]
fn initializers_listed_as_graph_inputs_are_weights_not_inputs() {
    let mut m = model(
        9,
        vec![node("Gemm", &["x", "w", "b"], &["y"])],
        &[1, 16],
        &[1, 10],
        vec![weight("w", &[10, 16]), weight("b", &[10])],
    );
    let g = m.graph.as_mut().unwrap();
    g.node[0].attribute = vec![int("transB", 1)];
    g.input.push(value("w", &[10, 16]));
    g.input.push(value("b", &[10]));
    let built = build(&m);
    let inputs = built
        .graph
        .graph
        .node_weights()
        .filter(|n| n.label == "Input")
        .count();
    assert_eq!(inputs, 1);
    assert_eq!(built.graph.summary.params, 170);
    assert_eq!(built.graph.summary.macs, 160 + 10);
}

#[test]
fn shapes_computed_by_constant_subgraphs_resolve() {
    // Flatten done the legacy way: Shape → Gather(0) → Unsqueeze → Concat(-1) → Reshape.
    let mut gather = node("Gather", &["shape", "zero"], &["n"]);
    gather.attribute = vec![int("axis", 0)];
    let mut concat = node("Concat", &["n1", "minus_one"], &["target"]);
    concat.attribute = vec![int("axis", 0)];
    let mut constant = node("Constant", &[], &["minus_one"]);
    constant.attribute = vec![archdb::onnx::proto::AttributeProto {
        name: Some("value".into()),
        r#type: Some(4),
        t: Some(Box::new(int64s("c", &[-1]))),
        ..Default::default()
    }];
    let nodes = vec![
        node("Shape", &["x"], &["shape"]),
        gather,
        node("Unsqueeze", &["n", "axes"], &["n1"]),
        constant,
        concat,
        node("Reshape", &["x", "target"], &["flat"]),
        node("Relu", &["flat"], &["y"]),
    ];
    let mut zero = int64s("zero", &[0]);
    zero.dims.clear();
    let m = model(
        17,
        nodes,
        &[2, 3, 4, 5],
        &[2, 60],
        vec![zero, int64s("axes", &[0])],
    );
    let built = build(&m);
    let relu = built
        .graph
        .graph
        .node_weights()
        .find(|n| n.label == "ReLU")
        .unwrap();
    assert_eq!(relu.output_shape, Some(vec![2, 60]));
    assert_eq!(relu.resolution, [1, 1, 1, 1, 60, 60]);
    // Only Input → ReLU → Output: the shape arithmetic is not part of the data flow.
    assert_eq!(built.graph.summary.num_nodes, 3);
}

#[test]
fn opset_7_attribute_forms_are_understood() {
    let mut pad = node("Pad", &["x"], &["p"]);
    pad.attribute = vec![ints("pads", &[0, 0, 1, 1, 0, 0, 1, 1])];
    let mut up = node("Upsample", &["p"], &["u"]);
    up.attribute = vec![floats("scales", &[1.0, 1.0, 2.0, 2.0])];
    let mut slice = node("Slice", &["u"], &["y"]);
    slice.attribute = vec![ints("starts", &[1]), ints("ends", &[3]), ints("axes", &[1])];
    let m = model(
        7,
        vec![pad, up, slice],
        &[1, 4, 6, 6],
        &[1, 2, 16, 16],
        vec![],
    );
    let built = build(&m);
    let shapes: Vec<_> = built
        .graph
        .graph
        .node_weights()
        .map(|n| (n.label.clone(), n.output_shape.clone().unwrap()))
        .collect();
    assert_eq!(shapes[1], ("Pad".into(), vec![1, 4, 8, 8]));
    assert_eq!(shapes[2], ("Resize".into(), vec![1, 4, 16, 16]));
    assert_eq!(shapes[3], ("Slice".into(), vec![1, 2, 16, 16]));
}

#[test]
fn hash_ignores_node_order_but_not_structure() {
    let chain = |order: &[usize]| {
        let nodes = [
            node("Relu", &["x"], &["a"]),
            node("Sigmoid", &["a"], &["b"]),
            node("Add", &["a", "b"], &["y"]),
        ];
        model(
            17,
            order.iter().map(|&i| nodes[i].clone()).collect(),
            &[1, 8],
            &[1, 8],
            vec![],
        )
    };
    let h = |m| build(&m).graph_hash;
    assert_eq!(h(chain(&[0, 1, 2])), h(chain(&[2, 1, 0])));
    // Same ops, other wiring: Add(x, b) instead of Add(a, b).
    let mut rewired = chain(&[0, 1, 2]);
    rewired.graph.as_mut().unwrap().node[2].input[0] = "x".into();
    assert_ne!(h(chain(&[0, 1, 2])), h(rewired));
    // Same graph at another input resolution is another architecture instance.
    let wider = model(
        17,
        chain(&[0, 1, 2]).graph.unwrap().node,
        &[1, 16],
        &[1, 16],
        vec![],
    );
    assert_ne!(h(chain(&[0, 1, 2])), h(wider));
}
