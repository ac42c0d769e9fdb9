//! Canonical graph hash: Weisfeiler–Lehman colour refinement over the CG's labels and features
//! (never node names or weights), so the same architecture re-exported with other names or other
//! weights hashes the same. Refinement runs until the colour partition is stable, so the hash
//! separates every pair of graphs that WL can distinguish, not only those differing locally.

use petgraph::Direction;
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128;

use super::{CgNode, CompGraph};

/// Prefix of every hash: bump it when the hashed features change.
const SCHEME: &str = "wl1";

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

/// Hex SHA-256 of the stable WL colouring, prefixed with the scheme.
pub fn graph_hash(cg: &CompGraph) -> String {
    let g = &cg.graph;
    let mut colours: Vec<u128> = g.node_weights().map(initial_colour).collect();
    let mut distinct = count_distinct(&colours);
    let mut buf: Vec<u8> = Vec::new();
    for _ in 0..g.node_count().max(1) {
        let next: Vec<u128> = g
            .node_indices()
            .map(|v| {
                let mut preds: Vec<u128> = g
                    .neighbors_directed(v, Direction::Incoming)
                    .map(|p| colours[p.index()])
                    .collect();
                let mut succs: Vec<u128> = g
                    .neighbors_directed(v, Direction::Outgoing)
                    .map(|s| colours[s.index()])
                    .collect();
                preds.sort_unstable();
                succs.sort_unstable();
                buf.clear();
                buf.extend_from_slice(&colours[v.index()].to_le_bytes());
                for c in preds {
                    buf.extend_from_slice(&c.to_le_bytes());
                }
                buf.push(b'>');
                for c in succs {
                    buf.extend_from_slice(&c.to_le_bytes());
                }
                xxh3_128(&buf)
            })
            .collect();
        let next_distinct = count_distinct(&next);
        colours = next;
        if next_distinct == distinct {
            break;
        }
        distinct = next_distinct;
    }
    colours.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(format!("{SCHEME}|{}|{}|", g.node_count(), g.edge_count()));
    for c in colours {
        hasher.update(c.to_le_bytes());
    }
    format!("{SCHEME}:{}", hex::encode(hasher.finalize()))
}

fn count_distinct(colours: &[u128]) -> usize {
    let mut sorted = colours.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len()
}
