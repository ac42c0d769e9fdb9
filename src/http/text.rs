//! `GET /v1/architectures/{id}/text`: an architecture as text for language models
//! (`crate::text`, `docs/agents.md`).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Error, Problem, Result, blocking};
use super::extract::{Path, Query};
use crate::db::architectures as store;
use crate::text::{self, TextOptions, TextSize, Variant};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new().routes(routes!(get_text))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TextQuery {
    /// `chain_slim` (default: ONNX-Net's encoding of the ONNX graph), its ablation variants
    /// `chain_slim_base` (op types), `chain_slim_input` (+ inputs), `chain_slim_param`
    /// (+ attributes), `chain_slim_outshape` (+ output shapes), or `cg` (the computation graph,
    /// one line per node with shapes, params and MACs; fewer characters).
    #[param(inline)]
    variant: Option<Variant>,
    /// Also print scalar attributes (`group=32`), which ONNX-Net drops (default false).
    scalars: Option<bool>,
}

/// The architecture as text: ONNX-Net's `chain_slim` encoding of its stored ONNX graph (or an
/// ablation variant), or its computation graph one node per line (`variant=cg`). The
/// `x-text-chars` and `x-text-whitespace-tokens` headers give its size.
#[utoipa::path(get, path = "/v1/architectures/{id}/text", tag = "architectures",
    params(("id" = i64, Path, minimum = 1), TextQuery),
    responses(
        (status = 200, description = "the text", content_type = "text/plain", body = String,
         headers(("x-text-chars" = usize, description = "characters"),
                 ("x-text-whitespace-tokens" = usize, description = "whitespace-separated tokens"))),
        (status = 400, description = "unknown variant or parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_text(
    State(ctx): State<ApiContext>,
    Path(id): Path<i64>,
    Query(q): Query<TextQuery>,
) -> Result<Response> {
    let options = TextOptions {
        variant: q.variant.unwrap_or_default(),
        scalars: q.scalars.unwrap_or(false),
    };
    let missing = || Error::NotFound(format!("no architecture with id {id}"));
    let body = if options.variant == Variant::Cg {
        let graph = store::graph(&ctx.pool, id).await?.ok_or_else(missing)?;
        text::render_cg(&graph.nodes, &graph.edges)
    } else {
        let bytes = store::onnx(&ctx.pool, id).await?.ok_or_else(missing)?;
        blocking(move || {
            let model = crate::onnx::decode_model(bytes.into())?;
            text::render(&model, options)
        })
        .await??
    };
    let size = TextSize::of(&body);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::HeaderName::from_static("x-text-chars"),
                size.chars.to_string(),
            ),
            (
                header::HeaderName::from_static("x-text-whitespace-tokens"),
                size.whitespace_tokens.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}
