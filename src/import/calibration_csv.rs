//! `archdb import calibration-csv PATH`: the published CSVs of "A Benchmark Study on
//! Calibration" (ICLR 2024), one per dataset and search space. Columns:
//! `{pre,post}_{ece,ece_em,cwce,cwce_em,mce}_{bins}`, `{pre,post}_{ksce,kdece,mmce,nll,brier}`,
//! `acc` (percent or fraction), the NB201 architecture string (`arch` / `arch_str`), and an
//! optional `dataset` column; otherwise the dataset comes from the file name (`cifar10`,
//! `cifar100`, `ImageNet16-120`). Rows map to NB201 cells through the `nb201-arch` alias; a
//! cell not stored yet is generated and ingested. One transaction; re-imports replace figures.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::nb201::{ARCH_ALIAS, INDEX_ALIAS};
use super::{Import, ImportKind, Progress, Unit};
use crate::db::architectures::{self, NewArchitecture};
use crate::db::calibration::{self, CalibrationRecord, Figures};
use crate::generate::nb201::nb201_index;
use crate::generate::nb201_model;
use crate::graph::BuildOptions;

/// The dataset a benchmark file is about, from its name.
fn dataset_from_name(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    if name.contains("imagenet") {
        Some("ImageNet16-120")
    } else if name.contains("cifar100") || name.contains("cifar-100") {
        Some("cifar100")
    } else if name.contains("cifar10") || name.contains("cifar-10") {
        Some("cifar10")
    } else {
        None
    }
}

/// `(stage, metric, bins)` of a figure column, e.g. `post_cwce_em_15` → (post, cwce_em, 15).
fn parse_column(column: &str) -> Option<(&str, &str, u32)> {
    let (stage, rest) = column.split_once('_')?;
    if !matches!(stage, "pre" | "post") {
        return None;
    }
    if calibration::SCALAR_METRICS.contains(&rest) {
        return Some((stage, rest, 0));
    }
    let (metric, bins) = rest.rsplit_once('_')?;
    calibration::BINNED_METRICS
        .contains(&metric)
        .then_some(())?;
    Some((stage, metric, bins.parse().ok()?))
}

/// Imports one benchmark CSV into the calibration tables.
pub async fn import(
    pool: &sqlx::PgPool,
    path: &Path,
    progress: Arc<dyn Progress>,
) -> Result<super::Summary> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let column = |names: &[&str]| headers.iter().position(|h| names.contains(&h));
    let Some(arch_col) = column(&["arch", "arch_str", "arch_string"]) else {
        bail!(
            "{}: no architecture column (arch / arch_str)",
            path.display()
        );
    };
    let dataset_col = column(&["dataset"]);
    let acc_col = column(&["acc", "accuracy"]);
    let default_dataset = dataset_from_name(path);
    let figures: Vec<(usize, (&str, &str, u32))> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((i, parse_column(h)?)))
        .collect();
    if figures.is_empty() {
        bail!(
            "{}: no calibration columns ({{pre,post}}_<metric>[_<bins>])",
            path.display()
        );
    }
    let records: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    let mut import = Import::begin(pool, ImportKind::CalibrationCsv, path).await?;
    progress.phase("calibration rows", records.len() as u64, Unit::Items);
    let (mut stored, mut new_graphs) = (0u64, 0u64);
    let source = format!(
        "import:{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    for (line, record) in records.iter().enumerate() {
        let arch = record.get(arch_col).unwrap_or_default().trim();
        let dataset = match dataset_col
            .and_then(|c| record.get(c))
            .filter(|d| !d.is_empty())
        {
            Some(d) => d.to_string(),
            None => default_dataset
                .with_context(|| {
                    format!(
                        "{}: no dataset column and none in the file name",
                        path.display()
                    )
                })?
                .to_string(),
        };
        let id: Option<i64> = sqlx::query_scalar(
            "select architecture_id from architecture_aliases where namespace = $1 and value = $2",
        )
        .bind(ARCH_ALIAS)
        .bind(arch)
        .fetch_optional(&mut *import.tx)
        .await?;
        let id = match id {
            Some(id) => id,
            None => {
                let index = nb201_index(arch).with_context(|| format!("row {}", line + 2))?;
                let model = crate::ingest::ingest(
                    prost::Message::encode_to_vec(&nb201_model(arch, 10)?).into(),
                    BuildOptions::default(),
                )?;
                let meta = NewArchitecture {
                    name: Some(format!("nb201-{index}")),
                    family: Some("nb201".into()),
                    source: Some(INDEX_ALIAS.into()),
                };
                let (a, created) = architectures::insert_in(&mut import.tx, &model, &meta).await?;
                architectures::add_alias(&mut import.tx, INDEX_ALIAS, &index.to_string(), a.id)
                    .await?;
                architectures::add_alias(&mut import.tx, ARCH_ALIAS, arch, a.id).await?;
                new_graphs += u64::from(created);
                a.id
            }
        };
        let (mut pre, mut post) = (Figures::default(), Figures::default());
        for &(i, (stage, metric, bins)) in &figures {
            let Some(value) = record.get(i).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value: f64 = value
                .parse()
                .with_context(|| format!("row {}: {} = {value}", line + 2, &headers[i]))?;
            if stage == "pre" { &mut pre } else { &mut post }.set(metric, bins, value);
        }
        // Accuracy is published in percent; store fractions like computed figures.
        let accuracy = acc_col
            .and_then(|c| record.get(c))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|a| if a > 1.0 { a / 100.0 } else { a });
        let record = CalibrationRecord {
            architecture_id: id,
            dataset,
            accuracy,
            temperature: None,
            n_samples: None,
            source: source.clone(),
            settings: json!({"bin_rule": "right_closed", "protocol": "benchmark CSV"}),
            pre,
            post: (post != Figures::default()).then_some(post),
            reliability: None,
        };
        calibration::store(&mut import.tx, &record).await?;
        stored += 1;
        progress.advance(1);
    }
    progress.done();
    let details = json!({"calibration_runs": stored, "architectures_added": new_graphs, "figure_columns": figures.len()});
    import
        .finish(
            pool,
            records.len() as u64,
            stored,
            details,
            &["calibration_metrics"],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_of_the_benchmark_layout() {
        assert_eq!(parse_column("pre_ece_15"), Some(("pre", "ece", 15)));
        assert_eq!(
            parse_column("post_cwce_em_500"),
            Some(("post", "cwce_em", 500))
        );
        assert_eq!(parse_column("post_kdece"), Some(("post", "kdece", 0)));
        assert_eq!(parse_column("pre_auc_svhn"), None);
        assert_eq!(parse_column("acc"), None);
        assert_eq!(
            dataset_from_name(Path::new("/x/tss_ImageNet16-120.csv")),
            Some("ImageNet16-120")
        );
        assert_eq!(
            dataset_from_name(Path::new("cifar100_tss.csv")),
            Some("cifar100")
        );
    }
}
