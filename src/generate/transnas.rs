//! TransNAS-Bench-101 (Duan et al., CVPR 2021): the backbone `MacroNet(arch,
//! structure='backbone')` of the benchmark's code with the linear head `FFDecoder` of its
//! classification tasks (and of room layout, a 9-value regression with the same head), at the
//! benchmark's 256×256 input.
//!
//! Architecture strings are `{base}-{macro}-{cell}`: `base` the stem width (64), `macro` one
//! digit per layer of two cells (1: same width and resolution, 2: width doubled, 3: stride 2,
//! 4: both), `cell` either `basic` (ResNet basic block: the macro space) or a micro cell
//! `a_bc_def` (the micro space, macro `41414`), where node k of a 4-node cell sums its edges from
//! nodes 0..k with ops 0 zero, 1 skip, 2 ReLU-Conv1×1-BN, 3 ReLU-Conv3×3-BN.
//!
//! Network: stem `Conv3×3(3→base/2, stride 2)-BN`, `ReLU-Conv3×3(base/2→base, stride 2)-BN`;
//! the layers; `GlobalAveragePool`; `Linear(width→classes)`. In a micro cell the edges from node 0
//! carry the layer's stride and width change; skip there is `FactorizedReduce` (ReLU, zero pad
//! bottom/right, two 1×1 convs of `x` and `x[:, :, 1:, 1:]`, concat, BN). A zero edge adds
//! nothing; a node whose edges are all zero is emitted, where something reads it, as the zero
//! tensor of its edge from node 0 (`Mul(x, 0)` of the input, strided and repeated to the node's
//! shape), as in NAS-Bench-201.

use super::GenerateError;
use super::builder::{ConvSpec, ModelBuilder, SliceRange};
use crate::onnx::proto::ModelProto;

/// An edge op of a TransNAS-Bench-101 micro cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransNasOp {
    /// `0`: zero.
    Zero,
    /// `1`: identity (`FactorizedReduce` where the stride or width changes).
    Skip,
    /// `2`: ReLU-Conv1×1-BN.
    Conv1x1,
    /// `3`: ReLU-Conv3×3-BN.
    Conv3x3,
}

/// The cell of a TransNAS-Bench-101 network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransNasCell {
    /// `basic`: the ResNet basic block of the macro search space.
    Basic,
    /// A micro cell: `edges[k - 1][j]` is the op of edge j → k (nodes 0..3).
    Micro([Vec<TransNasOp>; 3]),
}

/// A parsed TransNAS-Bench-101 architecture string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransNasArch {
    base: i64,
    /// Layer types 1–4.
    layers: Vec<u8>,
    cell: TransNasCell,
}

impl TransNasArch {
    /// Parses `64-41414-3_13_233` (micro) or `64-1242-basic` (macro).
    pub fn parse(arch: &str) -> Result<Self, GenerateError> {
        let err = |reason: &str| GenerateError::TransNasArch {
            arch: arch.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = arch.split('-').collect();
        let [base, layers, cell] = parts[..] else {
            return Err(err(
                "expected base-macro-cell, e.g. 64-41414-3_13_233 or 64-1242-basic",
            ));
        };
        let base: i64 = base
            .parse()
            .ok()
            .filter(|b| *b >= 2 && b % 2 == 0 && *b <= 4096)
            .ok_or_else(|| err("the base width must be an even number from 2 to 4096"))?;
        let layers: Vec<u8> = layers
            .bytes()
            .map(|d| (b'1'..=b'4').contains(&d).then_some(d - b'0'))
            .collect::<Option<_>>()
            .filter(|l: &Vec<u8>| !l.is_empty() && l.len() <= 8)
            .ok_or_else(|| err("the macro code must be 1 to 8 layer types 1-4"))?;
        let cell = if cell == "basic" {
            TransNasCell::Basic
        } else {
            let nodes: Vec<&str> = cell.split('_').collect();
            let ok = nodes.len() == 3 && nodes.iter().enumerate().all(|(k, n)| n.len() == k + 1);
            if !ok {
                return Err(err(
                    "the cell must be 'basic' or three groups a_bc_def of ops 0-3",
                ));
            }
            let mut edges: [Vec<TransNasOp>; 3] = Default::default();
            for (k, node) in nodes.iter().enumerate() {
                for d in node.bytes() {
                    edges[k].push(match d {
                        b'0' => TransNasOp::Zero,
                        b'1' => TransNasOp::Skip,
                        b'2' => TransNasOp::Conv1x1,
                        b'3' => TransNasOp::Conv3x3,
                        _ => {
                            return Err(err(
                                "micro-cell ops are 0 (zero), 1 (skip), 2 (1x1), 3 (3x3)",
                            ));
                        }
                    });
                }
            }
            TransNasCell::Micro(edges)
        };
        Ok(TransNasArch { base, layers, cell })
    }
}

/// The TransNAS-Bench-101 tasks with a linear head (`FFDecoder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum TransNasTask {
    /// Scene classification, 63 classes.
    ClassScene,
    /// Object classification, 100 classes.
    ClassObject,
    /// Room layout regression, 9 outputs.
    RoomLayout,
}

impl TransNasTask {
    /// The task's name in the benchmark (and NASLib).
    pub fn name(self) -> &'static str {
        match self {
            TransNasTask::ClassScene => "class_scene",
            TransNasTask::ClassObject => "class_object",
            TransNasTask::RoomLayout => "room_layout",
        }
    }

    /// The task named `name`, if it has a linear head.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            TransNasTask::ClassScene,
            TransNasTask::ClassObject,
            TransNasTask::RoomLayout,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }

    /// Outputs of the head.
    pub fn outputs(self) -> i64 {
        match self {
            TransNasTask::ClassScene => 63,
            TransNasTask::ClassObject => 100,
            TransNasTask::RoomLayout => 9,
        }
    }
}

/// Input resolution of the Taskonomy images.
const RESOLUTION: i64 = 256;

/// The TransNAS-Bench-101 network of `arch` for `task`.
pub fn transnas_model(arch: &TransNasArch, task: TransNasTask) -> ModelProto {
    let mut b = ModelBuilder::new("transnas_bench_101");
    let x = b.input("input", &[1, 3, RESOLUTION, RESOLUTION]);
    let half = arch.base / 2;
    let stem = b.conv("encoder.stem.0", &x, ConvSpec::same(3, half, 3, 2));
    let stem = b.batch_norm("encoder.stem.1", &stem, half);
    let mut feature = relu_conv_bn(
        &mut b,
        "encoder.stem.2",
        &stem,
        ConvSpec::same(half, arch.base, 3, 2),
    );
    let mut channels = arch.base;
    for (i, &layer) in arch.layers.iter().enumerate() {
        let target = if layer % 2 == 0 {
            channels * 2
        } else {
            channels
        };
        let stride = if layer > 2 { 2 } else { 1 };
        for block in 0..2 {
            let (c_in, s) = if block == 0 {
                (channels, stride)
            } else {
                (target, 1)
            };
            let name = format!("encoder.layer{i}.{block}");
            let cell = Cell {
                name: &name,
                c_in,
                c_out: target,
                stride: s,
            };
            feature = match &arch.cell {
                TransNasCell::Basic => cell.basic(&mut b, &feature),
                TransNasCell::Micro(edges) => cell.micro(&mut b, &feature, edges),
            };
        }
        channels = target;
    }
    let pooled = b.global_avg_pool("decoder.avgpool", &feature);
    let flat = b.flatten("decoder.flatten", &pooled);
    let out = task.outputs();
    let logits = b.linear("decoder.fc", &flat, channels, out);
    b.output(&logits, &[1, out]);
    b.finish(&format!(
        "TransNAS-Bench-101 network ({} head, 256x256 input), generated by archdb",
        task.name()
    ))
}

/// `ReLUConvBN`: `{name}.ops.0` ReLU, `.ops.1` Conv (no bias), `.ops.2` BN.
fn relu_conv_bn(b: &mut ModelBuilder, name: &str, x: &str, spec: ConvSpec) -> String {
    let r = b.relu(&format!("{name}.ops.0"), x);
    let y = b.conv(&format!("{name}.ops.1"), &r, spec);
    b.batch_norm(&format!("{name}.ops.2"), &y, spec.c_out)
}

/// One cell `c_in → c_out` at stride `stride`.
struct Cell<'a> {
    name: &'a str,
    c_in: i64,
    c_out: i64,
    stride: i64,
}

impl Cell<'_> {
    /// `ResNetBasicblock`: `conv_a` (stride), `conv_b`, the input or a `Conv1×1(stride)-BN`
    /// downsample, and their sum.
    fn basic(&self, b: &mut ModelBuilder, x: &str) -> String {
        let name = self.name;
        let a = relu_conv_bn(
            b,
            &format!("{name}.conv_a"),
            x,
            ConvSpec::same(self.c_in, self.c_out, 3, self.stride),
        );
        let main = relu_conv_bn(
            b,
            &format!("{name}.conv_b"),
            &a,
            ConvSpec::same(self.c_out, self.c_out, 3, 1),
        );
        let residual = if self.stride != 1 || self.c_in != self.c_out {
            let y = b.conv(
                &format!("{name}.downsample.0"),
                x,
                ConvSpec::same(self.c_in, self.c_out, 1, self.stride),
            );
            b.batch_norm(&format!("{name}.downsample.1"), &y, self.c_out)
        } else {
            x.to_string()
        };
        b.add(&format!("{name}.add"), &residual, &main)
    }

    /// `MicroCell`: edge l (node-major order) is module `{cell}.edges.l`.
    fn micro(&self, b: &mut ModelBuilder, x: &str, edges: &[Vec<TransNasOp>; 3]) -> String {
        // nodes[k]: node k's tensor, or None while it is zero and not materialised.
        let mut nodes: Vec<Option<String>> = vec![Some(x.to_string())];
        let mut edge = 0;
        for (k, ops) in edges.iter().enumerate() {
            let target = k + 1;
            let mut terms = Vec::new();
            for (from, &op) in ops.iter().enumerate() {
                let name = format!("{}.edges.{edge}", self.name);
                edge += 1;
                if op == TransNasOp::Zero {
                    continue;
                }
                if nodes[from].is_none() {
                    nodes[from] = Some(self.zero_node(b, x, from));
                }
                let input = nodes[from].clone().expect("materialised above");
                let (c_in, stride) = if from == 0 {
                    (self.c_in, self.stride)
                } else {
                    (self.c_out, 1)
                };
                terms.push(match op {
                    TransNasOp::Zero => unreachable!("skipped above"),
                    TransNasOp::Skip if stride == 1 && c_in == self.c_out => input,
                    TransNasOp::Skip => self.factorized_reduce(b, &name, &input, c_in, stride),
                    TransNasOp::Conv1x1 => {
                        let spec = ConvSpec::same(c_in, self.c_out, 1, stride);
                        relu_conv_bn(b, &name, &input, spec)
                    }
                    TransNasOp::Conv3x3 => {
                        let spec = ConvSpec::same(c_in, self.c_out, 3, stride);
                        relu_conv_bn(b, &name, &input, spec)
                    }
                });
            }
            let node =
                (!terms.is_empty()).then(|| b.sum(&format!("{}.node{target}", self.name), &terms));
            nodes.push(node);
        }
        match nodes.pop().flatten() {
            Some(out) => out,
            None => self.zero_node(b, x, 3),
        }
    }

    /// The zero tensor of node `k`'s edge from node 0 (`Zero(c_in, c_out, stride)`): the input
    /// strided, times 0, repeated along channels when the width doubles.
    fn zero_node(&self, b: &mut ModelBuilder, x: &str, k: usize) -> String {
        // Edge 0 → k is the first edge of node k: index k(k−1)/2.
        let name = format!("{}.edges.{}", self.name, k * (k - 1) / 2);
        let mut t = x.to_string();
        if self.stride > 1 {
            let range = SliceRange::Spatial {
                start: 0,
                step: self.stride,
            };
            t = b.slice(&format!("{name}.stride"), &t, range);
        }
        let zero = b.zero_of(&name, &t);
        if self.c_out == self.c_in {
            zero
        } else {
            assert_eq!(self.c_out, 2 * self.c_in, "TransNAS widths only double");
            b.concat(&format!("{name}.widen"), &[zero.clone(), zero])
        }
    }

    /// `FactorizedReduce(c_in, c_out, stride)`: ReLU, pad bottom/right, `convs.0` on `x` and
    /// `convs.1` on the padded input from row and column 1, concatenated, BN.
    fn factorized_reduce(
        &self,
        b: &mut ModelBuilder,
        name: &str,
        x: &str,
        c_in: i64,
        stride: i64,
    ) -> String {
        let r = b.relu(&format!("{name}.relu"), x);
        let padded = b.pad_bottom_right(&format!("{name}.pad"), &r);
        let first = self.c_out / 2;
        let a = b.conv(
            &format!("{name}.convs.0"),
            &r,
            ConvSpec::same(c_in, first, 1, stride),
        );
        let shifted = b.slice(
            &format!("{name}.shift"),
            &padded,
            SliceRange::Spatial { start: 1, step: 1 },
        );
        let c = b.conv(
            &format!("{name}.convs.1"),
            &shifted,
            ConvSpec::same(c_in, self.c_out - first, 1, stride),
        );
        let cat = b.concat(&format!("{name}.cat"), &[a, c]);
        b.batch_norm(&format!("{name}.bn"), &cat, self.c_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::tests_support::assert_naslib_counts;

    fn ingest(arch: &str, task: TransNasTask) -> crate::graph::CompGraph {
        let model = transnas_model(&TransNasArch::parse(arch).unwrap(), task);
        crate::generate::tests_support::ingest(&model)
    }

    /// NASLib's `zc_transbench101_{micro,macro}.json` samples (the test fixture's): arch, task,
    /// params (millions), FLOPs (MFLOPs).
    const SAMPLES: &[(&str, TransNasTask, f64, f64)] = &[
        (
            "64-41414-1_00_210",
            TransNasTask::ClassScene,
            0.910687,
            263.299072,
        ),
        (
            "64-41414-1_00_210",
            TransNasTask::ClassObject,
            0.929668,
            263.318016,
        ),
        (
            "64-41414-1_00_210",
            TransNasTask::RoomLayout,
            0.882985,
            263.271424,
        ),
        // Node 1 is zero and read by a 3×3 conv and a skip.
        (
            "64-41414-0_13_111",
            TransNasTask::ClassScene,
            8.072287,
            1656.496128,
        ),
        // Nodes 1 and 2 are zero, both read by node 3.
        (
            "64-41414-0_00_321",
            TransNasTask::ClassScene,
            7.033439,
            1548.394496,
        ),
        (
            "64-1242-basic",
            TransNasTask::ClassScene,
            11.218783,
            13602.455552,
        ),
        (
            "64-1242-basic",
            TransNasTask::ClassObject,
            11.237764,
            13602.474496,
        ),
        (
            "64-1242-basic",
            TransNasTask::RoomLayout,
            11.191081,
            13602.427904,
        ),
    ];

    #[test]
    fn params_and_flops_match_naslib() {
        for &(arch, task, params_m, flops_m) in SAMPLES {
            let g = ingest(arch, task);
            assert_naslib_counts(&g, params_m, flops_m, &format!("{arch} {task:?}"));
        }
    }

    #[test]
    fn zero_nodes_and_shapes() {
        // Every cell computes zero: its output is the zero tensor of edge 0 → 3, strided and
        // widened where the layer changes them, and the next cell reads it.
        let g = ingest("64-41414-1_11_000", TransNasTask::ClassObject);
        assert_eq!(g.summary.op_counts["Mul"], 10);
        assert_eq!(g.summary.unknown_shapes, 0);
        let gap = g
            .graph
            .node_weights()
            .find(|n| n.label == "GlobalAvgPool")
            .unwrap();
        assert_eq!(gap.input_shape, Some(vec![1, 512, 8, 8]));
        let g = ingest("64-1242-basic", TransNasTask::ClassScene);
        let gap = g
            .graph
            .node_weights()
            .find(|n| n.label == "GlobalAvgPool")
            .unwrap();
        assert_eq!(gap.input_shape, Some(vec![1, 512, 32, 32]));
        assert_eq!(g.summary.input_shape, vec![1, 3, 256, 256]);
    }

    #[test]
    fn rejects_malformed_strings() {
        for bad in [
            "",
            "64-41414",
            "64-41414-1_00",
            "64-41414-1_00_2100",
            "64-41414-1_00_214",
            "64-41514-1_00_210",
            "63-41414-1_00_210",
            "x-1242-basic",
            "64--basic",
            "64-1242-resnet",
            "64-1242-basic-x",
        ] {
            assert!(TransNasArch::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TransNasTask::from_name("room_layout"),
            Some(TransNasTask::RoomLayout)
        );
        assert_eq!(TransNasTask::from_name("jigsaw"), None);
    }
}
