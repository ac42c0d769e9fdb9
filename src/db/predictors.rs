//! Accuracy predictors: the registry (artifacts, evaluations, which one is active per target),
//! their per-architecture index (embeddings and cached predictions of measured architectures),
//! and the training sets read from `results`.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

use super::architectures::StoredGraph;

/// NOTIFY channel on which activations are announced to serving processes.
pub const CHANNEL: &str = "archdb_predictors";

pub use crate::predict::target::{Aggregate, PredictorKind, Target};

/// A measured architecture of a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub architecture_id: i64,
    pub value: f64,
}

/// Every architecture with a stored graph and a measured value for `target`, by id.
pub async fn measured(pool: &PgPool, target: &Target) -> sqlx::Result<Vec<Measured>> {
    let rows: Vec<(i64, f64)> = sqlx::query_as(
        "select architecture_id,
                case when $6 then max(value)
                     else coalesce(avg(value) filter (where seed is null), avg(value)) end
           from results
          where benchmark = $1 and dataset = $2 and metric = $3
            and ($4::int is null or epoch = $4) and ($5::text is null or split = $5)
            and architecture_id is not null and value is not null
          group by architecture_id
          order by architecture_id",
    )
    .bind(&target.benchmark)
    .bind(&target.dataset)
    .bind(&target.metric)
    .bind(target.epoch)
    .bind(&target.split)
    .bind(target.aggregate == Some(Aggregate::Max))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(architecture_id, value)| Measured {
            architecture_id,
            value,
        })
        .collect())
}

/// Whether `target` has any measured architecture (what training needs).
pub async fn target_measured(pool: &PgPool, target: &Target) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from results
          where benchmark = $1 and dataset = $2 and metric = $3
            and ($4::int is null or epoch = $4) and ($5::text is null or split = $5)
            and architecture_id is not null and value is not null)",
    )
    .bind(&target.benchmark)
    .bind(&target.dataset)
    .bind(&target.metric)
    .bind(target.epoch)
    .bind(&target.split)
    .fetch_one(pool)
    .await
}

/// The (benchmark, dataset, metric) triples with measured architectures, each with its epochs
/// and splits: what a training target can name.
pub async fn covered_targets(
    pool: &PgPool,
) -> sqlx::Result<Vec<(String, String, String, Vec<i32>, Vec<String>)>> {
    sqlx::query_as(
        "select benchmark, dataset, metric,
                coalesce(array_agg(distinct epoch) filter (where epoch is not null), '{}'),
                coalesce(array_agg(distinct split) filter (where split is not null), '{}')
           from results
          where architecture_id is not null and value is not null
          group by benchmark, dataset, metric
          order by benchmark, dataset, metric",
    )
    .fetch_all(pool)
    .await
}

/// The stored graphs of `ids` (those that exist).
pub async fn graphs(pool: &PgPool, ids: &[i64]) -> sqlx::Result<HashMap<i64, StoredGraph>> {
    use crate::db::architectures::{GraphRow, graph_columns};
    let rows: Vec<GraphRow> = sqlx::query_as(concat!(
        "select ",
        graph_columns!(),
        " from architecture_graphs where architecture_id = any($1)"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| Ok((row.architecture_id, row.into_graph()?)))
        .collect()
}

/// A registered predictor, without its artifact.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct PredictorInfo {
    pub id: i64,
    pub name: String,
    /// `graph` (a benchmark figure from the architecture) or `recipe` (conditioned on dataset
    /// and training recipe; target `lemur/img-classification/acc`).
    #[sqlx(try_from = "String")]
    pub kind: PredictorKind,
    #[schema(value_type = Target)]
    pub target: sqlx::types::Json<Target>,
    /// Held-out evaluation: `kendall_tau_b`, `spearman`, `mae`, `split`, `seed`, `train_size`,
    /// `test_size`, `device`, `train_seconds`, and the training settings.
    #[schema(value_type = Object)]
    pub evaluation: serde_json::Value,
    pub active: bool,
    /// The predictor a fine-tune started from.
    pub parent_id: Option<i64>,
    /// The job that trained it (null for one registered from a file).
    pub job_id: Option<i64>,
    /// Artifact size in bytes.
    pub artifact_bytes: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const INFO_COLUMNS: &str = "id, name, kind, target, evaluation, active, parent_id, job_id,
    octet_length(artifact)::bigint as artifact_bytes, created_at";

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<PredictorInfo>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {INFO_COLUMNS} from predictors order by id"
    )))
    .fetch_all(pool)
    .await
}

pub async fn get(pool: &PgPool, id: i64) -> sqlx::Result<Option<PredictorInfo>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {INFO_COLUMNS} from predictors where id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn artifact(pool: &PgPool, id: i64) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar("select artifact from predictors where id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Ids and targets of the active graph predictors.
pub async fn active(pool: &PgPool) -> sqlx::Result<Vec<(i64, Target)>> {
    let rows: Vec<(i64, sqlx::types::Json<Target>)> = sqlx::query_as(
        "select id, target from predictors where active and kind = 'graph' order by id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id, t)| (id, t.0)).collect())
}

/// The id of the active recipe predictor, if one is registered and active.
pub async fn active_recipe(pool: &PgPool) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("select id from predictors where active and kind = 'recipe'")
        .fetch_optional(pool)
        .await
}

/// One LEMUR image-classification trial of a model whose graph is stored: what a recipe
/// predictor trains on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecipeTrial {
    pub architecture_id: i64,
    pub nn: String,
    pub dataset: String,
    pub epoch: Option<i32>,
    pub value: f64,
    pub transform: Option<String>,
    pub hyperparameters: serde_json::Value,
}

/// LEMUR image-classification accuracy rows whose linked graph is the one exported for the
/// row's own dataset (its `lemur` alias `<nn>` on CIFAR-10, `<nn>_<dataset>` otherwise; rows of
/// a dataset without its own export are linked to another dataset's graph, whose classifier
/// differs, and are left out): what a recipe predictor trains on.
const RECIPE_TRIALS: &str = "from results r
     join architecture_aliases a
       on a.namespace = $1 and a.architecture_id = r.architecture_id
      and a.value = case when r.dataset = $2 then r.nn else r.nn || '_' || r.dataset end
    where r.benchmark = $1 and r.task = 'img-classification' and r.metric = 'acc'
      and r.value is not null";

/// Whether any row a recipe predictor could train on is stored.
pub async fn recipe_trials_exist(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select exists (select 1 {RECIPE_TRIALS})"
    )))
    .bind(crate::lemur::BENCHMARK)
    .bind(crate::lemur::DEFAULT_GRAPH_DATASET)
    .fetch_one(pool)
    .await
}

/// The recipe-training rows ([`RECIPE_TRIALS`]) of `datasets`.
pub async fn recipe_trials(pool: &PgPool, datasets: &[&str]) -> sqlx::Result<Vec<RecipeTrial>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select r.architecture_id, r.nn, r.dataset, r.epoch, r.value, r.transform,
                r.hyperparameters
           {RECIPE_TRIALS} and r.dataset = any($3)
          order by r.id"
    )))
    .bind(crate::lemur::BENCHMARK)
    .bind(crate::lemur::DEFAULT_GRAPH_DATASET)
    .bind(datasets)
    .fetch_all(pool)
    .await
}

/// A predictor to register.
pub struct NewPredictor<'a> {
    pub name: &'a str,
    pub kind: PredictorKind,
    pub target: &'a Target,
    pub artifact: &'a [u8],
    pub config: serde_json::Value,
    pub evaluation: serde_json::Value,
    pub parent_id: Option<i64>,
    pub job_id: Option<i64>,
}

/// One row of a predictor's index.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IndexRow {
    pub architecture_id: i64,
    pub measured: f64,
    pub accuracy: f64,
    pub std: f64,
    pub ood_score: f64,
    pub membership_entropy: f64,
    pub embedding: Vec<f32>,
}

/// Inserts a predictor and its index; returns its id.
pub async fn insert(
    conn: &mut PgConnection,
    new: &NewPredictor<'_>,
    index: &[IndexRow],
) -> sqlx::Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "insert into predictors (name, kind, target, artifact, config, evaluation, parent_id, job_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
    )
    .bind(new.name)
    .bind(new.kind.as_str())
    .bind(sqlx::types::Json(new.target))
    .bind(new.artifact)
    .bind(&new.config)
    .bind(&new.evaluation)
    .bind(new.parent_id)
    .bind(new.job_id)
    .fetch_one(&mut *conn)
    .await?;
    for chunk in index.chunks(5_000) {
        let column = |f: fn(&IndexRow) -> f64| chunk.iter().map(f).collect::<Vec<f64>>();
        // real[][] must be rectangular: embeddings all have the encoder's width.
        let embeddings: Vec<String> = chunk
            .iter()
            .map(|r| {
                let values: Vec<String> = r.embedding.iter().map(|v| v.to_string()).collect();
                format!("{{{}}}", values.join(","))
            })
            .collect();
        sqlx::query(
            "insert into predictor_index (predictor_id, architecture_id, measured, accuracy, std,
                                          ood_score, membership_entropy, embedding)
             select $1, a, m, acc, s, o, h, e::real[]
               from unnest($2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
                           $7::float8[], $8::text[]) as t(a, m, acc, s, o, h, e)",
        )
        .bind(id)
        .bind(chunk.iter().map(|r| r.architecture_id).collect::<Vec<_>>())
        .bind(column(|r| r.measured))
        .bind(column(|r| r.accuracy))
        .bind(column(|r| r.std))
        .bind(column(|r| r.ood_score))
        .bind(column(|r| r.membership_entropy))
        .bind(embeddings)
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

/// A predictor's index.
pub async fn index(pool: &PgPool, predictor_id: i64) -> sqlx::Result<Vec<IndexRow>> {
    sqlx::query_as(
        "select architecture_id, measured, accuracy, std, ood_score, membership_entropy, embedding
           from predictor_index where predictor_id = $1 order by architecture_id",
    )
    .bind(predictor_id)
    .fetch_all(pool)
    .await
}

/// Makes `id` the active predictor of its target (deactivating the previous one) and notifies
/// serving processes, in one transaction. Returns false when there is no such predictor.
pub async fn activate(pool: &PgPool, id: i64) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let target: Option<serde_json::Value> =
        sqlx::query_scalar("select target from predictors where id = $1 for update")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(target) = target else {
        return Ok(false);
    };
    sqlx::query("update predictors set active = false where active and target = $1 and id <> $2")
        .bind(&target)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("update predictors set active = true where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("select pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}
