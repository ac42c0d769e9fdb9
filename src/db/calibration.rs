//! Stored calibration figures: one run row per (architecture, dataset) and its figures in long
//! format (`metric`, `bins`, `stage`, `value`), so every filter and correlation is one query.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;

use crate::calibration::{MetricSet, Reliability};

/// Calibration figures of one stage (pre or post temperature scaling); any may be absent when
/// figures are given rather than computed. Bin-based metrics are keyed by bin count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Figures {
    #[schema(value_type = BTreeMap<String, f64>)]
    pub ece: BTreeMap<u32, f64>,
    #[schema(value_type = BTreeMap<String, f64>)]
    pub ece_em: BTreeMap<u32, f64>,
    #[schema(value_type = BTreeMap<String, f64>)]
    pub cwce: BTreeMap<u32, f64>,
    #[schema(value_type = BTreeMap<String, f64>)]
    pub cwce_em: BTreeMap<u32, f64>,
    #[schema(value_type = BTreeMap<String, f64>)]
    pub mce: BTreeMap<u32, f64>,
    #[schema(value_type = BTreeMap<String, f64>)]
    pub rmsce: BTreeMap<u32, f64>,
    pub ksce: Option<f64>,
    pub kdece: Option<f64>,
    pub mmce: Option<f64>,
    pub nll: Option<f64>,
    pub brier: Option<f64>,
    pub accuracy: Option<f64>,
}

/// Metrics with one value per bin count.
pub const BINNED_METRICS: [&str; 6] = ["ece", "ece_em", "cwce", "cwce_em", "mce", "rmsce"];
/// Metrics without bins (stored with `bins = 0`).
pub const SCALAR_METRICS: [&str; 6] = ["ksce", "kdece", "mmce", "nll", "brier", "accuracy"];

impl Figures {
    fn binned_mut(&mut self, metric: &str) -> Option<&mut BTreeMap<u32, f64>> {
        Some(match metric {
            "ece" => &mut self.ece,
            "ece_em" => &mut self.ece_em,
            "cwce" => &mut self.cwce,
            "cwce_em" => &mut self.cwce_em,
            "mce" => &mut self.mce,
            "rmsce" => &mut self.rmsce,
            _ => return None,
        })
    }

    fn scalar_mut(&mut self, metric: &str) -> Option<&mut Option<f64>> {
        Some(match metric {
            "ksce" => &mut self.ksce,
            "kdece" => &mut self.kdece,
            "mmce" => &mut self.mmce,
            "nll" => &mut self.nll,
            "brier" => &mut self.brier,
            "accuracy" => &mut self.accuracy,
            _ => return None,
        })
    }

    /// Sets one figure by metric name; false for an unknown metric or a bin count on a
    /// bin-free metric.
    pub fn set(&mut self, metric: &str, bins: u32, value: f64) -> bool {
        if let Some(map) = self.binned_mut(metric) {
            map.insert(bins, value);
            return bins > 0;
        }
        match self.scalar_mut(metric) {
            Some(slot) if bins == 0 => {
                *slot = Some(value);
                true
            }
            _ => false,
        }
    }

    /// `(metric, bins, value)` of every present figure.
    pub fn rows(&self) -> Vec<(&'static str, u32, f64)> {
        let binned = [
            ("ece", &self.ece),
            ("ece_em", &self.ece_em),
            ("cwce", &self.cwce),
            ("cwce_em", &self.cwce_em),
            ("mce", &self.mce),
            ("rmsce", &self.rmsce),
        ];
        let scalars = [
            ("ksce", self.ksce),
            ("kdece", self.kdece),
            ("mmce", self.mmce),
            ("nll", self.nll),
            ("brier", self.brier),
            ("accuracy", self.accuracy),
        ];
        binned
            .into_iter()
            .flat_map(|(m, map)| map.iter().map(move |(&b, &v)| (m, b, v)))
            .chain(
                scalars
                    .into_iter()
                    .filter_map(|(m, v)| v.map(|v| (m, 0, v))),
            )
            .collect()
    }
}

impl From<&MetricSet> for Figures {
    fn from(m: &MetricSet) -> Self {
        let bins = |map: &BTreeMap<usize, f64>| map.iter().map(|(&b, &v)| (b as u32, v)).collect();
        Figures {
            ece: bins(&m.ece),
            ece_em: bins(&m.ece_em),
            cwce: bins(&m.cwce),
            cwce_em: bins(&m.cwce_em),
            mce: bins(&m.mce),
            rmsce: bins(&m.rmsce),
            ksce: Some(m.ksce),
            kdece: m.kdece,
            mmce: Some(m.mmce),
            nll: Some(m.nll),
            brier: Some(m.brier),
            accuracy: Some(m.accuracy),
        }
    }
}

/// The calibration of one architecture on one dataset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CalibrationRecord {
    pub architecture_id: i64,
    pub dataset: String,
    pub accuracy: Option<f64>,
    pub temperature: Option<f64>,
    pub n_samples: Option<i32>,
    /// `computed`, `given` or `import:<file>`.
    pub source: String,
    /// Settings of the computation (bin rule, Brier scaling, split), when computed.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    pub pre: Figures,
    pub post: Option<Figures>,
    pub reliability: Option<Reliability>,
}

/// Replaces the calibration of `(architecture, dataset)` (run row and all figures).
pub async fn store(conn: &mut PgConnection, record: &CalibrationRecord) -> sqlx::Result<()> {
    sqlx::query(
        "insert into calibration_runs (architecture_id, dataset, accuracy, temperature, n_samples, source, settings, reliability, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, now())
         on conflict (architecture_id, dataset) do update set accuracy = excluded.accuracy, temperature = excluded.temperature,
           n_samples = excluded.n_samples, source = excluded.source, settings = excluded.settings,
           reliability = excluded.reliability, updated_at = now()",
    )
    .bind(record.architecture_id)
    .bind(&record.dataset)
    .bind(record.accuracy)
    .bind(record.temperature)
    .bind(record.n_samples)
    .bind(&record.source)
    .bind(&record.settings)
    .bind(record.reliability.as_ref().map(sqlx::types::Json))
    .execute(&mut *conn)
    .await?;
    sqlx::query("delete from calibration_metrics where architecture_id = $1 and dataset = $2")
        .bind(record.architecture_id)
        .bind(&record.dataset)
        .execute(&mut *conn)
        .await?;
    let mut stages = Vec::new();
    let mut metrics = Vec::new();
    let mut bins = Vec::new();
    let mut values = Vec::new();
    for (stage, figures) in [("pre", Some(&record.pre)), ("post", record.post.as_ref())] {
        for (metric, b, v) in figures.map(Figures::rows).unwrap_or_default() {
            stages.push(stage);
            metrics.push(metric);
            bins.push(b as i32);
            values.push(v);
        }
    }
    sqlx::query(
        "insert into calibration_metrics (architecture_id, dataset, stage, metric, bins, value)
         select $1, $2, * from unnest($3::text[], $4::text[], $5::int[], $6::float8[])",
    )
    .bind(record.architecture_id)
    .bind(&record.dataset)
    .bind(&stages)
    .bind(&metrics)
    .bind(&bins)
    .bind(&values)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

type RunRow = (
    i64,
    String,
    Option<f64>,
    Option<f64>,
    Option<i32>,
    String,
    serde_json::Value,
    Option<sqlx::types::Json<Reliability>>,
);

/// The stored calibration of an architecture on a dataset.
pub async fn get(
    pool: &PgPool,
    architecture_id: i64,
    dataset: &str,
) -> sqlx::Result<Option<CalibrationRecord>> {
    let run: Option<RunRow> = sqlx::query_as(
        "select architecture_id, dataset, accuracy, temperature, n_samples, source, settings, reliability
         from calibration_runs where architecture_id = $1 and dataset = $2",
    )
    .bind(architecture_id)
    .bind(dataset)
    .fetch_optional(pool)
    .await?;
    let Some((
        architecture_id,
        dataset,
        accuracy,
        temperature,
        n_samples,
        source,
        settings,
        reliability,
    )) = run
    else {
        return Ok(None);
    };
    let rows: Vec<(String, String, i32, f64)> =
        sqlx::query_as("select stage, metric, bins, value from calibration_metrics where architecture_id = $1 and dataset = $2")
            .bind(architecture_id)
            .bind(&dataset)
            .fetch_all(pool)
            .await?;
    let mut pre = Figures::default();
    let mut post: Option<Figures> = None;
    for (stage, metric, bins, value) in rows {
        let target = if stage == "post" {
            post.get_or_insert_with(Figures::default)
        } else {
            &mut pre
        };
        target.set(&metric, bins as u32, value);
    }
    Ok(Some(CalibrationRecord {
        architecture_id,
        dataset,
        accuracy,
        temperature,
        n_samples,
        source,
        settings,
        pre,
        post,
        reliability: reliability.map(|r| r.0),
    }))
}

/// Datasets with stored calibration for an architecture.
pub async fn datasets(pool: &PgPool, architecture_id: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "select dataset from calibration_runs where architecture_id = $1 order by dataset",
    )
    .bind(architecture_id)
    .fetch_all(pool)
    .await
}

/// One stored figure with its architecture.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct CalibrationRow {
    pub architecture_id: i64,
    pub name: Option<String>,
    pub family: Option<String>,
    pub dataset: String,
    pub stage: String,
    pub metric: String,
    pub bins: i32,
    pub value: f64,
    pub accuracy: Option<f64>,
}

/// Order of a listing of figures (ties: by architecture and dataset).
#[derive(Debug, Clone, Copy)]
pub enum ListOrder {
    Value,
    ValueDesc,
    /// Architectures without an accuracy last.
    Accuracy,
    AccuracyDesc,
}

/// Which figures a listing returns: one metric at one bin count and stage, the other filters
/// when set.
#[derive(Debug)]
pub struct ListFilter {
    pub metric: &'static str,
    pub bins: i32,
    pub stage: &'static str,
    pub dataset: Option<String>,
    pub family: Option<String>,
    pub min_accuracy: Option<f64>,
    pub max_accuracy: Option<f64>,
    pub order: ListOrder,
    pub limit: i64,
    pub offset: i64,
}

/// A page of the figures that `filter` selects.
pub async fn list(pool: &PgPool, filter: ListFilter) -> sqlx::Result<Vec<CalibrationRow>> {
    let order = match filter.order {
        ListOrder::Value => "m.value asc",
        ListOrder::ValueDesc => "m.value desc",
        ListOrder::Accuracy => "r.accuracy asc nulls last",
        ListOrder::AccuracyDesc => "r.accuracy desc nulls last",
    };
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
        "select m.architecture_id, a.name, a.family, m.dataset, m.stage, m.metric, m.bins, m.value, r.accuracy
         from calibration_metrics m
         join calibration_runs r using (architecture_id, dataset)
         join architectures a on a.id = m.architecture_id
         where m.metric = ",
    );
    sql.push_bind(filter.metric)
        .push(" and m.bins = ")
        .push_bind(filter.bins)
        .push(" and m.stage = ")
        .push_bind(filter.stage);
    if let Some(d) = filter.dataset {
        sql.push(" and m.dataset = ").push_bind(d);
    }
    if let Some(f) = filter.family {
        sql.push(" and a.family = ").push_bind(f);
    }
    if let Some(v) = filter.min_accuracy {
        sql.push(" and r.accuracy >= ").push_bind(v);
    }
    if let Some(v) = filter.max_accuracy {
        sql.push(" and r.accuracy <= ").push_bind(v);
    }
    sql.push(format!(
        " order by {order}, m.architecture_id, m.dataset limit "
    ))
    .push_bind(filter.limit)
    .push(" offset ")
    .push_bind(filter.offset);
    sql.build_query_as().fetch_all(pool).await
}

/// `(series key, architecture ids, values)`: one series of figures aggregated in SQL
/// (`array_agg` of ids and of values in one pass, so in the same row order); arrays come back in
/// binary, much cheaper than one row per figure.
pub type SeriesRow<K> = (K, Vec<i64>, Vec<f64>);

/// A metric at one bin count and stage, one series per dataset.
pub async fn series_by_dataset(
    pool: &PgPool,
    metric: &str,
    bins: i32,
    stage: &str,
) -> sqlx::Result<Vec<SeriesRow<String>>> {
    sqlx::query_as(
        "select dataset, array_agg(architecture_id), array_agg(value) from calibration_metrics
         where metric = $1 and bins = $2 and stage = $3 group by dataset",
    )
    .bind(metric)
    .bind(bins)
    .bind(stage)
    .fetch_all(pool)
    .await
}

/// A binned metric of one dataset and stage, one series per bin count in `low..=high`.
pub async fn series_by_bins(
    pool: &PgPool,
    metric: &str,
    stage: &str,
    dataset: &str,
    (low, high): (i32, i32),
) -> sqlx::Result<Vec<SeriesRow<i32>>> {
    sqlx::query_as(
        "select bins, array_agg(architecture_id), array_agg(value) from calibration_metrics
         where metric = $1 and stage = $2 and dataset = $3 and bins between $4 and $5
         group by bins",
    )
    .bind(metric)
    .bind(stage)
    .bind(dataset)
    .bind(low)
    .bind(high)
    .fetch_all(pool)
    .await
}

/// The `metrics` of one dataset and stage, one series per metric at bin count `bins` (or 0,
/// unbinned), keyed `metric@bins` or `metric`; the `= any(…)` predicates let PostgreSQL read
/// only those rows from `calibration_metrics_dataset_idx`.
pub async fn series_by_metric(
    pool: &PgPool,
    stage: &str,
    dataset: &str,
    bins: i32,
    metrics: Vec<&'static str>,
) -> sqlx::Result<Vec<SeriesRow<String>>> {
    sqlx::query_as(
        "select case when bins = 0 then metric else metric || '@' || bins end,
                array_agg(architecture_id), array_agg(value)
         from calibration_metrics where stage = $1 and dataset = $2 and bins = any(array[0, $3]) and metric = any($4)
         group by metric, bins",
    )
    .bind(stage)
    .bind(dataset)
    .bind(bins)
    .bind(metrics)
    .fetch_all(pool)
    .await
}

/// The architectures with a stored accuracy on `dataset` and those accuracies (same order;
/// `None` when there are none).
pub async fn accuracies(
    pool: &PgPool,
    dataset: &str,
) -> sqlx::Result<(Option<Vec<i64>>, Option<Vec<f64>>)> {
    sqlx::query_as(
        "select array_agg(architecture_id), array_agg(accuracy) from calibration_runs
         where dataset = $1 and accuracy is not null",
    )
    .bind(dataset)
    .fetch_one(pool)
    .await
}

/// What [`temperature_pairs`] groups architectures by.
#[derive(Debug, Clone, Copy)]
pub enum PairGroup<'a> {
    /// The architecture's family (`(none)` without one).
    Family,
    /// The count of this op label in the architecture (as text, `0` when absent).
    OpCount(&'a str),
}

/// `(group, pre, post)`: a metric at one bin count before and after temperature scaling, per
/// architecture and dataset (only `dataset` when given).
pub async fn temperature_pairs(
    pool: &PgPool,
    group: PairGroup<'_>,
    metric: &str,
    bins: i32,
    dataset: Option<&str>,
) -> sqlx::Result<Vec<(String, f64, f64)>> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("select ");
    match group {
        PairGroup::Family => sql.push("coalesce(a.family, '(none)')"),
        PairGroup::OpCount(op) => sql
            .push("coalesce(a.op_counts ->> ")
            .push_bind(op.to_string())
            .push(", '0')"),
    };
    sql.push(
        ", pre.value, post.value
         from calibration_metrics pre
         join calibration_metrics post on post.architecture_id = pre.architecture_id and post.dataset = pre.dataset
           and post.metric = pre.metric and post.bins = pre.bins and post.stage = 'post'
         join architectures a on a.id = pre.architecture_id
         where pre.stage = 'pre' and pre.metric = ",
    );
    sql.push_bind(metric.to_string())
        .push(" and pre.bins = ")
        .push_bind(bins);
    if let Some(d) = dataset {
        sql.push(" and pre.dataset = ").push_bind(d.to_string());
    }
    sql.build_query_as().fetch_all(pool).await
}

/// The best-calibrated architectures of a dataset.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct BestEntry {
    pub dataset: String,
    pub architecture_id: i64,
    pub name: Option<String>,
    pub value: f64,
    pub accuracy: Option<f64>,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub op_counts: sqlx::types::Json<BTreeMap<String, u64>>,
}

/// The `limit` architectures with the lowest value of a metric (at one bin count and stage) per
/// dataset (only `dataset` when given), best first.
pub async fn best(
    pool: &PgPool,
    metric: &str,
    bins: i32,
    stage: &str,
    dataset: Option<String>,
    limit: i64,
) -> sqlx::Result<Vec<BestEntry>> {
    sqlx::query_as(
        "select dataset, architecture_id, name, value, accuracy, op_counts from (
           select m.dataset, m.architecture_id, a.name, m.value, r.accuracy, a.op_counts,
                  row_number() over (partition by m.dataset order by m.value, m.architecture_id) as rank
           from calibration_metrics m
           join calibration_runs r using (architecture_id, dataset)
           join architectures a on a.id = m.architecture_id
           where m.metric = $1 and m.bins = $2 and m.stage = $3 and ($4::text is null or m.dataset = $4)
         ) ranked where rank <= $5 order by dataset, rank",
    )
    .bind(metric)
    .bind(bins)
    .bind(stage)
    .bind(dataset)
    .bind(limit)
    .fetch_all(pool)
    .await
}
