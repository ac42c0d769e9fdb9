//! `/v1/architectures`: upload ONNX models, list, fetch, export and delete architectures.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Error, Problem, Result, blocking};
use super::extract::{MultiQuery, Path, Query};
use crate::db::architectures::{
    self as store, Alias, Architecture, ListFilter, NewArchitecture, SortKey, StoredGraph,
};
use crate::graph::{self, BuildOptions};
use crate::ingest;

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(create_architecture, list_architectures))
        .routes(routes!(get_architecture, delete_architecture))
        .routes(routes!(get_graph))
        .routes(routes!(get_onnx))
}

/// Uploads an ONNX model. The body is the raw ONNX file (`application/octet-stream`), or
/// `multipart/form-data` with a `file` part and optional `name`, `family`, `source` fields.
/// Answers 201 with the new architecture, or 200 with the existing one when the same
/// computation graph (same canonical hash) is already stored.
#[utoipa::path(post, path = "/v1/architectures", tag = "architectures",
    params(NewArchitecture),
    request_body(content(
        (Vec<u8> = "application/octet-stream"),
        (UploadForm = "multipart/form-data"))),
    responses(
        (status = 201, description = "stored", body = Architecture),
        (status = 200, description = "already stored (same graph hash)", body = Architecture),
        (status = 400, description = "not ONNX, truncated or empty", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body or node count over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid graph (cycle, dangling input), or a `source` reserved for importers", body = Problem, content_type = "application/problem+json")))]
async fn create_architecture(
    State(ctx): State<ApiContext>,
    Query(mut meta): Query<NewArchitecture>,
    request: Request,
) -> Result<Response> {
    let body = if super::has_content_type(&request, "multipart/form-data") {
        read_multipart(Multipart::from_request(request, &ctx).await?, &mut meta).await?
    } else {
        Bytes::from_request(request, &ctx).await?
    };
    check_source(&meta)?;
    let options = BuildOptions {
        max_nodes: ctx.config.max_nodes,
    };
    let ingested = blocking(move || ingest::ingest(body, options)).await??;
    let (arch, created) = store::insert(&ctx.pool, &ingested, &meta).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/architectures/{}", arch.id);
    Ok((status, [(header::LOCATION, location)], Json(arch)).into_response())
}

/// Refuses a `source` that names an alias namespace the importers own (422).
pub(super) fn check_source(meta: &NewArchitecture) -> Result<()> {
    match meta
        .source
        .as_deref()
        .filter(|s| crate::import::is_reserved_namespace(s))
    {
        Some(source) => Err(Error::Unprocessable(format!(
            "source `{source}` is an alias namespace reserved for `archdb import`; choose another"
        ))),
        None => Ok(()),
    }
}

/// The multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the multipart body for OpenAPI only
#[serde(deny_unknown_fields)] // `read_form` refuses other fields
struct UploadForm {
    /// The ONNX file.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    file: Vec<u8>,
    // A form field is text when present: optional, never null.
    #[schema(nullable = false)]
    name: Option<String>,
    #[schema(nullable = false)]
    family: Option<String>,
    #[schema(schema_with = source_schema)]
    source: Option<String>,
}

async fn read_multipart(form: Multipart, meta: &mut NewArchitecture) -> Result<Bytes> {
    let mut file = None;
    read_form(form, meta, |_, bytes| {
        if file.is_some() {
            return Err(Error::BadRequest(
                "the multipart form has more than one `file` part (POST /v1/architectures/batch \
                 takes several)"
                    .into(),
            ));
        }
        file = Some(bytes);
        Ok(())
    })
    .await?;
    file.ok_or_else(|| Error::BadRequest("the multipart form has no `file` part".into()))
}

/// Reads an upload form: `name`, `family` and `source` into `meta` (each at most once), and each
/// `file` part, with its filename, to `on_file` as it arrives (a batch refuses one too many
/// before reading on).
pub(super) async fn read_form(
    mut form: Multipart,
    meta: &mut NewArchitecture,
    mut on_file: impl FnMut(Option<String>, Bytes) -> Result<()>,
) -> Result<()> {
    let mut given = std::collections::HashSet::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| Error::Rejection(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().map(str::to_string);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| Error::Rejection(e.status(), e.body_text()))?;
        let field = match name.as_str() {
            "file" => {
                on_file(filename, bytes)?;
                continue;
            }
            "name" => &mut meta.name,
            "family" => &mut meta.family,
            "source" => &mut meta.source,
            _ => {
                return Err(Error::BadRequest(format!(
                    "unknown form field `{name}` (expected file, name, family, source)"
                )));
            }
        };
        // A second value would silently replace the first.
        if !given.insert(name.clone()) {
            return Err(Error::BadRequest(format!(
                "form field `{name}` is given more than once"
            )));
        }
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::BadRequest(format!("form field `{name}` is not UTF-8")))?;
        *field = Some(text);
    }
    Ok(())
}

/// Listing filters; every filter narrows the result.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    family: Option<String>,
    /// Op label that must occur in the graph (repeatable: all must occur), e.g. `DepthwiseConv`.
    #[serde(default)]
    op: Vec<String>,
    min_params: Option<i64>,
    max_params: Option<i64>,
    min_macs: Option<i64>,
    max_macs: Option<i64>,
    /// Sort key (default `id`); a `-` prefix sorts descending.
    #[param(inline)]
    sort: Option<Sort>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page (empty: the first page).
    #[param(pattern = r"^(-?[0-9]{1,18}\.-?[0-9]{1,18})?$")]
    cursor: Option<String>,
}

/// A listing order: a sort key, ascending or (with `-`) descending.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
enum Sort {
    #[serde(rename = "id")]
    Id,
    #[serde(rename = "-id")]
    IdDesc,
    #[serde(rename = "params")]
    Params,
    #[serde(rename = "-params")]
    ParamsDesc,
    #[serde(rename = "macs")]
    Macs,
    #[serde(rename = "-macs")]
    MacsDesc,
    #[serde(rename = "depth")]
    Depth,
    #[serde(rename = "-depth")]
    DepthDesc,
    #[serde(rename = "num_nodes")]
    NumNodes,
    #[serde(rename = "-num_nodes")]
    NumNodesDesc,
}

impl Sort {
    /// The key and whether it sorts descending.
    fn key(self) -> (SortKey, bool) {
        match self {
            Sort::Id => (SortKey::Id, false),
            Sort::IdDesc => (SortKey::Id, true),
            Sort::Params => (SortKey::Params, false),
            Sort::ParamsDesc => (SortKey::Params, true),
            Sort::Macs => (SortKey::Macs, false),
            Sort::MacsDesc => (SortKey::Macs, true),
            Sort::Depth => (SortKey::Depth, false),
            Sort::DepthDesc => (SortKey::Depth, true),
            Sort::NumNodes => (SortKey::NumNodes, false),
            Sort::NumNodesDesc => (SortKey::NumNodes, true),
        }
    }
}

/// A page of architectures.
#[derive(Serialize, ToSchema)]
struct ArchitecturePage {
    items: Vec<Architecture>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// Lists architectures with filters, sorting and cursor pagination.
#[utoipa::path(get, path = "/v1/architectures", tag = "architectures", params(ListQuery),
    responses((status = 200, body = ArchitecturePage),
              (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_architectures(
    State(ctx): State<ApiContext>,
    MultiQuery(q): MultiQuery<ListQuery>,
) -> Result<Json<ArchitecturePage>> {
    let (sort, descending) = q.sort.unwrap_or(Sort::Id).key();
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Error::BadRequest("limit must be between 1 and 1000".into()));
    }
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let filter = ListFilter {
        family: q.family,
        ops: q.op,
        min_params: q.min_params,
        max_params: q.max_params,
        min_macs: q.min_macs,
        max_macs: q.max_macs,
        sort,
        descending,
        after,
        limit,
    };
    let (items, next) = store::list(&ctx.pool, &filter).await?;
    Ok(Json(ArchitecturePage {
        items,
        next_cursor: next.map(|(v, id)| format!("{v}.{id}")),
    }))
}

fn parse_cursor(c: &str) -> Result<(i64, i64)> {
    let bad = || {
        Error::BadRequest(format!(
            "invalid cursor `{c}`: pass next_cursor from the previous page"
        ))
    };
    let (v, id) = c.rsplit_once('.').ok_or_else(bad)?;
    Ok((
        v.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

/// An architecture with its aliases.
#[derive(Serialize, ToSchema)]
struct ArchitectureDetail {
    #[serde(flatten)]
    architecture: Architecture,
    aliases: Vec<Alias>,
}

async fn find(ctx: &ApiContext, id: i64) -> Result<Architecture> {
    store::get(&ctx.pool, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no architecture with id {id}")))
}

/// One architecture.
#[utoipa::path(get, path = "/v1/architectures/{id}", tag = "architectures", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = ArchitectureDetail), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_architecture(
    State(ctx): State<ApiContext>,
    Path(id): Path<i64>,
) -> Result<Json<ArchitectureDetail>> {
    let architecture = find(&ctx, id).await?;
    let aliases = store::aliases(&ctx.pool, architecture.id).await?;
    Ok(Json(ArchitectureDetail {
        architecture,
        aliases,
    }))
}

/// Deletes an architecture with its graph, ONNX and aliases.
#[utoipa::path(delete, path = "/v1/architectures/{id}", tag = "architectures", params(("id" = i64, Path, minimum = 1)),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn delete_architecture(
    State(ctx): State<ApiContext>,
    Path(id): Path<i64>,
) -> Result<StatusCode> {
    if store::delete(&ctx.pool, id).await? {
        // This process at once; the others on the NOTIFY the delete committed.
        ctx.predictors.forget(id);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound(format!("no architecture with id {id}")))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct GraphQuery {
    /// `json` (default) or `dot` (Graphviz).
    #[param(inline)]
    format: Option<GraphFormat>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum GraphFormat {
    #[default]
    Json,
    Dot,
}

/// The computation graph: nodes with features (topological order) and edges; `?format=dot`
/// renders it for Graphviz.
#[utoipa::path(get, path = "/v1/architectures/{id}/graph", tag = "architectures", params(("id" = i64, Path, minimum = 1), GraphQuery),
    responses((status = 200, description = "the graph (JSON), or Graphviz with `format=dot`", content((StoredGraph = "application/json"), (String = "text/vnd.graphviz"))),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_graph(
    State(ctx): State<ApiContext>,
    Path(id): Path<i64>,
    Query(q): Query<GraphQuery>,
) -> Result<Response> {
    let arch = find(&ctx, id).await?;
    let stored = store::graph(&ctx.pool, arch.id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("architecture {} has no graph", arch.id)))?;
    Ok(match q.format.unwrap_or_default() {
        GraphFormat::Json => Json(stored).into_response(),
        GraphFormat::Dot => (
            [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
            graph::to_dot(&stored.nodes, &stored.edges),
        )
            .into_response(),
    })
}

/// The stored ONNX model (weight payloads stripped, dims kept).
#[utoipa::path(get, path = "/v1/architectures/{id}/onnx", tag = "architectures", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_onnx(State(ctx): State<ApiContext>, Path(id): Path<i64>) -> Result<Response> {
    let arch = find(&ctx, id).await?;
    let bytes = store::onnx(&ctx.pool, arch.id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("architecture {} has no ONNX", arch.id)))?;
    let disposition = format!("attachment; filename=\"architecture-{}.onnx\"", arch.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

/// The schema of an upload's `source`: a string naming no namespace the importers fill.
pub fn source_schema() -> utoipa::openapi::Object {
    use crate::import::{RESERVED_NAMESPACES, RESERVED_PREFIX};
    // ASCII case-insensitive without flags, which JSON Schema patterns lack.
    let any_case = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                c if c.is_ascii_alphabetic() => {
                    format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                }
                // Digits, `-` and `:`: literal outside a character class.
                c => c.to_string(),
            })
            .collect()
    };
    let names: Vec<String> = RESERVED_NAMESPACES.iter().map(|n| any_case(n)).collect();
    // No NUL either, which PostgreSQL text cannot hold (400).
    let pattern = format!(
        "^(?!\\s*(?:{})\\s*$)(?!\\s*{})[^\\u0000]*$",
        names.join("|"),
        any_case(RESERVED_PREFIX)
    );
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(
            "Where the model comes from (e.g. `torchvision`); not a namespace the importers \
             fill (`nb201`, `nb201-arch`, `nb-macro`, `lemur`, `naslib-zc`, `nas-bench-graph`, \
             `naslib:*`, in any case); no NUL.",
        ))
        .pattern(Some(pattern))
        .build()
}
