//! `archdb export FORMAT`: archdb's data written in other projects' formats.

pub mod onnx_bench;

/// What `archdb export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// ONNX-Bench: one ONNX file per architecture with its accuracy in `metadata_props`.
    OnnxBench,
}
