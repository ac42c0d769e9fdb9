//! NAS-Bench-301 (Siems et al., 2020): DARTS cells (Liu et al., ICLR 2019) in the DARTS
//! evaluation network `NetworkCIFAR(C=32, num_classes=10, layers=8, auxiliary=False, genotype)`,
//! the setting NAS-Bench-301 trained its architectures in.
//!
//! Network: stem `Conv3×3(3→96, no bias)-BN`; 8 cells, the third and sixth reduction cells
//! (stride 2, channels doubled: C = 32, 64, 128); `GlobalAveragePool`; `Linear(4·128→10)`. Cell
//! k reads the outputs of cells k−2 and k−1 (the stem for the first ones) through
//! `preprocess0` (`ReLU-Conv1×1-BN`, or `FactorizedReduce` after a reduction cell) and
//! `preprocess1` (`ReLU-Conv1×1-BN`); each of its 4 nodes sums two ops of earlier states; the
//! output concatenates the nodes of `*_concat`. Ops read the cell inputs with stride 2 in a
//! reduction cell.
//!
//! [`Nb301Variant::Naslib`] is the same network as NASLib builds it for its zero-cost samples
//! (`NasBench301SearchSpace`): the ops' BatchNorms have no affine parameters and the pools are
//! followed by a BatchNorm without affine parameters. Its parameters and FLOPs are the samples'
//! `params` and `flops`.

use serde::Deserialize;

use super::GenerateError;
use super::builder::{ConvSpec, ModelBuilder, SliceRange};
use crate::onnx::proto::ModelProto;

/// A DARTS operation (the genotype vocabulary; `none` never occurs in a genotype).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DartsOp {
    /// `max_pool_3x3`.
    MaxPool3x3,
    /// `avg_pool_3x3` (padding excluded from the average).
    AvgPool3x3,
    /// `skip_connect`: identity, or `FactorizedReduce` at stride 2.
    SkipConnect,
    /// `sep_conv_3x3`: two ReLU-depthwise 3×3-pointwise-BN stacks.
    SepConv3x3,
    /// `sep_conv_5x5`.
    SepConv5x5,
    /// `dil_conv_3x3`: ReLU-depthwise 3×3 dilation 2-pointwise-BN.
    DilConv3x3,
    /// `dil_conv_5x5`.
    DilConv5x5,
}

impl DartsOp {
    /// The seven ops in NASLib's compact-encoding order.
    pub const ALL: [DartsOp; 7] = [
        DartsOp::MaxPool3x3,
        DartsOp::AvgPool3x3,
        DartsOp::SkipConnect,
        DartsOp::SepConv3x3,
        DartsOp::SepConv5x5,
        DartsOp::DilConv3x3,
        DartsOp::DilConv5x5,
    ];

    /// The op's name in genotypes.
    pub fn name(self) -> &'static str {
        match self {
            DartsOp::MaxPool3x3 => "max_pool_3x3",
            DartsOp::AvgPool3x3 => "avg_pool_3x3",
            DartsOp::SkipConnect => "skip_connect",
            DartsOp::SepConv3x3 => "sep_conv_3x3",
            DartsOp::SepConv5x5 => "sep_conv_5x5",
            DartsOp::DilConv3x3 => "dil_conv_3x3",
            DartsOp::DilConv5x5 => "dil_conv_5x5",
        }
    }
}

/// Which build of the NAS-Bench-301 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Nb301Variant {
    /// DARTS `NetworkCIFAR`, the network NAS-Bench-301 trained.
    #[default]
    Darts,
    /// NASLib's build, on which the zero-cost proxies were measured: BatchNorms of the ops
    /// without affine parameters, a BatchNorm after each pool.
    Naslib,
}

/// One cell type of a genotype: `(op, input state)` pairs, two per node (states 0 and 1 are the
/// cell inputs, state k + 2 node k), and the states concatenated as the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DartsCell {
    edges: Vec<(DartsOp, usize)>,
    concat: Vec<usize>,
}

/// A DARTS genotype: the normal and the reduction cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DartsGenotype {
    normal: DartsCell,
    reduce: DartsCell,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGenotype {
    normal: Vec<(String, usize)>,
    normal_concat: Vec<usize>,
    reduce: Vec<(String, usize)>,
    reduce_concat: Vec<usize>,
}

impl DartsGenotype {
    /// Parses `{"normal": [["sep_conv_3x3", 0], …], "normal_concat": [2, 3, 4, 5], "reduce":
    /// […], "reduce_concat": […]}` (DARTS' `Genotype` as JSON).
    pub fn from_json(json: &str) -> Result<Self, GenerateError> {
        let raw: RawGenotype = serde_json::from_str(json).map_err(|e| {
            GenerateError::DartsGenotype(format!(
                "not {{normal, normal_concat, reduce, reduce_concat}}: {e}"
            ))
        })?;
        Self::from_raw(raw)
    }

    /// Parses the genotype object (see [`DartsGenotype::from_json`]).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, GenerateError> {
        let raw = RawGenotype::deserialize(value).map_err(|e| {
            GenerateError::DartsGenotype(format!(
                "not {{normal, normal_concat, reduce, reduce_concat}}: {e}"
            ))
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawGenotype) -> Result<Self, GenerateError> {
        Ok(DartsGenotype {
            normal: cell("normal", raw.normal, raw.normal_concat)?,
            reduce: cell("reduce", raw.reduce, raw.reduce_concat)?,
        })
    }
}

/// Checks one cell: an even, non-zero number of edges, each reading an earlier state, and a
/// non-empty concatenation of existing states.
fn cell(
    kind: &str,
    edges: Vec<(String, usize)>,
    concat: Vec<usize>,
) -> Result<DartsCell, GenerateError> {
    let err = |m: String| Err(GenerateError::DartsGenotype(format!("{kind} cell: {m}")));
    if edges.is_empty() || !edges.len().is_multiple_of(2) {
        return err(format!("{} edges; two per node are needed", edges.len()));
    }
    let states = edges.len() / 2 + 2;
    let mut parsed = Vec::with_capacity(edges.len());
    for (i, (name, input)) in edges.into_iter().enumerate() {
        let op = DartsOp::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(|| {
                GenerateError::DartsGenotype(format!(
                    "{kind} cell: unknown op '{name}' (max_pool_3x3, avg_pool_3x3, skip_connect, \
                     sep_conv_3x3, sep_conv_5x5, dil_conv_3x3 or dil_conv_5x5)"
                ))
            })?;
        if input >= i / 2 + 2 {
            return err(format!(
                "edge {i} of node {} reads state {input}, which is not earlier",
                i / 2
            ));
        }
        parsed.push((op, input));
    }
    if concat.is_empty() || concat.iter().any(|&s| s >= states) {
        return err(format!("concat {concat:?} must name states 0..{states}"));
    }
    Ok(DartsCell {
        edges: parsed,
        concat,
    })
}

/// NAS-Bench-301's training setting: 32 initial channels, 8 cells.
const INIT_CHANNELS: i64 = 32;
const LAYERS: usize = 8;
const STEM_MULTIPLIER: i64 = 3;
const NUM_CLASSES: i64 = 10;
const RESOLUTION: i64 = 32;

/// The NAS-Bench-301 network of a genotype (CIFAR-10, no auxiliary head).
pub fn nb301_model(genotype: &DartsGenotype, variant: Nb301Variant) -> ModelProto {
    let mut b = ModelBuilder::new("nasbench301");
    let x = b.input("input", &[1, 3, RESOLUTION, RESOLUTION]);
    let c_stem = STEM_MULTIPLIER * INIT_CHANNELS;
    let stem = b.conv("stem.0", &x, ConvSpec::same(3, c_stem, 3, 1));
    let stem = b.batch_norm("stem.1", &stem, c_stem);
    let (mut s0, mut s1) = (stem.clone(), stem);
    let (mut c_pp, mut c_p, mut c) = (c_stem, c_stem, INIT_CHANNELS);
    let mut reduction_prev = false;
    for i in 0..LAYERS {
        let reduction = i == LAYERS / 3 || i == 2 * LAYERS / 3;
        if reduction {
            c *= 2;
        }
        let spec = if reduction {
            &genotype.reduce
        } else {
            &genotype.normal
        };
        let name = format!("cells.{i}");
        let ctx = CellCtx {
            name: &name,
            c,
            reduction,
            variant,
        };
        let p0 = if reduction_prev {
            factorized_reduce(&mut b, &format!("{name}.preprocess0"), &s0, c_pp, c, true)
        } else {
            relu_conv_bn(&mut b, &format!("{name}.preprocess0.op"), &s0, c_pp, c)
        };
        let p1 = relu_conv_bn(&mut b, &format!("{name}.preprocess1.op"), &s1, c_p, c);
        let out = ctx.build(&mut b, spec, p0, p1);
        (s0, s1) = (s1, out);
        reduction_prev = reduction;
        (c_pp, c_p) = (c_p, spec.concat.len() as i64 * c);
    }
    let pooled = b.global_avg_pool("global_pooling", &s1);
    let flat = b.flatten("flatten", &pooled);
    let logits = b.linear("classifier", &flat, c_p, NUM_CLASSES);
    b.output(&logits, &[1, NUM_CLASSES]);
    let build = match variant {
        Nb301Variant::Darts => "DARTS NetworkCIFAR",
        Nb301Variant::Naslib => "NASLib's NasBench301SearchSpace",
    };
    b.finish(&format!(
        "NAS-Bench-301 network ({build}: C=32, 8 cells, CIFAR-10, no auxiliary head), generated by archdb"
    ))
}

/// `ReLUConvBN(c_in, c_out, 1, 1, 0)` with affine BN: `{name}.0`–`{name}.2`.
fn relu_conv_bn(b: &mut ModelBuilder, name: &str, x: &str, c_in: i64, c_out: i64) -> String {
    let r = b.relu(&format!("{name}.0"), x);
    let y = b.conv(&format!("{name}.1"), &r, ConvSpec::same(c_in, c_out, 1, 1));
    b.batch_norm(&format!("{name}.2"), &y, c_out)
}

/// A BatchNorm with or without affine parameters.
fn bn(b: &mut ModelBuilder, name: &str, x: &str, c: i64, affine: bool) -> String {
    if affine {
        b.batch_norm(name, x, c)
    } else {
        b.batch_norm_fixed(name, x, c)
    }
}

/// `FactorizedReduce(c_in, c_out)`: ReLU, then two stride-2 1×1 convs of `x` and of
/// `x[:, :, 1:, 1:]`, concatenated, then BN.
fn factorized_reduce(
    b: &mut ModelBuilder,
    name: &str,
    x: &str,
    c_in: i64,
    c_out: i64,
    affine: bool,
) -> String {
    let r = b.relu(&format!("{name}.relu"), x);
    let half = ConvSpec::same(c_in, c_out / 2, 1, 2);
    let a = b.conv(&format!("{name}.conv_1"), &r, half);
    let shifted = b.slice(
        &format!("{name}.shift"),
        &r,
        SliceRange::Spatial { start: 1, step: 1 },
    );
    let c = b.conv(&format!("{name}.conv_2"), &shifted, half);
    let cat = b.concat(&format!("{name}.cat"), &[a, c]);
    bn(b, &format!("{name}.bn"), &cat, c_out, affine)
}

/// What the ops of one cell share.
struct CellCtx<'a> {
    name: &'a str,
    c: i64,
    reduction: bool,
    variant: Nb301Variant,
}

impl CellCtx<'_> {
    /// The cell's nodes and output concatenation over the preprocessed inputs.
    fn build(&self, b: &mut ModelBuilder, spec: &DartsCell, p0: String, p1: String) -> String {
        let mut states = vec![p0, p1];
        for (node, pair) in spec.edges.chunks(2).enumerate() {
            let mut terms = Vec::with_capacity(2);
            for (k, &(op, input)) in pair.iter().enumerate() {
                let stride = if self.reduction && input < 2 { 2 } else { 1 };
                let index = 2 * node + k;
                terms.push(self.op(b, index, op, &states[input].clone(), stride));
            }
            states.push(b.sum(&format!("{}.node{}", self.name, node + 2), &terms));
        }
        let outputs: Vec<String> = spec.concat.iter().map(|&s| states[s].clone()).collect();
        if outputs.len() == 1 {
            outputs[0].clone()
        } else {
            b.concat(&format!("{}.concat", self.name), &outputs)
        }
    }

    /// Op `index` of the cell (`{cell}._ops.{index}`) on `x`.
    fn op(&self, b: &mut ModelBuilder, index: usize, op: DartsOp, x: &str, stride: i64) -> String {
        let name = format!("{}._ops.{index}", self.name);
        let c = self.c;
        let affine = self.variant == Nb301Variant::Darts;
        let pool_bn = |b: &mut ModelBuilder, y: String| match self.variant {
            Nb301Variant::Darts => y,
            Nb301Variant::Naslib => b.batch_norm_fixed(&format!("{name}.bn"), &y, c),
        };
        match op {
            DartsOp::MaxPool3x3 => {
                let y = b.max_pool(&name, x, 3, stride, 1);
                pool_bn(b, y)
            }
            DartsOp::AvgPool3x3 => {
                let y = b.avg_pool(&name, x, 3, stride, 1, false);
                pool_bn(b, y)
            }
            DartsOp::SkipConnect if stride == 1 => x.to_string(),
            DartsOp::SkipConnect => factorized_reduce(b, &name, x, c, c, affine),
            DartsOp::SepConv3x3 | DartsOp::SepConv5x5 => {
                let k = if op == DartsOp::SepConv3x3 { 3 } else { 5 };
                let y = separable(b, &format!("{name}.op"), 0, x, c, k, 1, stride, affine);
                separable(b, &format!("{name}.op"), 4, &y, c, k, 1, 1, affine)
            }
            DartsOp::DilConv3x3 | DartsOp::DilConv5x5 => {
                let k = if op == DartsOp::DilConv3x3 { 3 } else { 5 };
                separable(b, &format!("{name}.op"), 0, x, c, k, 2, stride, affine)
            }
        }
    }
}

/// `ReLU`, depthwise k×k (dilation d, padding d·(k−1)/2), pointwise 1×1, BN: modules
/// `{name}.{first}`…`{name}.{first + 3}` (one half of `SepConv`, or all of `DilConv`).
#[allow(clippy::too_many_arguments)]
fn separable(
    b: &mut ModelBuilder,
    name: &str,
    first: usize,
    x: &str,
    c: i64,
    k: i64,
    dilation: i64,
    stride: i64,
    affine: bool,
) -> String {
    let n = |i: usize| format!("{name}.{}", first + i);
    let r = b.relu(&n(0), x);
    let dw = ConvSpec {
        groups: c,
        dilation,
        pad: dilation * (k - 1) / 2,
        ..ConvSpec::same(c, c, k, stride)
    };
    let y = b.conv(&n(1), &r, dw);
    let y = b.conv(&n(2), &y, ConvSpec::same(c, c, 1, 1));
    bn(b, &n(3), &y, c, affine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::tests_support::assert_naslib_counts;

    fn ingest(genotype: &DartsGenotype, variant: Nb301Variant) -> crate::graph::CompGraph {
        crate::generate::tests_support::ingest(&nb301_model(genotype, variant))
    }

    /// The first three NB301 samples of NASLib's `zc_nasbench301.json` (the test fixture's):
    /// genotype, NASLib's params (millions) and FLOPs (MFLOPs).
    const SAMPLES: &[(&str, f64, f64)] = &[
        (
            r#"{"normal": [["max_pool_3x3", 0], ["dil_conv_3x3", 1], ["avg_pool_3x3", 1], ["avg_pool_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["skip_connect", 3]], "normal_concat": [2, 3, 4, 5], "reduce": [["max_pool_3x3", 1], ["skip_connect", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["max_pool_3x3", 3], ["avg_pool_3x3", 0], ["max_pool_3x3", 2], ["dil_conv_5x5", 3]], "reduce_concat": [2, 3, 4, 5]}"#,
            0.856298,
            153.499136,
        ),
        (
            r#"{"normal": [["dil_conv_3x3", 0], ["max_pool_3x3", 1], ["avg_pool_3x3", 2], ["skip_connect", 0], ["skip_connect", 3], ["sep_conv_3x3", 0], ["max_pool_3x3", 1], ["dil_conv_3x3", 3]], "normal_concat": [2, 3, 4, 5], "reduce": [["avg_pool_3x3", 1], ["skip_connect", 0], ["dil_conv_3x3", 0], ["max_pool_3x3", 1], ["dil_conv_5x5", 0], ["skip_connect", 2], ["dil_conv_5x5", 4], ["max_pool_3x3", 0]], "reduce_concat": [2, 3, 4, 5]}"#,
            0.673834,
            126.252544,
        ),
        (
            r#"{"normal": [["dil_conv_5x5", 1], ["sep_conv_3x3", 0], ["avg_pool_3x3", 1], ["skip_connect", 0], ["dil_conv_3x3", 3], ["dil_conv_3x3", 1], ["sep_conv_3x3", 0], ["avg_pool_3x3", 2]], "normal_concat": [2, 3, 4, 5], "reduce": [["dil_conv_3x3", 1], ["dil_conv_5x5", 0], ["max_pool_3x3", 1], ["skip_connect", 0], ["sep_conv_3x3", 1], ["dil_conv_3x3", 0], ["dil_conv_3x3", 3], ["avg_pool_3x3", 0]], "reduce_concat": [2, 3, 4, 5]}"#,
            0.885674,
            156.210688,
        ),
    ];

    #[test]
    fn naslib_variant_matches_naslib_params_and_flops() {
        for &(json, params_m, flops_m) in SAMPLES {
            let genotype = DartsGenotype::from_json(json).unwrap();
            let g = ingest(&genotype, Nb301Variant::Naslib);
            assert_naslib_counts(&g, params_m, flops_m, json);
        }
    }

    #[test]
    fn darts_variant_adds_the_affine_parameters_and_drops_the_pool_norms() {
        let genotype = DartsGenotype::from_json(SAMPLES[0].0).unwrap();
        let naslib = ingest(&genotype, Nb301Variant::Naslib);
        let darts = ingest(&genotype, Nb301Variant::Darts);
        // Normal cell: 7 op BatchNorms (dil_conv 1, 3 × sep_conv 2) at C = 32, 64, 128, two
        // cells each; reduction cell: 6 (FactorizedReduce 1, 2 × sep_conv 2, dil_conv 1) at
        // C = 64, 128: 2 affine parameters per channel each.
        let affine = 2 * 7 * 2 * (32 + 64 + 128) + 2 * 6 * (64 + 128);
        assert_eq!(darts.summary.params, naslib.summary.params + affine);
        // Pools: 3 per normal cell × 6, 4 per reduction cell × 2, each followed by a BN in NASLib.
        assert_eq!(
            naslib.summary.op_counts["BatchNorm"] - darts.summary.op_counts["BatchNorm"],
            3 * 6 + 4 * 2
        );
        let gap = darts
            .graph
            .node_weights()
            .find(|n| n.label == "GlobalAvgPool")
            .unwrap();
        assert_eq!(gap.input_shape, Some(vec![1, 512, 8, 8]));
        assert_eq!(darts.summary.unknown_shapes, 0);
    }

    #[test]
    fn rejects_invalid_genotypes() {
        let ok = SAMPLES[0].0;
        assert!(DartsGenotype::from_json(ok).is_ok());
        for bad in [
            "",
            "{}",
            &ok.replace("dil_conv_3x3", "conv_7x7"),
            &ok.replace("[\"skip_connect\", 3]", "[\"skip_connect\", 5]"),
            &ok.replace(
                "\"normal_concat\": [2, 3, 4, 5]",
                "\"normal_concat\": [2, 3, 4, 6]",
            ),
            &ok.replace("\"normal_concat\": [2, 3, 4, 5]", "\"normal_concat\": []"),
            &ok.replace("[\"max_pool_3x3\", 0], [\"dil_conv_3x3\", 1], ", ""),
            &ok.replace("[\"max_pool_3x3\", 0], ", ""),
        ] {
            assert!(DartsGenotype::from_json(bad).is_err(), "{bad}");
        }
    }
}
