//! NAS-Bench-Macro (Su et al., CVPR 2021): 3^8 = 6,561 MobileNetV2-style macro networks on
//! CIFAR-10, as defined by `Network(arch, stages=[2, 3, 3], init_channels=32)` in the reference
//! `train/model.py` (xiusu/NAS-Bench-Macro).
//!
//! Network: stem `Conv3×3(3→32, no bias)-BN-ReLU`; 8 searchable layers in 3 stages of 2/3/3 at
//! 64/128/256 channels, the first layer of each stage with stride 2 (32×32 → 16 → 8 → 4); head
//! `Conv1×1(256→1280, no bias)-BN-ReLU-GlobalAvgPool-Linear(1280→10)`. Layer choices:
//!
//! * `0` Identity: nothing, except where the stride or width changes (the first layer of a
//!   stage), where it is `Conv1×1(stride s, no bias)-BN`;
//! * `1` MB3_K3: inverted residual, expansion 3, 3×3 depthwise;
//! * `2` MB6_K5: inverted residual, expansion 6, 5×5 depthwise.
//!
//! Inverted residual (`inp → oup`, stride s, expansion t, kernel k): `Conv1×1(inp→t·inp)-BN-ReLU`,
//! depthwise `Conv k×k(stride s, pad k/2, groups t·inp)-BN-ReLU`, `Conv1×1(t·inp→oup)-BN`, plus
//! the input when `inp == oup` and s = 1. No convolution has a bias.

use super::GenerateError;
use super::builder::{ConvSpec, ModelBuilder};
use crate::graph::CompGraph;
use crate::onnx::proto::ModelProto;

/// One searchable NAS-Bench-Macro layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacroOp {
    /// `0`: identity (a 1×1 conv + BN where the stride or width changes).
    Identity,
    /// `1`: MobileNetV2 block, expansion 3, kernel 3.
    Mb3K3,
    /// `2`: MobileNetV2 block, expansion 6, kernel 5.
    Mb6K5,
}

impl MacroOp {
    /// The op's digit in architecture codes.
    pub fn digit(self) -> char {
        match self {
            MacroOp::Identity => '0',
            MacroOp::Mb3K3 => '1',
            MacroOp::Mb6K5 => '2',
        }
    }

    /// The op's name in the benchmark's `layers` column.
    pub fn name(self) -> &'static str {
        match self {
            MacroOp::Identity => "Identity",
            MacroOp::Mb3K3 => "MB3_K3",
            MacroOp::Mb6K5 => "MB6_K5",
        }
    }
}

/// Searchable layers per stage.
const STAGES: [usize; 3] = [2, 3, 3];
/// Number of searchable layers.
pub const NB_MACRO_LAYERS: usize = 8;
/// Number of architecture codes.
pub const NB_MACRO_SIZE: usize = 6_561;
/// Stem width; each stage doubles it.
const INIT_CHANNELS: i64 = 32;
/// Width of the last 1×1 conv.
const HEAD_CHANNELS: i64 = 1280;
/// CIFAR-10.
const NUM_CLASSES: i64 = 10;
const RESOLUTION: i64 = 32;

/// Parses an 8-digit code over `0`/`1`/`2` (input → output order, e.g. `22212202`).
pub fn parse_nb_macro_arch(arch: &str) -> Result<[MacroOp; NB_MACRO_LAYERS], GenerateError> {
    let err = |reason: String| GenerateError::MacroArch {
        arch: arch.to_string(),
        reason,
    };
    let digits: Vec<char> = arch.chars().collect();
    if digits.len() != NB_MACRO_LAYERS {
        return Err(err(format!(
            "expected {NB_MACRO_LAYERS} digits, found {}",
            digits.len()
        )));
    }
    let mut ops = [MacroOp::Identity; NB_MACRO_LAYERS];
    for (op, d) in ops.iter_mut().zip(digits) {
        *op = match d {
            '0' => MacroOp::Identity,
            '1' => MacroOp::Mb3K3,
            '2' => MacroOp::Mb6K5,
            other => return Err(err(format!("'{other}' is not a layer choice (0, 1 or 2)"))),
        };
    }
    Ok(ops)
}

/// All 6,561 codes in the benchmark's enumeration order (`itertools.product('012', repeat=8)`:
/// `00000000`, `00000001`, …, `22222222`). The benchmark has no other index.
pub fn nb_macro_arch_strings() -> impl Iterator<Item = String> {
    (0..NB_MACRO_SIZE).map(|mut n| {
        let mut code = [b'0'; NB_MACRO_LAYERS];
        for d in code.iter_mut().rev() {
            *d = b'0' + (n % 3) as u8;
            n /= 3;
        }
        String::from_utf8(code.to_vec()).expect("ASCII digits")
    })
}

/// The code of the network the benchmark actually trained for `arch`: within a stage, identity
/// layers after the first are moved to the stage's end (the reference `get_real_arch`). They are
/// no-ops, so both codes name the same function and the same generated graph; 3,969 distinct
/// networks were trained for the 6,561 codes.
pub fn nb_macro_trained_arch(arch: &str) -> Result<String, GenerateError> {
    let ops = parse_nb_macro_arch(arch)?;
    let mut out = String::with_capacity(NB_MACRO_LAYERS);
    let mut start = 0;
    for len in STAGES {
        let stage = &ops[start..start + len];
        out.push(stage[0].digit());
        let rest = &stage[1..];
        out.extend(
            rest.iter()
                .filter(|&&op| op != MacroOp::Identity)
                .map(|op| op.digit()),
        );
        out.extend(
            rest.iter()
                .filter(|&&op| op == MacroOp::Identity)
                .map(|op| op.digit()),
        );
        start += len;
    }
    Ok(out)
}

/// The NAS-Bench-Macro network of `arch` (CIFAR-10: 32×32 input, 10 classes).
pub fn nb_macro_model(arch: &str) -> Result<ModelProto, GenerateError> {
    let ops = parse_nb_macro_arch(arch)?;
    let mut b = ModelBuilder::new("nas_bench_macro");
    let x = b.input("input", &[1, 3, RESOLUTION, RESOLUTION]);
    let stem = b.conv("stem.0", &x, ConvSpec::same(3, INIT_CHANNELS, 3, 1));
    let stem = b.batch_norm("stem.1", &stem, INIT_CHANNELS);
    let mut feature = b.relu("stem.2", &stem);
    let mut channels = INIT_CHANNELS;
    let mut layer = 0;
    for len in STAGES {
        for idx in 0..len {
            let (inp, stride) = (channels, if idx == 0 { 2 } else { 1 });
            if idx == 0 {
                channels *= 2;
            }
            let name = format!("features.{layer}");
            feature = match ops[layer] {
                MacroOp::Identity => identity(&mut b, &name, &feature, inp, channels, stride),
                MacroOp::Mb3K3 => {
                    inverted_residual(&mut b, &name, &feature, inp, channels, stride, 3, 3)
                }
                MacroOp::Mb6K5 => {
                    inverted_residual(&mut b, &name, &feature, inp, channels, stride, 6, 5)
                }
            };
            layer += 1;
        }
    }
    let head = b.conv(
        "out.0",
        &feature,
        ConvSpec::same(channels, HEAD_CHANNELS, 1, 1),
    );
    let head = b.batch_norm("out.1", &head, HEAD_CHANNELS);
    let head = b.relu("out.2", &head);
    let pooled = b.global_avg_pool("out.3", &head);
    let flat = b.flatten("flatten", &pooled);
    let logits = b.linear("classifier", &flat, HEAD_CHANNELS, NUM_CLASSES);
    b.output(&logits, &[1, NUM_CLASSES]);
    Ok(b.finish(&format!(
        "NAS-Bench-Macro network {arch} (CIFAR-10), generated by archdb"
    )))
}

/// `Identity(inp, oup, stride)`: the input itself, or `Conv1×1(stride)-BN` when it must change
/// the stride or width.
fn identity(b: &mut ModelBuilder, name: &str, x: &str, inp: i64, oup: i64, stride: i64) -> String {
    if stride == 1 && inp == oup {
        return x.to_string();
    }
    let y = b.conv(
        &format!("{name}.downsample.0"),
        x,
        ConvSpec::same(inp, oup, 1, stride),
    );
    b.batch_norm(&format!("{name}.downsample.1"), &y, oup)
}

/// `InvertedResidual(inp, oup, stride, t, k)` with `t > 1` (the only expansions used).
#[allow(clippy::too_many_arguments)]
fn inverted_residual(
    b: &mut ModelBuilder,
    name: &str,
    x: &str,
    inp: i64,
    oup: i64,
    stride: i64,
    t: i64,
    k: i64,
) -> String {
    let hidden = inp * t;
    let n = |i: usize| format!("{name}.conv.{i}");
    let y = b.conv(&n(0), x, ConvSpec::same(inp, hidden, 1, 1));
    let y = b.batch_norm(&n(1), &y, hidden);
    let y = b.relu(&n(2), &y);
    let dw = ConvSpec {
        groups: hidden,
        ..ConvSpec::same(hidden, hidden, k, stride)
    };
    let y = b.conv(&n(3), &y, dw);
    let y = b.batch_norm(&n(4), &y, hidden);
    let y = b.relu(&n(5), &y);
    let y = b.conv(&n(6), &y, ConvSpec::same(hidden, oup, 1, 1));
    let y = b.batch_norm(&n(7), &y, oup);
    if inp == oup && stride == 1 {
        b.add(&format!("{name}.add"), &y, x)
    } else {
        y
    }
}

/// FLOPs as NAS-Bench-Macro counts them (`count_FLOPs` in the reference `utils.py`): the
/// multiply-accumulates of every convolution and linear layer, without biases, BN, activations,
/// pools or additions. Computed from a computation graph's nodes.
pub fn nb_macro_counted_flops(graph: &CompGraph) -> u64 {
    graph
        .graph
        .node_weights()
        .map(|n| match n.op_type.as_str() {
            "Conv" if n.bias => n.macs - out_elements(n),
            "Conv" => n.macs,
            "Gemm" if n.bias => n.macs - out_elements(n),
            "Gemm" => n.macs,
            _ => 0,
        })
        .sum()
}

fn out_elements(n: &crate::graph::CgNode) -> u64 {
    n.output_shape
        .as_deref()
        .map_or(0, |s| s.iter().map(|&d| d.max(0) as u64).product())
}

/// Checks every row of `nasbench_macro_cifar10.csv` (decompressed text) against generated
/// networks: the ingested graph's `summary.params` against `params`, and
/// [`nb_macro_counted_flops`] against `flops`. Returns (params check, FLOPs check).
pub fn verify_nb_macro_csv(
    csv: &str,
) -> Result<(super::Verification, super::Verification), String> {
    use prost::Message;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().ok_or("empty CSV")?.split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("no column {name}"))
    };
    let (i_arch, i_params, i_flops) = (col("arch")?, col("params")?, col("flops")?);
    let mut params = super::Verification::default();
    let mut flops = super::Verification::default();
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let arch = fields[i_arch];
        let official_params: u64 = fields[i_params].parse().map_err(|e| format!("{e}"))?;
        let official_flops: u64 = fields[i_flops].parse().map_err(|e| format!("{e}"))?;
        let bytes = nb_macro_model(arch)
            .map_err(|e| e.to_string())?
            .encode_to_vec();
        let g = crate::ingest::analyse(bytes.into(), crate::graph::BuildOptions::default())
            .map_err(|e| e.to_string())?
            .graph;
        let p = g.summary.params;
        params.record(
            arch,
            "params",
            p as f64,
            official_params as f64,
            p == official_params,
        );
        let f = nb_macro_counted_flops(&g);
        flops.record(
            arch,
            "flops",
            f as f64,
            official_flops as f64,
            f == official_flops,
        );
    }
    Ok((params, flops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn ingest(arch: &str) -> CompGraph {
        let model = nb_macro_model(arch).unwrap();
        crate::ingest::analyse(
            model.encode_to_vec().into(),
            crate::graph::BuildOptions::default(),
        )
        .unwrap()
        .graph
    }

    /// `(arch, params, flops)` from the official `nas-bench-macro_cifar10.json`.
    const OFFICIAL: &[(&str, u64, u64)] = &[
        ("00000000", 387_882, 7_713_280),
        ("00000001", 791_594, 14_115_328),
        ("22212202", 1_985_514, 85_164_544),
    ];

    #[test]
    fn params_and_flops_match_official() {
        for &(arch, params, flops) in OFFICIAL {
            let g = ingest(arch);
            assert_eq!(g.summary.params, params, "{arch} params");
            assert_eq!(nb_macro_counted_flops(&g), flops, "{arch} flops");
            assert_eq!(g.summary.unknown_shapes, 0);
        }
    }

    #[test]
    fn structure() {
        let g = ingest("22222222");
        // 8 blocks × 3 convs + stem + head; depthwise convs are labelled as such.
        assert_eq!(g.summary.op_counts["DepthwiseConv"], 8);
        assert_eq!(g.summary.op_counts["Conv"], 8 * 2 + 2);
        // Residual adds where stride 1 and width unchanged: 1 + 2 + 2.
        assert_eq!(g.summary.op_counts["Add"], 5);
        let gap = g
            .graph
            .node_weights()
            .find(|n| n.label == "GlobalAvgPool")
            .unwrap();
        assert_eq!(gap.input_shape, Some(vec![1, 1280, 4, 4]));
        // Identities off the first layer of a stage emit nothing: same graph as the trained code.
        let a = ingest("10201020");
        let b = ingest(&nb_macro_trained_arch("10201020").unwrap());
        assert_eq!(nb_macro_trained_arch("10201020").unwrap(), "10210020");
        assert_eq!(a.summary, b.summary);
    }

    #[test]
    fn enumeration_and_parsing() {
        let all: Vec<String> = nb_macro_arch_strings().collect();
        assert_eq!(all.len(), NB_MACRO_SIZE);
        assert_eq!(all[0], "00000000");
        assert_eq!(all[1], "00000001");
        assert_eq!(all[NB_MACRO_SIZE - 1], "22222222");
        let trained: std::collections::HashSet<String> = all
            .iter()
            .map(|a| nb_macro_trained_arch(a).unwrap())
            .collect();
        assert_eq!(trained.len(), 3_969);
        for bad in [
            "",
            "0000000",
            "000000000",
            "00000003",
            "0000000a",
            "0000 000",
        ] {
            assert!(nb_macro_model(bad).is_err(), "{bad}");
        }
    }

    /// All 6,561 codes against `/work/shared/data/nasbench_macro` (run with `--ignored`; set
    /// `NB_MACRO_CSV` to another copy).
    #[test]
    #[ignore = "needs the shared NAS-Bench-Macro table"]
    fn all_archs_match_official_params_and_flops() {
        let path = std::env::var("NB_MACRO_CSV").unwrap_or_else(|_| {
            "/work/shared/data/nasbench_macro/nasbench_macro_cifar10.csv.gz".into()
        });
        let csv = crate::generate::tests_support::gunzip(&path);
        let start = std::time::Instant::now();
        let (params, flops) = verify_nb_macro_csv(&csv).unwrap();
        println!(
            "NB-Macro params: {}/{} match (max |diff| {}), FLOPs: {}/{} match (max |diff| {}); \
             {:.1?}; mismatches {:?} {:?}",
            params.matched,
            params.compared,
            params.max_abs_diff,
            flops.matched,
            flops.compared,
            flops.max_abs_diff,
            start.elapsed(),
            params.mismatches,
            flops.mismatches
        );
        assert_eq!(params.compared, NB_MACRO_SIZE);
        assert_eq!(params.matched, params.compared);
        assert_eq!(flops.matched, flops.compared);
    }
}
