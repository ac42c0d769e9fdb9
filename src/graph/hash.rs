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

/// The node's own colour: everything that defines the op, nothing that names it.
fn initial_colour(n: &CgNode) -> u128 {
    let op = if n.label == super::ops::UNKNOWN_LABEL {
        n.op_type.as_str()
    } else {
        ""
    };
    let text = format!(
        "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}",
        n.label,
        op,
        n.input_shape,
        n.output_shape,
        n.kernel,
        n.strides,
        n.dilations,
        n.groups,
        n.bias,
        n.weight_shape,
        n.subgraph
    );
    xxh3_128(text.as_bytes())
}

/// Hash of a colour and the sorted colours of some neighbours.
fn combine(own: u128, tag: u8, mut neighbours: Vec<u128>, buf: &mut Vec<u8>) -> u128 {
    neighbours.sort_unstable();
    buf.clear();
    buf.extend_from_slice(&own.to_le_bytes());
    buf.push(tag);
    for c in neighbours {
        buf.extend_from_slice(&c.to_le_bytes());
    }
    xxh3_128(buf)
}

/// Hex SHA-256 of the refined colouring, prefixed with the scheme.
pub fn graph_hash(cg: &CompGraph) -> String {
    let g = &cg.graph;
    let initial: Vec<u128> = g.node_weights().map(initial_colour).collect();
    let order = topological(g);
    let mut buf = Vec::new();
    let mut up = initial.clone();
    for &v in &order {
        let preds = g
            .neighbors_directed(v, Direction::Incoming)
            .map(|p| up[p.index()])
            .collect();
        up[v.index()] = combine(initial[v.index()], b'<', preds, &mut buf);
    }
    let mut down = initial.clone();
    for &v in order.iter().rev() {
        let succs = g
            .neighbors_directed(v, Direction::Outgoing)
            .map(|s| down[s.index()])
            .collect();
        down[v.index()] = combine(initial[v.index()], b'>', succs, &mut buf);
    }
    let mut colours: Vec<u128> = (0..g.node_count())
        .map(|i| combine(up[i], b'|', vec![down[i]], &mut buf))
        .collect();
    for _ in 0..ROUNDS {
        colours = g
            .node_indices()
            .map(|v| {
                let preds: Vec<u128> = g
                    .neighbors_directed(v, Direction::Incoming)
                    .map(|p| colours[p.index()])
                    .collect();
                let succs: Vec<u128> = g
                    .neighbors_directed(v, Direction::Outgoing)
                    .map(|s| colours[s.index()])
                    .collect();
                let with_preds = combine(colours[v.index()], b'<', preds, &mut buf);
                combine(with_preds, b'>', succs, &mut buf)
            })
            .collect();
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
