//! Architecture storage: the architecture row, its computation graph, the stripped ONNX and its
//! aliases, written in one transaction per upload and deduplicated by canonical graph hash.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;

use crate::graph::CgNode;
use crate::ingest::Ingested;

/// A stored architecture.
#[derive(Debug, Clone, Serialize, Deserialize, FromRow, ToSchema)]
pub struct Architecture {
    pub id: i64,
    /// Canonical Weisfeiler–Lehman hash of the computation graph (`wl2:<sha256>`).
    pub graph_hash: String,
    pub name: Option<String>,
    pub family: Option<String>,
    pub source: Option<String>,
    /// Trainable parameters (floating-point weights, BatchNorm running statistics excluded).
    pub params: i64,
    /// Multiply-accumulates of one forward pass at batch 1 (onnx-tool conventions).
    pub macs: i64,
    pub num_nodes: i32,
    pub num_edges: i32,
    pub depth: i32,
    pub input_shape: Vec<i64>,
    /// Histogram of computation-graph op labels.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub op_counts: sqlx::types::Json<BTreeMap<String, u64>>,
    pub created_at: DateTime<Utc>,
}

/// Descriptive fields given with an upload.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NewArchitecture {
    /// Display name; also recorded as an alias in the `source` namespace (default `upload`).
    pub name: Option<String>,
    /// Model family (e.g. `resnet`, `nb201`).
    pub family: Option<String>,
    /// Where the model comes from (e.g. `torchvision`, `lemur`).
    pub source: Option<String>,
}

/// The selected columns of [`Architecture`], as a macro so queries stay `&'static str`.
macro_rules! columns {
    () => {
        "id, graph_hash, name, family, source, params, macs, num_nodes, num_edges, depth, input_shape, op_counts, created_at"
    };
}

/// Stores an ingested model unless its graph hash exists. Returns the architecture and whether
/// it was created. Everything is written in one transaction: a failure leaves nothing behind.
pub async fn insert(
    pool: &PgPool,
    model: &Ingested,
    meta: &NewArchitecture,
) -> sqlx::Result<(Architecture, bool)> {
    let mut tx = pool.begin().await?;
    let inserted = insert_in(&mut tx, model, meta).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// [`insert`] inside the caller's transaction (imports add thousands in one transaction).
pub async fn insert_in(
    tx: &mut PgConnection,
    model: &Ingested,
    meta: &NewArchitecture,
) -> sqlx::Result<(Architecture, bool)> {
    let s = &model.graph.summary;
    let created: Option<Architecture> = sqlx::query_as(concat!(
        "insert into architectures (graph_hash, name, family, source, params, macs, num_nodes, num_edges, depth, input_shape, op_counts, onnx_meta)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         on conflict (graph_hash) do nothing
         returning ",
        columns!()
    ))
    .bind(&model.graph_hash)
    .bind(&meta.name)
    .bind(&meta.family)
    .bind(&meta.source)
    .bind(clamp_i64(s.params))
    .bind(clamp_i64(s.macs))
    .bind(s.num_nodes as i32)
    .bind(s.num_edges as i32)
    .bind(s.depth as i32)
    .bind(&s.input_shape)
    .bind(sqlx::types::Json(&s.op_counts))
    .bind(serde_json::json!({
        "opset": s.opset, "ir_version": s.ir_version, "producer": s.producer,
        "onnx_nodes": s.onnx_nodes, "unknown_ops": s.unknown_ops, "unknown_shapes": s.unknown_shapes,
    }))
    .fetch_optional(&mut *tx)
    .await?;
    let (arch, is_new) = match created {
        Some(arch) => {
            let nodes: Vec<&CgNode> = model.graph.graph.node_weights().collect();
            let edges: Vec<i32> = model
                .graph
                .edge_list()
                .into_iter()
                .flat_map(|[a, b]| [a as i32, b as i32])
                .collect();
            sqlx::query("insert into architecture_graphs (architecture_id, nodes, edges) values ($1, $2, $3)")
                .bind(arch.id)
                .bind(sqlx::types::Json(&nodes))
                .bind(&edges)
                .execute(&mut *tx)
                .await?;
            sqlx::query("insert into architecture_onnx (architecture_id, onnx, original_size) values ($1, $2, $3)")
                .bind(arch.id)
                .bind(&model.stripped_onnx)
                .bind(model.original_size as i64)
                .execute(&mut *tx)
                .await?;
            (arch, true)
        }
        None => {
            let arch = sqlx::query_as(concat!(
                "select ",
                columns!(),
                " from architectures where graph_hash = $1"
            ))
            .bind(&model.graph_hash)
            .fetch_one(&mut *tx)
            .await?;
            (arch, false)
        }
    };
    if let Some(name) = &meta.name {
        add_alias(
            &mut *tx,
            meta.source.as_deref().unwrap_or("upload"),
            name,
            arch.id,
        )
        .await?;
    }
    Ok((arch, is_new))
}

/// Records an external name of an architecture; an existing alias keeps its first target.
pub async fn add_alias(
    tx: &mut sqlx::PgConnection,
    namespace: &str,
    value: &str,
    id: i64,
) -> sqlx::Result<()> {
    sqlx::query("insert into architecture_aliases (namespace, value, architecture_id) values ($1, $2, $3) on conflict do nothing")
        .bind(namespace)
        .bind(value)
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub async fn get(pool: &PgPool, id: i64) -> sqlx::Result<Option<Architecture>> {
    sqlx::query_as(concat!(
        "select ",
        columns!(),
        " from architectures where id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// An alias of an architecture.
#[derive(Debug, Clone, Serialize, Deserialize, FromRow, ToSchema)]
pub struct Alias {
    pub namespace: String,
    pub value: String,
}

pub async fn aliases(pool: &PgPool, id: i64) -> sqlx::Result<Vec<Alias>> {
    sqlx::query_as("select namespace, value from architecture_aliases where architecture_id = $1 order by namespace, value")
        .bind(id)
        .fetch_all(pool)
        .await
}

/// The stored computation graph: nodes (topological order) and `[source, target]` edges.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoredGraph {
    pub nodes: Vec<CgNode>,
    pub edges: Vec<[u32; 2]>,
}

pub async fn graph(pool: &PgPool, id: i64) -> sqlx::Result<Option<StoredGraph>> {
    let row: Option<(sqlx::types::Json<Vec<CgNode>>, Vec<i32>)> =
        sqlx::query_as("select nodes, edges from architecture_graphs where architecture_id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(nodes, edges)| StoredGraph {
        nodes: nodes.0,
        edges: edges
            .chunks_exact(2)
            .map(|p| [p[0] as u32, p[1] as u32])
            .collect(),
    }))
}

pub async fn onnx(pool: &PgPool, id: i64) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar("select onnx from architecture_onnx where architecture_id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Deletes an architecture with its graph, ONNX and aliases. Returns whether it existed.
pub async fn delete(pool: &PgPool, id: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query("delete from architectures where id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
        > 0)
}

/// Sort keys of the architecture listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    #[default]
    Id,
    Params,
    Macs,
    Depth,
    NumNodes,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Params => "params",
            SortKey::Macs => "macs",
            SortKey::Depth => "depth",
            SortKey::NumNodes => "num_nodes",
        }
    }
}

/// Filters and keyset pagination of the listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub family: Option<String>,
    /// Every listed op label must occur in the graph.
    pub ops: Vec<String>,
    pub min_params: Option<i64>,
    pub max_params: Option<i64>,
    pub min_macs: Option<i64>,
    pub max_macs: Option<i64>,
    pub sort: SortKey,
    pub descending: bool,
    /// `(sort value, id)` of the last row of the previous page.
    pub after: Option<(i64, i64)>,
    pub limit: i64,
}

/// One page of architectures and the cursor of its last row when more may follow.
pub async fn list(
    pool: &PgPool,
    f: &ListFilter,
) -> sqlx::Result<(Vec<Architecture>, Option<(i64, i64)>)> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(concat!(
        "select ",
        columns!(),
        " from architectures where true"
    ));
    if let Some(family) = &f.family {
        q.push(" and family = ").push_bind(family.clone());
    }
    for op in &f.ops {
        q.push(" and op_counts ? ").push_bind(op.clone());
    }
    for (col, bound, cmp) in [
        ("params", f.min_params, ">="),
        ("params", f.max_params, "<="),
        ("macs", f.min_macs, ">="),
        ("macs", f.max_macs, "<="),
    ] {
        if let Some(v) = bound {
            q.push(format!(" and {col} {cmp} ")).push_bind(v);
        }
    }
    let col = f.sort.column();
    let (cmp, dir) = if f.descending {
        ("<", "desc")
    } else {
        (">", "asc")
    };
    if let Some((value, id)) = f.after {
        q.push(format!(" and ({col}::bigint, id) {cmp} ("))
            .push_bind(value)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(format!(" order by {col} {dir}, id {dir} limit "))
        .push_bind(f.limit + 1);
    let mut rows: Vec<Architecture> = q.build_query_as().fetch_all(pool).await?;
    let more = rows.len() as i64 > f.limit;
    rows.truncate(f.limit as usize);
    let cursor = more
        .then(|| rows.last().map(|a| (sort_value(a, f.sort), a.id)))
        .flatten();
    Ok((rows, cursor))
}

fn sort_value(a: &Architecture, key: SortKey) -> i64 {
    match key {
        SortKey::Id => a.id,
        SortKey::Params => a.params,
        SortKey::Macs => a.macs,
        SortKey::Depth => a.depth as i64,
        SortKey::NumNodes => a.num_nodes as i64,
    }
}
