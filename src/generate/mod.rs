//! ONNX generators for NAS benchmark search spaces: every architecture of NAS-Bench-201 (the
//! NATS-Bench topology space) and of NAS-Bench-Macro, and any cell of NAS-Bench-101,
//! NAS-Bench-301 (DARTS) and TransNAS-Bench-101 (micro and macro), as the real network it names,
//! written with the same prost types the parser reads, so that benchmark tables can be joined to
//! computation graphs. See `docs/search-spaces.md` for the networks layer by layer and how they
//! were checked against the official and NASLib parameter and FLOP counts.

#![warn(missing_docs)]
pub mod builder;
pub mod cli;
pub mod naslib;
pub mod nb101;
pub mod nb201;
pub mod nb301;
pub mod nb_macro;
pub mod transnas;

use std::path::Path;

use prost::Message;

use crate::onnx::proto::ModelProto;

pub use nb_macro::{
    MacroOp, nb_macro_arch_strings, nb_macro_counted_flops, nb_macro_model, parse_nb_macro_arch,
    verify_nb_macro_csv,
};
pub use nb101::{Nb101Op, Nb101Spec, nb101_model};
pub use nb201::{
    NB201_DATASETS, Nb201Op, nb201_arch_strings, nb201_counted_flops, nb201_model,
    parse_nb201_arch, verify_nb201_csv,
};
pub use nb301::{DartsGenotype, DartsOp, Nb301Variant, nb301_model};
pub use transnas::{TransNasArch, TransNasTask, transnas_model};

/// Why an architecture string does not name a network of its search space.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Not an NB201 cell string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`.
    #[error("invalid NAS-Bench-201 architecture '{arch}': {reason}")]
    Nb201Arch {
        /// The string given.
        arch: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not an 8-digit NAS-Bench-Macro code over `0`/`1`/`2`.
    #[error("invalid NAS-Bench-Macro architecture '{arch}': {reason}")]
    MacroArch {
        /// The string given.
        arch: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a valid NAS-Bench-101 cell (`{"matrix": 7×7 upper-triangular 0/1, "ops": […]}`).
    #[error("invalid NAS-Bench-101 spec: {0}")]
    Nb101Spec(String),
    /// Not a valid DARTS / NAS-Bench-301 genotype.
    #[error("invalid DARTS genotype: {0}")]
    DartsGenotype(String),
    /// Not a TransNAS-Bench-101 architecture string (`64-41414-3_13_233`, `64-1242-basic`).
    #[error("invalid TransNAS-Bench-101 architecture '{arch}': {reason}")]
    TransNasArch {
        /// The string given.
        arch: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A generator parameter outside what the network supports (classes, resolution).
    #[error("invalid generator option: {0}")]
    Option(String),
}

/// Encodes a model as ONNX protobuf bytes and writes it to `path`: the files `archdb generate`
/// produces, readable by `archdb ingest` and other ONNX tools.
pub fn write_model(model: &ModelProto, path: impl AsRef<Path>) -> std::io::Result<()> {
    std::fs::write(path, model.encode_to_vec())
}

/// Whether `count / 1e6` written with 6 significant digits equals `official_m`, a value that was
/// itself printed with 6 significant digits (Python `%.6g`). The NB201 tables publish parameters
/// in millions that way, so this is what "exactly equal" can mean for them: exact below 1 M
/// parameters, to the nearest 10 above.
pub fn equal_at_6_significant(count: u64, official_m: f64) -> bool {
    format!("{:.5e}", count as f64 / 1e6) == format!("{official_m:.5e}")
}

/// FLOPs as NASLib's zero-cost `flops` counts them (tensorwatch's `ModelStats`, a torchstat
/// fork, summed over the leaf modules that run): Conv multiply-accumulates plus bias additions,
/// Linear `in × out`, BatchNorm 2 per element (1 without affine parameters), ReLU 1 per input
/// element, pools `k²` per output element, `AdaptiveAvgPool2d(1)` `(H + 1)(W + 1)` per channel;
/// additions, concatenations, slices and `torch.mean` cost nothing. Computed from a computation
/// graph's nodes; the NAS-Bench-Suite-Zero `flops` of NB101, NB301 and TransNAS samples are this
/// count of the generated networks (see `docs/search-spaces.md`).
pub fn naslib_counted_flops(graph: &crate::graph::CompGraph) -> u64 {
    let elements = |shape: Option<&Vec<i64>>| -> u64 {
        shape.map_or(0, |s| s.iter().map(|&d| d.max(0) as u64).product())
    };
    graph
        .graph
        .node_weights()
        .map(|n| match n.op_type.as_str() {
            "Conv" => n.macs,
            "Gemm" if n.bias => n.macs - elements(n.output_shape.as_ref()),
            "Gemm" => n.macs,
            "BatchNormalization" => {
                elements(n.output_shape.as_ref()) * if n.params > 0 { 2 } else { 1 }
            }
            "Relu" => elements(n.input_shape.as_ref()),
            "MaxPool" | "AveragePool" => {
                elements(n.output_shape.as_ref()) * n.kernel.iter().product::<i64>().max(0) as u64
            }
            "GlobalAveragePool" => match n.input_shape.as_deref() {
                Some([_, c, h, w]) => (c * (h + 1) * (w + 1)).max(0) as u64,
                _ => 0,
            },
            _ => 0,
        })
        .sum()
}

/// Result of checking generated networks against an official table.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    /// Rows (architecture × column) compared.
    pub compared: usize,
    /// Rows where the generated figure equals the official one (at the table's precision).
    pub matched: usize,
    /// Largest |generated − official|, in the table's unit (NB201 parameters are compared in
    /// parameters, although its table is in millions).
    pub max_abs_diff: f64,
    /// Every mismatch: `(arch, column, generated, official)`.
    pub mismatches: Vec<(String, String, f64, f64)>,
}

impl Verification {
    /// Records one comparison.
    pub fn record(&mut self, arch: &str, column: &str, ours: f64, official: f64, equal: bool) {
        self.compared += 1;
        self.max_abs_diff = self.max_abs_diff.max((ours - official).abs());
        if equal {
            self.matched += 1;
        } else {
            self.mismatches
                .push((arch.to_string(), column.to_string(), ours, official));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use prost::Message;

    /// The computation graph of a generated model, through the encoder and the parser.
    pub fn ingest(model: &crate::onnx::proto::ModelProto) -> crate::graph::CompGraph {
        crate::ingest::analyse(
            model.encode_to_vec().into(),
            crate::graph::BuildOptions::default(),
        )
        .expect("generated model ingests")
        .graph
    }

    /// Asserts a NASLib sample's `params` (millions) and `flops` (MFLOPs) exactly, and that
    /// every op and shape of the graph is known.
    pub fn assert_naslib_counts(
        g: &crate::graph::CompGraph,
        params_m: f64,
        flops_m: f64,
        what: &str,
    ) {
        assert_eq!(g.summary.params, (params_m * 1e6).round() as u64, "{what}");
        assert_eq!(
            super::naslib_counted_flops(g),
            (flops_m * 1e6).round() as u64,
            "{what}"
        );
        assert_eq!(g.summary.unknown_shapes, 0, "{what}");
        assert!(g.summary.unknown_ops.is_empty(), "{what}");
    }

    /// The text of a gzip file, through the system `gzip` (archdb has no gzip dependency).
    pub fn gunzip(path: &str) -> String {
        let out = std::process::Command::new("gzip")
            .args(["-dc", path])
            .output()
            .expect("run gzip");
        assert!(out.status.success(), "gzip -dc {path} failed");
        String::from_utf8(out.stdout).expect("UTF-8 CSV")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_model_round_trips_through_the_parser() {
        let model = nb_macro_model("22212202").unwrap();
        let path = std::env::temp_dir().join(format!("archdb-gen-{}.onnx", std::process::id()));
        write_model(&model, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let decoded = crate::onnx::decode_model(bytes.into()).unwrap();
        assert_eq!(decoded, model);
        assert_eq!(crate::onnx::default_opset(&decoded), Some(builder::OPSET));
    }

    #[test]
    fn six_significant_digits() {
        assert!(equal_at_6_significant(129_306, 0.129306));
        assert!(equal_at_6_significant(1_073_466, 1.07347));
        assert!(!equal_at_6_significant(1_073_456, 1.07347));
        assert!(!equal_at_6_significant(129_307, 0.129306));
    }
}
