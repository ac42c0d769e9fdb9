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
    /// Where the model comes from (see `source_schema`).
    #[param(schema_with = crate::http::architectures::source_schema)]
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
            sqlx::query("insert into architecture_graphs (architecture_id, graph) values ($1, $2)")
                .bind(arch.id)
                .bind(&model.stored_graph)
                .execute(&mut *tx)
                .await?;
            sqlx::query("insert into architecture_onnx (architecture_id, onnx, original_size, codec) values ($1, $2, $3, 'lz4')")
                .bind(arch.id)
                .bind(&model.stored_onnx)
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

/// Stores many ingested models in the caller's transaction with a handful of statements
/// (`UNNEST` arrays) instead of several round trips per model, as [`insert_in`] would one after
/// another: graphs whose hash exists are not stored again, the first of several equal graphs in
/// `items` creates the architecture (with its fields), and every item's `name` becomes an alias
/// in its `source` namespace (default `upload`). Returns, per item, the architecture id and
/// whether this item created it.
pub async fn insert_batch_in(
    conn: &mut PgConnection,
    items: &[(&Ingested, &NewArchitecture)],
) -> sqlx::Result<Vec<(i64, bool)>> {
    use std::collections::HashMap;
    // The first item of each distinct graph, in input order (ids follow that order).
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    let mut unique: Vec<usize> = Vec::with_capacity(items.len());
    for (i, (model, _)) in items.iter().enumerate() {
        first.entry(model.graph_hash.as_str()).or_insert_with(|| {
            unique.push(i);
            i
        });
    }
    let n = unique.len();
    let (mut hashes, mut names, mut families, mut sources) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut params, mut macs, mut num_nodes, mut num_edges, mut depths) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut shapes, mut op_counts, mut metas) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for &i in &unique {
        let (model, meta) = items[i];
        let s = &model.graph.summary;
        hashes.push(model.graph_hash.clone());
        names.push(meta.name.clone());
        families.push(meta.family.clone());
        sources.push(meta.source.clone());
        params.push(clamp_i64(s.params));
        macs.push(clamp_i64(s.macs));
        num_nodes.push(s.num_nodes as i32);
        num_edges.push(s.num_edges as i32);
        depths.push(s.depth as i32);
        shapes.push(int_array_literal(s.input_shape.iter().copied()));
        op_counts.push(serde_json::to_string(&s.op_counts).unwrap_or_else(|_| "{}".into()));
        metas.push(
            serde_json::json!({
                "opset": s.opset, "ir_version": s.ir_version, "producer": s.producer,
                "onnx_nodes": s.onnx_nodes, "unknown_ops": s.unknown_ops, "unknown_shapes": s.unknown_shapes,
            })
            .to_string(),
        );
    }
    let created: Vec<(i64, String)> = sqlx::query_as(
        "insert into architectures (graph_hash, name, family, source, params, macs, num_nodes, num_edges, depth, input_shape, op_counts, onnx_meta)
         select h, n, f, s, p, m, nn, ne, d, shp::bigint[], oc::jsonb, om::jsonb
         from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int4[],
                     $8::int4[], $9::int4[], $10::text[], $11::text[], $12::text[])
              with ordinality as t(h, n, f, s, p, m, nn, ne, d, shp, oc, om, ord)
         order by ord
         on conflict (graph_hash) do nothing
         returning id, graph_hash",
    )
    .bind(&hashes)
    .bind(&names)
    .bind(&families)
    .bind(&sources)
    .bind(&params)
    .bind(&macs)
    .bind(&num_nodes)
    .bind(&num_edges)
    .bind(&depths)
    .bind(&shapes)
    .bind(&op_counts)
    .bind(&metas)
    .fetch_all(&mut *conn)
    .await?;
    let mut ids: HashMap<String, i64> = HashMap::with_capacity(n);
    let mut new_ids: Vec<i64> = Vec::with_capacity(created.len());
    let mut new_graphs: Vec<&[u8]> = Vec::with_capacity(created.len());
    let (mut new_onnx, mut new_sizes): (Vec<&[u8]>, Vec<i64>) = (
        Vec::with_capacity(created.len()),
        Vec::with_capacity(created.len()),
    );
    for (id, hash) in created {
        let (model, _) = items[first[hash.as_str()]];
        new_ids.push(id);
        new_graphs.push(&model.stored_graph);
        new_onnx.push(&model.stored_onnx);
        new_sizes.push(model.original_size as i64);
        ids.insert(hash, id);
    }
    if !new_ids.is_empty() {
        sqlx::query(
            "insert into architecture_graphs (architecture_id, graph)
             select * from unnest($1::int8[], $2::bytea[])",
        )
        .bind(&new_ids)
        .bind(&new_graphs)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "insert into architecture_onnx (architecture_id, onnx, original_size, codec)
             select id, onnx, size, 'lz4' from unnest($1::int8[], $2::bytea[], $3::int8[]) as t(id, onnx, size)",
        )
        .bind(&new_ids)
        .bind(&new_onnx)
        .bind(&new_sizes)
        .execute(&mut *conn)
        .await?;
    }
    let created_hashes: std::collections::HashSet<String> = ids.keys().cloned().collect();
    if ids.len() < n {
        let missing: Vec<&String> = hashes.iter().filter(|h| !ids.contains_key(*h)).collect();
        let existing: Vec<(i64, String)> =
            sqlx::query_as("select id, graph_hash from architectures where graph_hash = any($1)")
                .bind(&missing)
                .fetch_all(&mut *conn)
                .await?;
        ids.extend(existing.into_iter().map(|(id, hash)| (hash, id)));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut aliases = Vec::new();
    for (i, (model, meta)) in items.iter().enumerate() {
        let hash = model.graph_hash.as_str();
        let id = *ids.get(hash).ok_or_else(|| {
            sqlx::Error::Protocol(format!("architecture {hash} neither inserted nor found"))
        })?;
        out.push((id, first[hash] == i && created_hashes.contains(hash)));
        if let Some(name) = &meta.name {
            aliases.push((
                meta.source.as_deref().unwrap_or("upload").to_string(),
                name.clone(),
                id,
            ));
        }
    }
    add_aliases(conn, &aliases).await?;
    Ok(out)
}

/// Records many `(namespace, value, architecture id)` aliases in one statement; an existing
/// alias keeps its first target, and so does the first of equal aliases in `aliases`.
pub async fn add_aliases(
    conn: &mut PgConnection,
    aliases: &[(String, String, i64)],
) -> sqlx::Result<()> {
    if aliases.is_empty() {
        return Ok(());
    }
    let namespaces: Vec<&str> = aliases.iter().map(|a| a.0.as_str()).collect();
    let values: Vec<&str> = aliases.iter().map(|a| a.1.as_str()).collect();
    let ids: Vec<i64> = aliases.iter().map(|a| a.2).collect();
    sqlx::query(
        "insert into architecture_aliases (namespace, value, architecture_id)
         select ns, v, id from unnest($1::text[], $2::text[], $3::int8[]) with ordinality as t(ns, v, id, ord)
         order by ord
         on conflict do nothing",
    )
    .bind(&namespaces)
    .bind(&values)
    .bind(&ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// PostgreSQL array text (`{1,2,3}`) of integers, cast to an array type in SQL.
fn int_array_literal(values: impl Iterator<Item = i64>) -> String {
    let mut s = String::from("{");
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&v.to_string());
    }
    s.push('}');
    s
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

/// `(id, params, macs)` of the architecture with alias `value` in `namespace`.
pub async fn size_by_alias(
    pool: &PgPool,
    namespace: &str,
    value: &str,
) -> sqlx::Result<Option<(i64, i64, i64)>> {
    sqlx::query_as(
        "select a.id, a.params, a.macs from architecture_aliases x join architectures a on a.id = x.architecture_id
         where x.namespace = $1 and x.value = $2",
    )
    .bind(namespace)
    .bind(value)
    .fetch_optional(pool)
    .await
}

/// `(namespace, value, id, params, macs)` of the architectures with any of the aliases
/// `(namespaces[i], values[i])` (one row per alias found, in no order).
pub async fn sizes_by_aliases(
    pool: &PgPool,
    namespaces: &[&str],
    values: &[&str],
) -> sqlx::Result<Vec<(String, String, i64, i64, i64)>> {
    sqlx::query_as(
        "select a.namespace, a.value, a.architecture_id, r.params, r.macs
           from architecture_aliases a
           join unnest($1::text[], $2::text[]) as k(ns, v) on a.namespace = k.ns and a.value = k.v
           join architectures r on r.id = a.architecture_id",
    )
    .bind(namespaces)
    .bind(values)
    .fetch_all(pool)
    .await
}

/// `(value, id)` of the aliases in `namespace` that are among `values`.
pub async fn ids_by_alias(
    pool: &PgPool,
    namespace: &str,
    values: &[String],
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "select value, architecture_id from architecture_aliases
          where namespace = $1 and value = any($2)",
    )
    .bind(namespace)
    .bind(values)
    .fetch_all(pool)
    .await
}

/// `(id, params, macs)` of the stored architectures among `ids` (in no order).
pub async fn sizes(pool: &PgPool, ids: &[i64]) -> sqlx::Result<Vec<(i64, i64, i64)>> {
    sqlx::query_as("select id, params, macs from architectures where id = any($1)")
        .bind(ids)
        .fetch_all(pool)
        .await
}

/// `(graph hash, id)` of the stored architectures with any of the canonical graph `hashes`.
pub async fn ids_by_hash(pool: &PgPool, hashes: &[&str]) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("select graph_hash, id from architectures where graph_hash = any($1)")
        .bind(hashes)
        .fetch_all(pool)
        .await
}

pub use crate::graph::StoredGraph;

/// The selected columns of [`GraphRow`].
macro_rules! graph_columns {
    () => {
        "architecture_id, graph, nodes, edges"
    };
}
pub(crate) use graph_columns;

pub async fn graph(pool: &PgPool, id: i64) -> sqlx::Result<Option<StoredGraph>> {
    let row: Option<GraphRow> = sqlx::query_as(concat!(
        "select ",
        graph_columns!(),
        " from architecture_graphs where architecture_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(GraphRow::into_graph).transpose()
}

/// A row of `architecture_graphs`: the compact form (`graph`), or for rows written before
/// migration 0012, nodes as JSON and a flat edge array.
#[derive(FromRow)]
pub(crate) struct GraphRow {
    pub architecture_id: i64,
    graph: Option<Vec<u8>>,
    nodes: Option<sqlx::types::Json<Vec<CgNode>>>,
    edges: Option<Vec<i32>>,
}

impl GraphRow {
    pub fn into_graph(self) -> sqlx::Result<StoredGraph> {
        match (self.graph, self.nodes, self.edges) {
            (Some(bytes), _, _) => {
                StoredGraph::decode(&bytes).map_err(|e| sqlx::Error::Decode(e.into()))
            }
            (None, Some(nodes), Some(edges)) => Ok(StoredGraph {
                nodes: nodes.0,
                edges: edges
                    .chunks_exact(2)
                    .map(|p| [p[0] as u32, p[1] as u32])
                    .collect(),
            }),
            _ => Err(sqlx::Error::Decode(
                format!("architecture {} has no stored graph", self.architecture_id).into(),
            )),
        }
    }
}

/// The model's weight-stripped ONNX, as uploaded (decompressed).
pub async fn onnx(pool: &PgPool, id: i64) -> sqlx::Result<Option<Vec<u8>>> {
    let row: Option<StoredOnnx> =
        sqlx::query_as("select onnx, codec from architecture_onnx where architecture_id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.map(StoredOnnx::into_bytes).transpose()
}

/// How `architecture_onnx.onnx` holds the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnnxCodec {
    /// Rows written before migration 0012: the bytes themselves.
    Plain,
    /// [`crate::ingest::compress_onnx`].
    Lz4,
}

impl TryFrom<String> for OnnxCodec {
    type Error = String;
    fn try_from(codec: String) -> Result<Self, String> {
        match codec.as_str() {
            "plain" => Ok(Self::Plain),
            "lz4" => Ok(Self::Lz4),
            _ => Err(format!("stored ONNX of unknown codec `{codec}`")),
        }
    }
}

/// A row of `architecture_onnx`: the stored bytes and how to read them.
#[derive(FromRow)]
pub struct StoredOnnx {
    onnx: Vec<u8>,
    #[sqlx(try_from = "String")]
    codec: OnnxCodec,
}

impl StoredOnnx {
    /// The ONNX bytes.
    pub fn into_bytes(self) -> sqlx::Result<Vec<u8>> {
        match self.codec {
            OnnxCodec::Lz4 => crate::ingest::decompress_onnx(&self.onnx)
                .map_err(|e| sqlx::Error::Decode(e.into())),
            OnnxCodec::Plain => Ok(self.onnx),
        }
    }
}

/// Deletes an architecture with its graph, ONNX, aliases and predictor-index rows, and tells
/// every serving process (NOTIFY `deleted:<id>` on the predictors' channel, delivered at commit)
/// to drop it from the indexes it holds in memory. Returns whether it existed.
pub async fn delete(pool: &PgPool, id: i64) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let existed = sqlx::query("delete from architectures where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if existed {
        sqlx::query("select pg_notify($1, $2)")
            .bind(crate::db::predictors::CHANNEL)
            .bind(format!("{DELETED_PREFIX}{id}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(existed)
}

/// Payload prefix of the NOTIFY that announces a deleted architecture.
pub const DELETED_PREFIX: &str = "deleted:";

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
