//! Stored calibration figures: one run row per (architecture, dataset) and its figures in long
//! format (`metric`, `bins`, `stage`, `value`), so every filter and correlation is one query.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
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
