//! The `cg` text: archdb's computation graph, one line per node in topological order,
//! `vN = Label(inputs) shape features`, e.g.
//! `v3 = Conv(v2) 1x64x56x56 k=3x3 params=36864 macs=115605504` (strides, dilations
//! and groups only where they are not 1). Shorter than
//! `chain_slim` (weights are folded, shape-only ops bypassed) and it carries MACs and params.

use std::fmt::Write;

use crate::graph::CgNode;

/// Renders CG nodes and `[source, target]` edges.
pub fn render_cg(nodes: &[CgNode], edges: &[[u32; 2]]) -> String {
    let mut inputs: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
    for &[from, to] in edges {
        if let Some(list) = inputs.get_mut(to as usize) {
            list.push(from);
        }
    }
    let dims = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join("x");
    let mut out = String::new();
    for (i, (node, from)) in nodes.iter().zip(&mut inputs).enumerate() {
        from.sort_unstable();
        let _ = write!(out, "v{i} = {}", node.label);
        if !from.is_empty() {
            let names: Vec<String> = from.iter().map(|f| format!("v{f}")).collect();
            let _ = write!(out, "({})", names.join(", "));
        }
        let shape = node.output_shape.as_deref().map_or("?".to_string(), dims);
        let _ = write!(out, " {shape}");
        if !node.kernel.is_empty() {
            let _ = write!(out, " k={}", dims(&node.kernel));
        }
        if node.strides.iter().any(|&s| s != 1) {
            let _ = write!(out, " s={}", dims(&node.strides));
        }
        if node.dilations.iter().any(|&d| d != 1) {
            let _ = write!(out, " d={}", dims(&node.dilations));
        }
        if node.groups > 1 {
            let _ = write!(out, " g={}", node.groups);
        }
        if node.params > 0 {
            let _ = write!(out, " params={}", node.params);
        }
        if node.macs > 0 {
            let _ = write!(out, " macs={}", node.macs);
        }
        out.push('\n');
    }
    out
}
