//! `archdb import onnx-bench DIR`: ONNX-Bench (Qin et al. 2025) files, one simplified ONNX model
//! per trained network with its accuracy (0–100) in `metadata_props[0]`. The search space comes
//! from the folder (`nasbench201_simplify/`, …) or the file name, the dataset from a folder
//! after it (`einspace_simplify/cifar10/<seed>/`), else CIFAR-10, ONNX-Bench's only dataset.
//! Each file becomes an architecture (alias `onnx-bench` = its key `<space>/<dataset>/<name>`)
//! and a `results` row of benchmark `onnx-bench`, all in one transaction; a re-run adds nothing
//! and parses no file whose key is known. Files written by `archdb export onnx-bench` also carry
//! the model name, epoch and split in `archdb_*` metadata keys, which are read back.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;

use super::{
    Import, ImportKind, Progress, Summary, Unit, build_in_background, copy_merge, par_map,
};
use crate::db::architectures::{self, NewArchitecture};
use crate::graph::BuildOptions;
use crate::ingest::{Ingested, ingest_model};
use crate::onnx::proto::ModelProto;

pub const BENCHMARK: &str = "onnx-bench";
/// Alias namespace of the architectures, and their `source`.
pub const ALIAS: &str = "onnx-bench";
/// ONNX-Bench's dataset when the path names none.
pub const DEFAULT_DATASET: &str = "cifar10";

/// Metadata keys archdb writes beside ONNX-Bench's accuracy (which is the first entry).
pub const META_ACCURACY: &str = "accuracy";
pub const META_NN: &str = "archdb_nn";
pub const META_BENCHMARK: &str = "archdb_benchmark";
pub const META_DATASET: &str = "archdb_dataset";
pub const META_METRIC: &str = "archdb_metric";
pub const META_EPOCH: &str = "archdb_epoch";
pub const META_SPLIT: &str = "archdb_split";

/// ONNX-Bench's folder names of its search spaces (`<name>_simplify`, and the names of its
/// training CSVs) → archdb's benchmark names.
const SPACES: &[(&str, &str)] = &[
    ("nasbench101", "nb101"),
    ("nasbench201", "nb201"),
    ("nas201nats", "nats-sss"),
    ("natsbench", "nats-sss"),
    ("nasbench301", "nb301"),
    ("hnasbench201", "hnas-bench-201"),
    ("einspace", "einspace"),
];

/// The ONNX-Bench space name of an archdb benchmark (the export's folder `<name>_simplify`).
pub fn space_folder(benchmark: &str) -> &str {
    SPACES
        .iter()
        .find(|(_, b)| *b == benchmark)
        .map_or(benchmark, |(folder, _)| folder)
}

/// Where a file sits: search space, dataset and name, from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// archdb's name of the search space (`nb201`), or the folder's name when unknown.
    pub space: String,
    pub dataset: String,
    /// The path below the space (and dataset) folders without `.onnx`, `/` joined by `_`
    /// (ONNX-Net names einspace models `<seed>_<name>`).
    pub name: String,
}

impl Placement {
    /// The row's and alias's key.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.space, self.dataset, self.name)
    }
}

/// Reads the search space from the last folder named `<space>_simplify` or a known space (else
/// from a known space prefix of the file name), and the dataset from the folder after it when
/// the file is deeper (`einspace_simplify/cifar10/<seed>/<name>.onnx`).
pub fn placement(path: &Path) -> Option<Placement> {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let (file, dirs) = parts.split_last()?;
    let stem = file.strip_suffix(".onnx")?;
    let known = |s: &str| {
        SPACES
            .iter()
            .find(|(f, _)| *f == s)
            .map(|(_, b)| b.to_string())
    };
    let space_of = |dir: &str| match dir.strip_suffix("_simplify") {
        Some(s) => Some(known(s).unwrap_or_else(|| s.to_string())),
        None => known(dir),
    };
    let (space, rest): (String, Vec<&str>) = match dirs.iter().rposition(|d| space_of(d).is_some())
    {
        Some(i) => (
            space_of(&dirs[i])?,
            dirs[i + 1..]
                .iter()
                .map(String::as_str)
                .chain([stem])
                .collect(),
        ),
        None => {
            let (folder, benchmark) = SPACES.iter().find(|(f, _)| {
                stem.strip_prefix(f)
                    .is_some_and(|r| r.starts_with(['_', '-']))
            })?;
            (benchmark.to_string(), vec![&stem[folder.len() + 1..]])
        }
    };
    let (dataset, rest) = match rest.split_first() {
        Some((d, rest)) if !rest.is_empty() => (d.to_string(), rest),
        _ => (DEFAULT_DATASET.to_string(), &rest[..]),
    };
    Some(Placement {
        space,
        dataset,
        name: rest.join("_"),
    })
}

/// One file's model and figures.
struct Entry {
    placement: Placement,
    model: Ingested,
    accuracy: f64,
    nn: String,
    epoch: Option<i64>,
    split: Option<String>,
}

fn metadata<'m>(model: &'m ModelProto, key: &str) -> Option<&'m str> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key() == key)
        .map(|p| p.value())
}

/// Parses one file: the accuracy is `metadata_props[0]` (ONNX-Bench reads it so, whatever its
/// key), the graph goes through the normal ingest path.
fn read_entry(path: &Path, placement: Placement) -> Result<Entry> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let model =
        crate::onnx::decode_model(bytes.into()).with_context(|| format!("{}", path.display()))?;
    let accuracy: f64 = model
        .metadata_props
        .first()
        .map(|p| p.value())
        .with_context(|| format!("{} has no metadata_props: no accuracy", path.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{}: metadata_props[0] is not a number", path.display()))?;
    let nn = metadata(&model, META_NN).map_or_else(|| placement.name.clone(), str::to_string);
    let epoch = metadata(&model, META_EPOCH).and_then(|e| e.parse().ok());
    let split = metadata(&model, META_SPLIT).map(str::to_string);
    let model = ingest_model(model, BuildOptions::default())
        .with_context(|| format!("{}", path.display()))?;
    Ok(Entry {
        placement,
        model,
        accuracy,
        nn,
        epoch,
        split,
    })
}

/// Every `.onnx` file under `dir`, sorted (the import order).
pub(crate) fn onnx_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "onnx") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

const RESULT_COLUMNS: &[&str] = &[
    "benchmark",
    "source_key",
    "task",
    "dataset",
    "metric",
    "nn",
    "epoch",
    "value",
    "split",
    "hyperparameters",
    "architecture_id",
];

/// Files parsed per batch.
const BATCH: usize = 256;

pub async fn import(
    pool: &sqlx::PgPool,
    dir: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Summary> {
    let root = std::path::absolute(dir)?;
    let mut placed = Vec::new();
    for file in onnx_files(&root)? {
        let placement = placement(&file).with_context(|| {
            format!(
                "cannot tell the search space of {}: put it under a folder named <space>_simplify (e.g. nasbench201_simplify)",
                file.display()
            )
        })?;
        placed.push((file, placement));
    }
    anyhow::ensure!(!placed.is_empty(), "no .onnx files under {}", dir.display());
    let mut import = Import::begin(pool, ImportKind::OnnxBench, dir).await?;
    let known: HashSet<String> =
        sqlx::query_scalar("select value from architecture_aliases where namespace = $1")
            .bind(ALIAS)
            .fetch_all(&mut *import.tx)
            .await?
            .into_iter()
            .collect();
    let files = placed.len();
    let todo: Vec<(PathBuf, Placement)> = placed
        .into_iter()
        .filter(|(_, p)| !known.contains(&p.key()))
        .collect();
    let skipped = files - todo.len();

    progress.phase("onnx-bench files", todo.len() as u64, Unit::Items);
    let mut rows = Vec::with_capacity(todo.len());
    let mut created = 0u64;
    let mut batches = build_in_background(todo, BATCH, |batch: &[(PathBuf, Placement)]| {
        par_map(batch, |(path, placement)| {
            read_entry(path, placement.clone())
        })
    });
    while let Some(built) = batches.recv().await {
        let built = built?;
        let metas: Vec<NewArchitecture> = built
            .iter()
            .map(|e| NewArchitecture {
                name: Some(e.placement.key()),
                family: Some(e.placement.space.clone()),
                source: Some(ALIAS.into()),
            })
            .collect();
        let items: Vec<_> = built.iter().map(|e| &e.model).zip(&metas).collect();
        let stored = architectures::insert_batch_in(&mut import.tx, &items).await?;
        progress.advance(built.len() as u64);
        for (entry, (id, is_new)) in built.into_iter().zip(stored) {
            created += u64::from(is_new);
            rows.push((entry, id));
        }
    }

    let (read, added) = copy_merge(
        &mut import.tx,
        import.id,
        "results",
        RESULT_COLUMNS,
        move |sink| {
            for (e, id) in &rows {
                let p = &e.placement;
                sink.text(BENCHMARK)
                    .text(&p.key())
                    .text("img-classification")
                    .text(&p.dataset)
                    .text("acc")
                    .text(&e.nn);
                sink.int(e.epoch)
                    .float(Some(e.accuracy))
                    .opt_text(e.split.as_deref());
                sink.json(&json!({"search_space": p.space}));
                sink.int(Some(*id));
                sink.end_row()?;
            }
            Ok(())
        },
    )
    .await?;
    progress.done();
    let details = json!({
        "files": files, "files_already_imported": skipped,
        "architectures_added": created, "results": {"read": read, "added": added},
    });
    import
        .finish(
            pool,
            files as u64,
            added + created,
            details,
            &["results", "architectures"],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(path: &str) -> Option<(String, String, String)> {
        placement(Path::new(path)).map(|p| (p.space, p.dataset, p.name))
    }

    #[test]
    fn space_and_dataset_come_from_folders_or_the_file_name() {
        let t = |a: &str, b: &str, c: &str| Some((a.into(), b.into(), c.into()));
        assert_eq!(
            place("/d/nasbench201_simplify/123.onnx"),
            t("nb201", "cifar10", "123")
        );
        assert_eq!(
            place("/d/einspace_simplify/cifar10/4/arch_9.onnx"),
            t("einspace", "cifar10", "4_arch_9")
        );
        assert_eq!(
            place("/x/nasbench201_simplify/cifar100/nb201-7.onnx"),
            t("nb201", "cifar100", "nb201-7")
        );
        assert_eq!(
            place("/x/newspace_simplify/m.onnx"),
            t("newspace", "cifar10", "m")
        );
        assert_eq!(
            place("/x/nasbench101_0042.onnx"),
            t("nb101", "cifar10", "0042")
        );
        assert_eq!(place("/x/other/model.onnx"), None);
        assert_eq!(space_folder("nb201"), "nasbench201");
        assert_eq!(space_folder("lemur"), "lemur");
    }
}
