//! Canonical graph hash: Weisfeiler–Lehman-style colour refinement over the CG's labels and
//! features (never node names or weights), so the same architecture re-exported with other names
//! or other weights hashes the same.
//!
//! CGs are DAGs, so each node's colour first absorbs its *whole* ancestry and descendancy in two
//! linear passes (the hash of its unfolded upstream and downstream trees), which separates graphs
//! that differ far from any local neighbourhood; a few WL rounds over both directions then mix
//! siblings. Cost O(V + E) per pass, independent of the graph's diameter.

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128;

use super::{CgNode, CompGraph};

/// Prefix of every hash: bump it when the hashed features or the refinement change.
const SCHEME: &str = "wl2";
/// WL rounds after the upstream/downstream passes.
const ROUNDS: usize = 3;

/// The node's own colour: everything that defines the op, nothing that names it. The hashed
/// text is `label|op|input_shape|output_shape|kernel|strides|dilations|groups|bias|weight_shape|subgraph`
/// with Rust's `Debug` forms of the lists (`Some([1, 16])`, `None`, `[3, 3]`), written by hand
/// into a reused buffer: `format!` was a tenth of ingesting a small model.
fn initial_colour(n: &CgNode, text: &mut Vec<u8>) -> u128 {
    let op = if n.label == super::ops::UNKNOWN_LABEL {
        n.op_type.as_str()
    } else {
        ""
    };
    text.clear();
    text.extend_from_slice(n.label.as_bytes());
    text.push(b'|');
    text.extend_from_slice(op.as_bytes());
    text.push(b'|');
    push_optional_list(text, n.input_shape.as_deref());
    text.push(b'|');
    push_optional_list(text, n.output_shape.as_deref());
    text.push(b'|');
    push_list(text, &n.kernel);
    text.push(b'|');
    push_list(text, &n.strides);
    text.push(b'|');
    push_list(text, &n.dilations);
    text.push(b'|');
    text.extend_from_slice(itoa::Buffer::new().format(n.groups).as_bytes());
    text.push(b'|');
    text.extend_from_slice(if n.bias { b"true" } else { b"false" });
    text.push(b'|');
    push_optional_list(text, n.weight_shape.as_deref());
    text.push(b'|');
    text.extend_from_slice(if n.subgraph { b"true" } else { b"false" });
    xxh3_128(text)
}

/// `Debug` of a `Vec<i64>`: `[1, 2, 3]`.
fn push_list(text: &mut Vec<u8>, values: &[i64]) {
    let mut digits = itoa::Buffer::new();
    text.push(b'[');
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            text.extend_from_slice(b", ");
        }
        text.extend_from_slice(digits.format(v).as_bytes());
    }
    text.push(b']');
}

/// `Debug` of an `Option<Vec<i64>>`: `Some([1, 2])` or `None`.
fn push_optional_list(text: &mut Vec<u8>, values: Option<&[i64]>) {
    match values {
        Some(values) => {
            text.extend_from_slice(b"Some(");
            push_list(text, values);
            text.push(b')');
        }
        None => text.extend_from_slice(b"None"),
    }
}

/// Hash of a colour and the sorted colours of some neighbours (`neighbours` is scratch space).
fn combine(own: u128, tag: u8, neighbours: &mut [u128], buf: &mut Vec<u8>) -> u128 {
    neighbours.sort_unstable();
    buf.clear();
    buf.extend_from_slice(&own.to_le_bytes());
    buf.push(tag);
    for c in neighbours.iter() {
        buf.extend_from_slice(&c.to_le_bytes());
    }
    xxh3_128(buf)
}

/// The colours of `v`'s neighbours in direction `dir`, gathered into `scratch`.
fn neighbour_colours<'s>(
    g: &DiGraph<CgNode, ()>,
    v: NodeIndex,
    dir: Direction,
    colours: &[u128],
    scratch: &'s mut Vec<u128>,
) -> &'s mut [u128] {
    scratch.clear();
    scratch.extend(g.neighbors_directed(v, dir).map(|n| colours[n.index()]));
    scratch
}

/// Hex SHA-256 of the refined colouring, prefixed with the scheme.
pub fn graph_hash(cg: &CompGraph) -> String {
    let g = &cg.graph;
    let mut buf = Vec::new();
    let initial: Vec<u128> = g
        .node_weights()
        .map(|n| initial_colour(n, &mut buf))
        .collect();
    let order = topological(g);
    // Neighbour colours of the node at hand, reused across nodes.
    let mut around: Vec<u128> = Vec::new();
    let mut up = initial.clone();
    for &v in &order {
        let preds = neighbour_colours(g, v, Direction::Incoming, &up, &mut around);
        up[v.index()] = combine(initial[v.index()], b'<', preds, &mut buf);
    }
    let mut down = initial.clone();
    for &v in order.iter().rev() {
        let succs = neighbour_colours(g, v, Direction::Outgoing, &down, &mut around);
        down[v.index()] = combine(initial[v.index()], b'>', succs, &mut buf);
    }
    let mut colours: Vec<u128> = (0..g.node_count())
        .map(|i| combine(up[i], b'|', &mut [down[i]], &mut buf))
        .collect();
    let mut next = vec![0u128; colours.len()];
    for _ in 0..ROUNDS {
        for v in g.node_indices() {
            let preds = neighbour_colours(g, v, Direction::Incoming, &colours, &mut around);
            let with_preds = combine(colours[v.index()], b'<', preds, &mut buf);
            let succs = neighbour_colours(g, v, Direction::Outgoing, &colours, &mut around);
            next[v.index()] = combine(with_preds, b'>', succs, &mut buf);
        }
        std::mem::swap(&mut colours, &mut next);
    }
    colours.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(format!("{SCHEME}|{}|{}|", g.node_count(), g.edge_count()));
    for c in colours {
        hasher.update(c.to_le_bytes());
    }
    format!("{SCHEME}:{}", hex::encode(hasher.finalize()))
}

/// Nodes in a topological order (Kahn); the builder's node order already is one, but stored or
/// hand-made graphs need not be.
fn topological(g: &DiGraph<CgNode, ()>) -> Vec<NodeIndex> {
    let mut indegree: Vec<usize> = g
        .node_indices()
        .map(|v| g.neighbors_directed(v, Direction::Incoming).count())
        .collect();
    let mut ready: Vec<NodeIndex> = g
        .node_indices()
        .filter(|v| indegree[v.index()] == 0)
        .collect();
    let mut order = Vec::with_capacity(g.node_count());
    while let Some(v) = ready.pop() {
        order.push(v);
        for s in g.neighbors_directed(v, Direction::Outgoing) {
            indegree[s.index()] -= 1;
            if indegree[s.index()] == 0 {
                ready.push(s);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored hashes identify graphs across versions: these were computed by the first `wl2`
    /// implementation (with `format!`), and the scheme must keep giving them.
    #[test]
    fn hashes_of_known_models_are_stable() {
        let pinned = [
            (
                "onnx-samples/mobilenet_v2.legacy.onnx",
                "wl2:20288b89886d3f207208cbdc48745fccd3ce8fa14c925647af7c411518c32dd9",
            ),
            (
                "onnx-samples/mobilenet_v3_small.dynamo.onnx",
                "wl2:e6e1041df1cc2b3c8adf2057416462fc8a335266ef0140e50a3e69a408892a0c",
            ),
            (
                "onnx-samples/resnet18.legacy.onnx",
                "wl2:ab6358a99f62d89d27c8c86c1cfceca30fac06d1fb0c6e56e55caa98b980d2a0",
            ),
            (
                "onnx-samples/squeezenet1_0.full.onnx",
                "wl2:489ccda1cf68810f50cf440478f707db2063ac6cb949fb7ddc10110c80660459",
            ),
            (
                "zoo/swin_t.legacy.onnx",
                "wl2:ae32c1335fba5811531e4aa1affa2df42f6f3a43df1d30cda675f9f778d5d7f4",
            ),
            (
                "zoo/vit_b_16.dynamo.onnx",
                "wl2:93e6b0fd1ca402de23e3cc31fce9b5e5fddd63eedf7ae2346362390b9bed49f5",
            ),
        ];
        for (file, hash) in pinned {
            let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
            let bytes = std::fs::read(&path).unwrap();
            let ingested = crate::ingest::ingest(bytes.into(), Default::default()).unwrap();
            assert_eq!(ingested.graph_hash, hash, "{file}");
        }
        let cell = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|";
        let model = crate::generate::nb201_model(cell, 10).unwrap();
        let ingested = crate::ingest::ingest_model(model, Default::default()).unwrap();
        assert_eq!(
            ingested.graph_hash,
            "wl2:626c62fa5c66585df537fa2780b97371fddc8297485cafb20eeb8c96b11c72cd"
        );
    }

    /// The hand-written colour text is exactly the `Debug` text the scheme was defined with.
    #[test]
    fn colour_text_is_the_debug_form() {
        let mut node = crate::graph::CgNode {
            label: "Conv".into(),
            op_type: "Conv".into(),
            name: "ignored".into(),
            input_shape: Some(vec![1, 16, 32, 32]),
            output_shape: None,
            resolution: [0; 6],
            kernel: vec![3, 3],
            strides: vec![],
            dilations: vec![-1, i64::MAX],
            groups: 1,
            bias: true,
            weight_shape: Some(vec![]),
            params: 0,
            macs: 0,
            subgraph: false,
        };
        for subgraph in [false, true] {
            node.subgraph = subgraph;
            node.bias = !subgraph;
            let expected = format!(
                "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}",
                node.label,
                "",
                node.input_shape,
                node.output_shape,
                node.kernel,
                node.strides,
                node.dilations,
                node.groups,
                node.bias,
                node.weight_shape,
                node.subgraph
            );
            let mut text = Vec::new();
            assert_eq!(
                initial_colour(&node, &mut text),
                xxh3_128(expected.as_bytes())
            );
            assert_eq!(String::from_utf8(text).unwrap(), expected);
        }
    }
}
