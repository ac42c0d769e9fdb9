//! Architectures as text, for language models: ONNX-Net's `chain_slim` encoding of the ONNX
//! graph itself (Qin et al. 2025, `shiwenqin/ONNX-Net@4b9e9a6:src/process/utils.py`) with its
//! ablation variants, and a one-line-per-node rendering of the computation graph that carries
//! the CG's features (MACs, params). `docs/agents.md` describes the formats and their cost.

mod cg;
mod chain;

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use cg::render_cg;

use crate::graph::{self, BuildOptions};
use crate::onnx::{OnnxError, proto::ModelProto};

/// A text encoding. The `chain_slim*` ones are ONNX-Net's (the paper's default and the four of
/// its ablation, Table 6); `cg` is archdb's computation graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Ops with their inputs (`Param[dims]`, input shapes, `ValueN`), attributes and output
    /// shapes: what ONNX-Net trains on.
    #[default]
    ChainSlim,
    /// Op types only.
    ChainSlimBase,
    /// Op types with their inputs (connectivity and weight shapes).
    ChainSlimInput,
    /// Op types with their attributes.
    ChainSlimParam,
    /// Op types with the output shapes of chains and multi-input nodes.
    ChainSlimOutshape,
    /// The computation graph: one line per node with its features (params, MACs); fewer
    /// characters than `chain_slim`.
    Cg,
}

impl Variant {
    pub const ALL: [Variant; 6] = [
        Variant::ChainSlim,
        Variant::ChainSlimBase,
        Variant::ChainSlimInput,
        Variant::ChainSlimParam,
        Variant::ChainSlimOutshape,
        Variant::Cg,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Variant::ChainSlim => "chain_slim",
            Variant::ChainSlimBase => "chain_slim_base",
            Variant::ChainSlimInput => "chain_slim_input",
            Variant::ChainSlimParam => "chain_slim_param",
            Variant::ChainSlimOutshape => "chain_slim_outshape",
            Variant::Cg => "cg",
        }
    }
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Variant::ALL.iter().map(|v| v.as_str()).collect();
                format!("unknown text variant `{s}` ({})", names.join(", "))
            })
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    pub variant: Variant,
    /// Print scalar attributes (`group=32`, `epsilon=1e-05`), which ONNX-Net drops: its
    /// formatter reads them from the list fields, gets `[]` and discards them. Off by default,
    /// so that texts equal ONNX-Net's.
    pub scalars: bool,
}

/// The text of a model in `variant`, ONNX-Net's scalar-attribute quirk kept.
pub fn render_text(model: &ModelProto, variant: Variant) -> Result<String, OnnxError> {
    render(
        model,
        TextOptions {
            variant,
            scalars: false,
        },
    )
}

/// The text of a model. `chain_slim*` render the ONNX graph as it is (shapes inferred as for the
/// CG, batch 1); `cg` builds the computation graph first.
pub fn render(model: &ModelProto, options: TextOptions) -> Result<String, OnnxError> {
    match options.variant {
        Variant::Cg => {
            let mut model = model.clone();
            let cg = graph::build(&mut model, BuildOptions::default())?;
            let nodes: Vec<_> = cg.graph.node_weights().cloned().collect();
            Ok(render_cg(&nodes, &cg.edge_list()))
        }
        variant => chain::render(model, variant, options.scalars),
    }
}

/// Size of a text for a language model's budget: characters and whitespace-separated tokens
/// (a sub-word tokenizer counts more tokens than whitespace does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TextSize {
    pub chars: usize,
    pub whitespace_tokens: usize,
}

impl TextSize {
    pub fn of(text: &str) -> Self {
        Self {
            chars: text.chars().count(),
            whitespace_tokens: text.split_whitespace().count(),
        }
    }
}
