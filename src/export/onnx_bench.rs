//! `archdb export onnx-bench`: stored architectures with a measured accuracy as ONNX-Bench files
//! (Qin et al. 2025), so that ONNX-Net-style predictors can be trained on archdb's data. Layout:
//! `OUT/<space>_simplify/<dataset>/<name>.onnx` (`nasbench201_simplify/cifar10/nb201-0.onnx`)
//! with the accuracy (0–100) as `metadata_props[0]`, followed by `archdb_*` keys naming the
//! figure; `OUT/metadata.csv` (`file_path,accuracy,dataset`, as ONNX-Net's preprocessing
//! writes) and `OUT/onnx-bench-export.json` (what was exported). The models are the stored ones
//! (weights stripped, dims kept: what text encodings and graph predictors read).
//!
//! The export is built in a sibling folder and renamed into place, so `OUT` is either the old
//! export or the complete new one; a re-run writes the same bytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt;
use prost::Message;
use serde::Serialize;

use crate::db::architectures::StoredOnnx;
use crate::import::onnx_bench::{
    META_ACCURACY, META_BENCHMARK, META_DATASET, META_EPOCH, META_METRIC, META_NN, META_SPLIT,
    space_folder,
};
use crate::onnx::proto::{ModelProto, StringStringEntryProto};

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub benchmark: String,
    pub dataset: String,
    pub metric: String,
    /// The figure's epoch; default the largest one with results.
    pub epoch: Option<i32>,
    /// The figure's split; default `test`, else `xtest`, `ori-test`, `valid`, else the only one.
    pub split: Option<String>,
    /// At most this many architectures (in architecture-id order, i.e. import order).
    pub limit: Option<i64>,
    pub out: PathBuf,
}

/// What an export wrote (also `OUT/onnx-bench-export.json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExportSummary {
    pub benchmark: String,
    pub dataset: String,
    pub metric: String,
    pub epoch: Option<i32>,
    pub split: Option<String>,
    pub files: usize,
    /// ONNX-Bench stores percentages: the stored values were multiplied by this.
    pub scale: f64,
}

const MANIFEST: &str = "onnx-bench-export.json";
/// Splits preferred as "the" accuracy when none is asked for.
const SPLIT_PREFERENCE: &[&str] = &["test", "xtest", "ori-test", "valid", "xvalid"];

/// Factor to ONNX-Bench's 0–100 scale: LEMUR stores accuracies as fractions.
fn percent_scale(benchmark: &str) -> f64 {
    if benchmark == crate::lemur::BENCHMARK {
        100.0
    } else {
        1.0
    }
}

/// The (epoch, split) of the figure to export.
async fn choose_figure(
    pool: &sqlx::PgPool,
    o: &ExportOptions,
) -> Result<(Option<i32>, Option<String>)> {
    let combos: Vec<(Option<i32>, Option<String>)> = sqlx::query_as(
        "select distinct epoch, split from results
         where benchmark = $1 and dataset = $2 and metric = $3 and architecture_id is not null
           and value is not null",
    )
    .bind(&o.benchmark)
    .bind(&o.dataset)
    .bind(&o.metric)
    .fetch_all(pool)
    .await?;
    if combos.is_empty() {
        bail!(
            "no `{}` results of benchmark `{}` on dataset `{}` with a stored graph (GET /v1/benchmarks lists what is loaded)",
            o.metric,
            o.benchmark,
            o.dataset
        );
    }
    let epoch = match o.epoch {
        Some(e) => Some(e),
        None => combos.iter().filter_map(|c| c.0).max(),
    };
    let splits: Vec<Option<String>> = combos
        .iter()
        .filter(|c| c.0 == epoch)
        .map(|c| c.1.clone())
        .collect();
    let split = match &o.split {
        Some(s) => Some(s.clone()),
        None => SPLIT_PREFERENCE
            .iter()
            .find(|p| splits.iter().any(|s| s.as_deref() == Some(**p)))
            .map(|p| Some(p.to_string()))
            .or_else(|| (splits.len() == 1).then(|| splits[0].clone()))
            .with_context(|| {
                format!("several splits at epoch {epoch:?}: {splits:?}; choose one with --split")
            })?,
    };
    if !splits.contains(&split) {
        bail!("no results at epoch {epoch:?} and split {split:?}; there are {splits:?}");
    }
    Ok((epoch, split))
}

/// A file-name-safe stem: the architecture's name, else `arch-<id>`.
fn stem(name: Option<&str>, id: i64) -> String {
    match name {
        Some(n) if !n.is_empty() => n
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        _ => format!("arch-{id}"),
    }
}

/// The stored model with ONNX-Bench's accuracy first in `metadata_props` and archdb's keys after.
fn with_metadata(onnx: &[u8], entries: &[(&str, String)]) -> Result<Vec<u8>> {
    let mut model = ModelProto::decode(onnx).context("a stored ONNX model does not decode")?;
    let ours: Vec<StringStringEntryProto> = entries
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: Some(k.to_string()),
            value: Some(v.clone()),
        })
        .collect();
    model
        .metadata_props
        .retain(|p| !entries.iter().any(|(k, _)| *k == p.key()));
    model.metadata_props.splice(0..0, ours);
    Ok(model.encode_to_vec())
}

/// Writes the export; see the module documentation.
pub async fn export(pool: &sqlx::PgPool, o: &ExportOptions) -> Result<ExportSummary> {
    let (epoch, split) = choose_figure(pool, o).await?;
    let out = std::path::absolute(&o.out)?;
    if out.exists() && !(out.join(MANIFEST).is_file() || is_empty_dir(&out)?) {
        bail!(
            "{} exists and is not an archdb ONNX-Bench export; choose a new --out",
            out.display()
        );
    }
    let parent = out.parent().context("--out has no parent folder")?;
    let name = out
        .file_name()
        .context("--out has no name")?
        .to_string_lossy();
    std::fs::create_dir_all(parent)?;
    let stage = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let written = write_stage(pool, o, epoch, split.clone(), &stage).await;
    let files = match written {
        Ok(files) => files,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    let summary = ExportSummary {
        benchmark: o.benchmark.clone(),
        dataset: o.dataset.clone(),
        metric: o.metric.clone(),
        epoch,
        split,
        files,
        scale: percent_scale(&o.benchmark),
    };
    std::fs::write(stage.join(MANIFEST), serde_json::to_vec_pretty(&summary)?)?;
    // Swap: the old export (if any) moves aside, the new one takes its name.
    if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(&out, &old)?;
        std::fs::rename(&stage, &out)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&stage, &out)?;
    }
    Ok(summary)
}

fn is_empty_dir(path: &Path) -> Result<bool> {
    Ok(path.is_dir() && std::fs::read_dir(path)?.next().is_none())
}

/// Writes the files into `stage`; returns how many.
async fn write_stage(
    pool: &sqlx::PgPool,
    o: &ExportOptions,
    epoch: Option<i32>,
    split: Option<String>,
    stage: &Path,
) -> Result<usize> {
    let folder = PathBuf::from(format!("{}_simplify", space_folder(&o.benchmark))).join(&o.dataset);
    std::fs::create_dir_all(stage.join(&folder))?;
    let scale = percent_scale(&o.benchmark);
    /// One exported model.
    #[derive(sqlx::FromRow)]
    struct Row {
        architecture_id: i64,
        nn: String,
        value: f64,
        name: Option<String>,
        #[sqlx(flatten)]
        onnx: StoredOnnx,
    }
    let mut rows = sqlx::query_as::<_, Row>(
        "select distinct on (r.architecture_id) r.architecture_id, r.nn, r.value, a.name, o.onnx, o.codec
         from results r
         join architectures a on a.id = r.architecture_id
         join architecture_onnx o on o.architecture_id = r.architecture_id
         where r.benchmark = $1 and r.dataset = $2 and r.metric = $3 and r.value is not null
           and r.epoch is not distinct from $4 and r.split is not distinct from $5
         order by r.architecture_id, r.seed nulls first, r.id
         limit $6",
    )
    .bind(&o.benchmark)
    .bind(&o.dataset)
    .bind(&o.metric)
    .bind(epoch)
    .bind(&split)
    .bind(o.limit.unwrap_or(i64::MAX))
    .fetch(pool);
    let mut csv = csv::Writer::from_path(stage.join("metadata.csv"))?;
    csv.write_record(["file_path", "accuracy", "dataset"])?;
    let mut used = std::collections::HashSet::new();
    while let Some(row) = rows.try_next().await? {
        let Row {
            architecture_id: id,
            nn,
            value,
            name,
            onnx,
        } = row;
        let onnx = onnx.into_bytes()?;
        let mut file = stem(name.as_deref(), id);
        if !used.insert(file.clone()) {
            file = format!("{file}-{id}");
            used.insert(file.clone());
        }
        let accuracy = (value * scale).to_string();
        let mut meta = vec![
            (META_ACCURACY, accuracy.clone()),
            (META_NN, nn),
            (META_BENCHMARK, o.benchmark.clone()),
            (META_DATASET, o.dataset.clone()),
            (META_METRIC, o.metric.clone()),
        ];
        if let Some(e) = epoch {
            meta.push((META_EPOCH, e.to_string()));
        }
        if let Some(s) = &split {
            meta.push((META_SPLIT, s.clone()));
        }
        let relative = folder.join(format!("{file}.onnx"));
        std::fs::write(stage.join(&relative), with_metadata(&onnx, &meta)?)
            .with_context(|| format!("writing {}", relative.display()))?;
        csv.write_record([relative.to_string_lossy().as_ref(), &accuracy, &o.dataset])?;
    }
    csv.flush()?;
    Ok(used.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_file_names() {
        assert_eq!(stem(Some("nb201-12"), 5), "nb201-12");
        assert_eq!(stem(Some("a/b|c~0"), 5), "a_b_c_0");
        assert_eq!(stem(None, 5), "arch-5");
    }

    #[test]
    fn accuracy_goes_first_in_metadata() {
        let model = ModelProto {
            ir_version: Some(8),
            metadata_props: vec![StringStringEntryProto {
                key: Some("producer_note".into()),
                value: Some("x".into()),
            }],
            ..Default::default()
        };
        let bytes = with_metadata(
            &model.encode_to_vec(),
            &[(META_ACCURACY, "93.5".into()), (META_NN, "n".into())],
        )
        .unwrap();
        let back = ModelProto::decode(&bytes[..]).unwrap();
        let keys: Vec<&str> = back.metadata_props.iter().map(|p| p.key()).collect();
        assert_eq!(keys, ["accuracy", "archdb_nn", "producer_note"]);
        assert_eq!(back.metadata_props[0].value(), "93.5");
    }
}
