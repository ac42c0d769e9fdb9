//! NAS-Bench-101 (Ying et al., ICML 2019): a cell is a DAG of at most 7 vertices (input, up to
//! five ops, output), and the network is the benchmark's `model_builder` as ported to PyTorch by
//! `nasbench_pytorch` (`Network(spec, stem_out_channels=128, num_stacks=3,
//! num_modules_per_stack=3)`), the model NASLib measured its zero-cost samples on.
//!
//! Network: stem `Conv3×3(3→128)-BN-ReLU`; three stacks of three cells at 128, 256 and 512
//! channels with a `MaxPool(2, 2)` before the second and third; `mean` over H and W;
//! `Linear(512→10)`. Inside a cell (C_in → C_out), the spec is first pruned to the vertices on a
//! path from input to output; the vertices feeding the output share C_out between them (the
//! first ones get the remainder) and the others take the largest width they feed. Vertex t sums
//! its inputs: other vertices, sliced to its width when wider, and the cell input through a 1×1
//! `Conv-BN-ReLU` projection. The output concatenates the vertices feeding it, plus a projection
//! of the cell input when input → output is an edge. No convolution has a bias.

use serde::Deserialize;

use super::GenerateError;
use super::builder::{ConvSpec, ModelBuilder, SliceRange};
use crate::onnx::proto::ModelProto;

/// An interior vertex op of a NAS-Bench-101 cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nb101Op {
    /// `conv3x3-bn-relu`.
    Conv3x3,
    /// `conv1x1-bn-relu`.
    Conv1x1,
    /// `maxpool3x3`: 3×3 max pool, stride 1, padding 1.
    MaxPool3x3,
}

impl Nb101Op {
    /// The op's label in NAS-Bench-101 specs.
    pub fn name(self) -> &'static str {
        match self {
            Nb101Op::Conv3x3 => "conv3x3-bn-relu",
            Nb101Op::Conv1x1 => "conv1x1-bn-relu",
            Nb101Op::MaxPool3x3 => "maxpool3x3",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Nb101Op::Conv3x3, Nb101Op::Conv1x1, Nb101Op::MaxPool3x3]
            .into_iter()
            .find(|op| op.name() == name)
    }
}

/// Most vertices of a NAS-Bench-101 cell (input and output included).
pub const NB101_MAX_VERTICES: usize = 7;
/// Stem width; each stack after the first doubles it.
const STEM_CHANNELS: i64 = 128;
const STACKS: usize = 3;
const CELLS_PER_STACK: usize = 3;
const NUM_CLASSES: i64 = 10;
const RESOLUTION: i64 = 32;

/// A NAS-Bench-101 cell, already pruned to the vertices on an input → output path (as the
/// benchmark's `ModelSpec` does): `matrix[i][j]` is the edge i → j, vertex 0 is the input and
/// the last the output; `ops` are the interior vertices' ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nb101Spec {
    matrix: Vec<Vec<bool>>,
    ops: Vec<Nb101Op>,
}

/// The JSON form: `{"matrix": [[0, 1, …], …], "ops": ["input", "conv3x3-bn-relu", …, "output"]}`.
#[derive(Deserialize)]
struct RawSpec {
    matrix: Vec<Vec<i64>>,
    ops: Vec<String>,
}

impl Nb101Spec {
    /// Parses and prunes the benchmark's `{"matrix", "ops"}` JSON.
    pub fn from_json(json: &str) -> Result<Self, GenerateError> {
        let raw: RawSpec = serde_json::from_str(json)
            .map_err(|e| GenerateError::Nb101Spec(format!("not {{\"matrix\", \"ops\"}}: {e}")))?;
        Self::new(&raw.matrix, &raw.ops)
    }

    /// Parses and prunes the `{"matrix", "ops"}` object.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, GenerateError> {
        let raw = RawSpec::deserialize(value)
            .map_err(|e| GenerateError::Nb101Spec(format!("not {{\"matrix\", \"ops\"}}: {e}")))?;
        Self::new(&raw.matrix, &raw.ops)
    }

    /// Checks a spec (square 0/1 upper-triangular matrix of at most 7 vertices, `input` first,
    /// `output` last, known ops between) and prunes the vertices not on an input → output path.
    pub fn new(matrix: &[Vec<i64>], ops: &[String]) -> Result<Self, GenerateError> {
        let err = |m: String| Err(GenerateError::Nb101Spec(m));
        let n = matrix.len();
        if !(2..=NB101_MAX_VERTICES).contains(&n) {
            return err(format!("{n} vertices (2 to {NB101_MAX_VERTICES})"));
        }
        if ops.len() != n {
            return err(format!("{} ops for {n} vertices", ops.len()));
        }
        if ops[0] != "input" || ops[n - 1] != "output" {
            return err("the first op must be 'input' and the last 'output'".into());
        }
        let mut interior = Vec::with_capacity(n - 2);
        for op in &ops[1..n - 1] {
            interior.push(Nb101Op::from_name(op).ok_or_else(|| {
                GenerateError::Nb101Spec(format!(
                    "unknown op '{op}' (conv3x3-bn-relu, conv1x1-bn-relu or maxpool3x3)"
                ))
            })?);
        }
        let mut edges = vec![vec![false; n]; n];
        for (i, row) in matrix.iter().enumerate() {
            if row.len() != n {
                return err(format!("row {i} has {} entries, not {n}", row.len()));
            }
            for (j, &v) in row.iter().enumerate() {
                match (v, j > i) {
                    (0, _) => {}
                    (1, true) => edges[i][j] = true,
                    (1, false) => return err(format!("edge {i} → {j} is not upper triangular")),
                    _ => return err(format!("entry ({i}, {j}) is {v}, not 0 or 1")),
                }
            }
        }
        // Keep the vertices reachable from the input and reaching the output.
        let mut from_input = vec![false; n];
        from_input[0] = true;
        for j in 1..n {
            from_input[j] = (0..j).any(|i| from_input[i] && edges[i][j]);
        }
        let mut to_output = vec![false; n];
        to_output[n - 1] = true;
        for i in (0..n - 1).rev() {
            to_output[i] = (i + 1..n).any(|j| to_output[j] && edges[i][j]);
        }
        if !to_output[0] {
            return err("the input is not connected to the output".into());
        }
        let keep: Vec<usize> = (0..n).filter(|&v| from_input[v] && to_output[v]).collect();
        Ok(Nb101Spec {
            matrix: keep
                .iter()
                .map(|&i| keep.iter().map(|&j| edges[i][j]).collect())
                .collect(),
            ops: keep[1..keep.len() - 1]
                .iter()
                .map(|&v| interior[v - 1])
                .collect(),
        })
    }

    fn vertices(&self) -> usize {
        self.matrix.len()
    }

    /// Output channels of every vertex of a cell `c_in → c_out` (`compute_vertex_channels`).
    fn vertex_channels(&self, c_in: i64, c_out: i64) -> Vec<i64> {
        let n = self.vertices();
        let m = &self.matrix;
        let mut channels = vec![0i64; n];
        channels[0] = c_in;
        channels[n - 1] = c_out;
        if n == 2 {
            return channels;
        }
        let fan_in = (1..n - 1).filter(|&v| m[v][n - 1]).count() as i64;
        let (share, mut extra) = (c_out / fan_in, c_out % fan_in);
        for v in 1..n - 1 {
            if m[v][n - 1] {
                channels[v] = share + i64::from(extra > 0);
                extra = (extra - 1).max(0);
            }
        }
        for v in (1..n - 1).rev() {
            if !m[v][n - 1] {
                channels[v] = (v + 1..n - 1)
                    .filter(|&d| m[v][d])
                    .map(|d| channels[d])
                    .max()
                    .unwrap_or(0);
            }
        }
        channels
    }
}

/// The NAS-Bench-101 network of a cell (CIFAR-10: 32×32 input, 10 classes).
pub fn nb101_model(spec: &Nb101Spec) -> ModelProto {
    let mut b = ModelBuilder::new("nasbench101");
    let x = b.input("input", &[1, 3, RESOLUTION, RESOLUTION]);
    let mut feature = conv_bn_relu(&mut b, "layers.0.conv_bn_relu", &x, 3, STEM_CHANNELS, 3);
    let (mut c_in, mut c_out) = (STEM_CHANNELS, STEM_CHANNELS);
    let mut layer = 1;
    for stack in 0..STACKS {
        if stack > 0 {
            feature = b.max_pool(&format!("layers.{layer}"), &feature, 2, 2, 0);
            layer += 1;
            c_out *= 2;
        }
        for _ in 0..CELLS_PER_STACK {
            feature = cell(
                &mut b,
                &format!("layers.{layer}"),
                &feature,
                spec,
                c_in,
                c_out,
            );
            c_in = c_out;
            layer += 1;
        }
    }
    let pooled = b.spatial_mean("mean", &feature);
    let logits = b.linear("classifier", &pooled, c_out, NUM_CLASSES);
    b.output(&logits, &[1, NUM_CLASSES]);
    b.finish("NAS-Bench-101 network (128 stem channels, 3 stacks of 3 cells, CIFAR-10), generated by archdb")
}

/// `ConvBnRelu`: Conv k×k (stride 1, pad k/2, no bias), BN, ReLU as `{name}.0`–`{name}.2`.
fn conv_bn_relu(
    b: &mut ModelBuilder,
    name: &str,
    x: &str,
    c_in: i64,
    c_out: i64,
    k: i64,
) -> String {
    let y = b.conv(&format!("{name}.0"), x, ConvSpec::same(c_in, c_out, k, 1));
    let y = b.batch_norm(&format!("{name}.1"), &y, c_out);
    b.relu(&format!("{name}.2"), &y)
}

/// One cell `c_in → c_out` (module names of the reference `Cell`).
fn cell(
    b: &mut ModelBuilder,
    name: &str,
    x: &str,
    spec: &Nb101Spec,
    c_in: i64,
    c_out: i64,
) -> String {
    let n = spec.vertices();
    let m = &spec.matrix;
    let channels = spec.vertex_channels(c_in, c_out);
    let project = |b: &mut ModelBuilder, t: usize| {
        let name = format!("{name}.input_op.{t}.conv_bn_relu");
        conv_bn_relu(b, &name, x, c_in, channels[t], 1)
    };
    let mut tensors = vec![x.to_string()];
    let mut out_concat = Vec::new();
    for t in 1..n - 1 {
        let mut fan_in = Vec::new();
        for src in (1..t).filter(|&s| m[s][t]) {
            fan_in.push(if channels[src] > channels[t] {
                let slice = format!("{name}.truncate.{src}_{t}");
                b.slice(
                    &slice,
                    &tensors[src],
                    SliceRange::Channels { end: channels[t] },
                )
            } else {
                tensors[src].clone()
            });
        }
        if m[0][t] {
            fan_in.push(project(b, t));
        }
        let input = b.sum(&format!("{name}.vertex{t}.add"), &fan_in);
        let op = format!("{name}.vertex_op.{t}");
        let c = channels[t];
        let out = match spec.ops[t - 1] {
            Nb101Op::Conv3x3 => {
                conv_bn_relu(b, &format!("{op}.conv3x3.conv_bn_relu"), &input, c, c, 3)
            }
            Nb101Op::Conv1x1 => {
                conv_bn_relu(b, &format!("{op}.conv1x1.conv_bn_relu"), &input, c, c, 1)
            }
            Nb101Op::MaxPool3x3 => b.max_pool(&format!("{op}.maxpool"), &input, 3, 1, 1),
        };
        if m[t][n - 1] {
            out_concat.push(out.clone());
        }
        tensors.push(out);
    }
    match out_concat.len() {
        // Only input → output: the projection alone.
        0 => project(b, n - 1),
        len => {
            let joined = if len == 1 {
                out_concat.pop().expect("one tensor")
            } else {
                b.concat(&format!("{name}.concat"), &out_concat)
            };
            if m[0][n - 1] {
                let projected = project(b, n - 1);
                b.add(&format!("{name}.add"), &joined, &projected)
            } else {
                joined
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::tests_support::assert_naslib_counts;

    fn ingest(spec: &Nb101Spec) -> crate::graph::CompGraph {
        crate::generate::tests_support::ingest(&nb101_model(spec))
    }

    /// The first three NB101 samples of NASLib's `zc_nasbench101.json` (the test fixture's):
    /// spec, NASLib's params (millions) and FLOPs (MFLOPs).
    const SAMPLES: &[(&str, f64, f64)] = &[
        (
            r#"{"matrix": [[0, 1, 1, 1, 1, 0, 1], [0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], "ops": ["input", "maxpool3x3", "maxpool3x3", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "output"]}"#,
            4.095778,
            624.55808,
        ),
        (
            r#"{"matrix": [[0, 1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], "ops": ["input", "conv3x3-bn-relu", "maxpool3x3", "conv1x1-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "output"]}"#,
            1.749031,
            268.100288,
        ),
        // Vertex 1 has no input and vertex 5 reaches no output: both are pruned.
        (
            r#"{"matrix": [[0, 0, 1, 1, 1, 0, 1], [0, 0, 1, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0, 1], [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], "ops": ["input", "maxpool3x3", "conv3x3-bn-relu", "maxpool3x3", "maxpool3x3", "maxpool3x3", "output"]}"#,
            4.518282,
            691.803136,
        ),
    ];

    #[test]
    fn params_and_flops_match_naslib() {
        for &(json, params_m, flops_m) in SAMPLES {
            let g = ingest(&Nb101Spec::from_json(json).unwrap());
            assert_naslib_counts(&g, params_m, flops_m, json);
        }
    }

    #[test]
    fn pruning_channels_and_structure() {
        let spec = Nb101Spec::from_json(SAMPLES[2].0).unwrap();
        assert_eq!(spec.vertices(), 5);
        assert_eq!(
            spec.ops,
            [Nb101Op::Conv3x3, Nb101Op::MaxPool3x3, Nb101Op::MaxPool3x3]
        );
        // Vertices 1 and 3 (after pruning) feed the output: 128 channels split 64 + 64; vertex 2
        // feeds vertex 3 only and takes its width.
        assert_eq!(spec.vertex_channels(128, 128), [128, 64, 64, 64, 128]);
        // An odd split: the first vertex gets the extra channel, and a wider vertex is sliced
        // where it feeds a narrower one.
        let spec = Nb101Spec::from_json(
            r#"{"matrix": [[0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
                "ops": ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "output"]}"#,
        )
        .unwrap();
        assert_eq!(spec.vertex_channels(128, 128), [128, 43, 43, 42, 128]);
        let g = ingest(&spec);
        // 1→3 is sliced at 128 (43 → 42) and 512 (171 → 170); at 256 (86, 85, 85) both 1→2
        // and 1→3 are: 3 × 1 + 3 × 2 + 3 × 1.
        assert_eq!(spec.vertex_channels(128, 256), [128, 86, 85, 85, 256]);
        assert_eq!(g.summary.op_counts["Slice"], 12);
        assert_eq!(g.summary.op_counts["Concat"], 9);
        // Input → output only: every cell is one projection.
        let g = ingest(
            &Nb101Spec::from_json(r#"{"matrix": [[0, 1], [0, 0]], "ops": ["input", "output"]}"#)
                .unwrap(),
        );
        assert_eq!(g.summary.op_counts["Conv"], 10);
        assert_eq!(g.summary.input_shape, vec![1, 3, 32, 32]);
    }

    #[test]
    fn rejects_invalid_specs() {
        for bad in [
            "",
            "{}",
            r#"{"matrix": [[0, 1], [0, 0]], "ops": ["input"]}"#,
            r#"{"matrix": [[0, 1], [1, 0]], "ops": ["input", "output"]}"#,
            r#"{"matrix": [[0, 2], [0, 0]], "ops": ["input", "output"]}"#,
            r#"{"matrix": [[0, 1], [0, 0]], "ops": ["output", "input"]}"#,
            r#"{"matrix": [[0, 1, 0], [0, 0, 0], [0, 0, 0]], "ops": ["input", "conv3x3-bn-relu", "output"]}"#,
            r#"{"matrix": [[0, 1, 1], [0, 0, 1], [0, 0, 0]], "ops": ["input", "conv5x5", "output"]}"#,
            r#"{"matrix": [[0, 1, 1], [0, 0, 1]], "ops": ["input", "conv3x3-bn-relu", "output"]}"#,
        ] {
            assert!(Nb101Spec::from_json(bad).is_err(), "{bad}");
        }
        let eight = vec![vec![0i64; 8]; 8];
        let ops: Vec<String> = std::iter::once("input")
            .chain(std::iter::repeat_n("maxpool3x3", 6))
            .chain(std::iter::once("output"))
            .map(String::from)
            .collect();
        assert!(Nb101Spec::new(&eight, &ops).is_err());
    }
}
