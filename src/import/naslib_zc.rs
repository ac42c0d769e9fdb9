//! `archdb import naslib-zc DIR`: NASLib's NAS-Bench-Suite-Zero samples (DIR laid out like
//! `shared/data/nas_bench_suite_zero`): zero-cost proxy scores and validation accuracies of
//! NB101, NB201, NB301 and TransNAS-Bench-101 micro/macro architectures. Each sample gives one
//! `results` row per proxy (metric = the proxy's name, e.g. `synflow`; NASLib's `flops` proxy is
//! in MFLOPs, `params` in millions) and one for its validation figure; `nn` is NASLib's encoding
//! string verbatim.
//!
//! NB101, NB301 and TransNAS-Bench-101 samples (the tasks with a linear head: class_scene,
//! class_object, room_layout) are generated as networks ([`crate::generate::naslib`]) and stored
//! as architectures with their encoding as an alias in `naslib:{space}` (TransNAS:
//! `naslib:{space}:{task}`, the head differs per task). NB201 cells are `import nb201`'s: an
//! NB201 sample's encoding is decoded to its cell string, and where that has an `nb201-arch`
//! alias the encoding becomes an alias in `naslib:nasbench201`. Every row then points to its
//! sample's architecture through these aliases; the TransNAS tasks without a linear head stay
//! unlinked. The import links rows of earlier imports too, so `nb201` and `naslib-zc` can be
//! imported in either order.
//!
//! Encodings of different spaces can coincide (97 strings of the shared file are 6-tuples used
//! by two or three of NB201 and the TransNAS spaces), so each row records its space in
//! `hyperparameters` (`search_space`, with NASLib's `naslib_idx`) and its source key starts with
//! it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Import, ImportKind, Progress, Summary, Unit, build_in_background, copy_merge, open_gz, par_map,
};
use crate::db::architectures::{self, NewArchitecture};
use crate::generate::Nb201Op;
use crate::generate::naslib::{has_model, sample_model};
use crate::generate::nb201::nb201_arch_string;
use crate::graph::BuildOptions;
use crate::import::nb201;
use crate::ingest::{Ingested, ingest_model};

/// `results.benchmark` of NAS-Bench-Suite-Zero rows.
pub const BENCHMARK: &str = "naslib-zc";

const FILE: &str = "nas_bench_suite_zero_samples.jsonl.gz";

/// NASLib's name of the NB201 space; aliases of its encodings are in `naslib:nasbench201`.
const NB201_SPACE: &str = "nasbench201";

const RESULT_COLUMNS: &[&str] = &[
    "benchmark",
    "source_key",
    "task",
    "dataset",
    "metric",
    "nn",
    "value",
    "split",
    "hyperparameters",
];

/// One line of the samples file. Scores are JSON values because Python's `json` writes
/// `-Infinity` (read through [`quote_non_finite`] as a string) for some of them.
#[derive(Deserialize)]
struct Sample {
    search_space: String,
    task: String,
    naslib_encoding: String,
    naslib_idx: Option<String>,
    val_accuracy: Value,
    /// NB201 / TransNAS architecture string decoded by the file's author.
    arch_str: Option<String>,
    /// NB101 `{matrix, ops}` decoded by the file's author.
    nb101_spec: Option<Value>,
    /// NB301 DARTS genotype decoded by the file's author.
    darts_genotype: Option<Value>,
    zero_cost: BTreeMap<String, Value>,
}

impl Sample {
    /// `(task, dataset, metric of val_accuracy)`. NASLib's `task` is the dataset for the
    /// NAS-Bench spaces and a Taskonomy task for TransNAS-Bench-101, whose `val_accuracy` holds a
    /// different figure per task (see the data README).
    fn target(&self) -> Result<(&str, &str, &'static str)> {
        match self.search_space.as_str() {
            "nasbench101" | "nasbench201" | "nasbench301" => {
                Ok(("img-classification", &self.task, "acc"))
            }
            "transbench101_micro" | "transbench101_macro" => {
                let metric = match self.task.as_str() {
                    "class_scene" | "class_object" | "jigsaw" => "acc",
                    "room_layout" => "neg_loss",
                    "segmentsemantic" => "pixel_acc",
                    "autoencoder" | "normal" => "ssim",
                    other => bail!("unknown TransNAS-Bench-101 task {other}"),
                };
                Ok((&self.task, "taskonomy", metric))
            }
            other => bail!("unknown search space {other}"),
        }
    }
}

impl Sample {
    /// The alias namespace of the sample's architecture (see the module docs).
    fn namespace(&self) -> String {
        if self.search_space.starts_with("transbench101") {
            format!("naslib:{}:{}", self.search_space, self.task)
        } else {
            format!("naslib:{}", self.search_space)
        }
    }

    /// The generated network's family.
    fn family(&self) -> &'static str {
        match self.search_space.as_str() {
            "nasbench101" => "nb101",
            "nasbench301" => "nb301",
            "transbench101_micro" => "tnb101-micro",
            _ => "tnb101-macro",
        }
    }

    /// The sample's network, or `None` where archdb does not generate it here.
    fn model(&self) -> Result<Option<crate::onnx::proto::ModelProto>> {
        let value = json!({
            "nb101_spec": self.nb101_spec,
            "darts_genotype": self.darts_genotype,
            "arch_str": self.arch_str,
        });
        sample_model(&self.search_space, &self.task, &value).with_context(|| {
            format!(
                "{} {} sample {}",
                self.search_space, self.task, self.naslib_encoding
            )
        })
    }
}

/// Graphs built and stored per batch.
const BATCH: usize = 256;

/// Generates and ingests the networks of samples `batch` on every core: `(sample index, graph)`.
fn build_networks(
    samples: &[(Sample, Option<String>)],
    batch: &[usize],
) -> Result<Vec<(usize, Ingested)>> {
    par_map(batch, |&i| {
        let model = samples[i]
            .0
            .model()?
            .context("a sample of a generated space without a network")?;
        Ok((i, ingest_model(model, BuildOptions::default())?))
    })
}

/// A score as a number; `-Infinity` and friends were quoted by [`quote_non_finite`].
fn score(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str()?.parse().ok())
}

/// Quotes the non-JSON literals Python's `json` writes for non-finite floats, so that serde
/// reads them as strings. They only ever occur as dict values (`"key": -Infinity`), and NASLib's
/// strings (encodings, op names) never contain `": "` followed by such a literal.
fn quote_non_finite(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains("Infinity") && !line.contains("NaN") {
        return line.into();
    }
    line.replace(": -Infinity", ": \"-Infinity\"")
        .replace(": Infinity", ": \"Infinity\"")
        .replace(": NaN", ": \"NaN\"")
        .into()
}

/// The NB201 cell string of NASLib's NB201 encoding `(e0, …, e5)`: NASLib orders the edges
/// (1,2), (1,3), (1,4), (2,3), (2,4), (3,4) over nodes 1–4 and numbers the ops
/// skip_connect, none, nor_conv_3x3, nor_conv_1x1, avg_pool_3x3; the cell string orders the
/// edges 0→1, 0→2, 1→2, 0→3, 1→3, 2→3.
fn nb201_arch(encoding: &str) -> Result<String> {
    const OPS: [Nb201Op; 5] = [
        Nb201Op::SkipConnect,
        Nb201Op::None,
        Nb201Op::NorConv3x3,
        Nb201Op::NorConv1x1,
        Nb201Op::AvgPool3x3,
    ];
    /// The NASLib edge of each position of the cell string.
    const EDGE: [usize; 6] = [0, 1, 3, 2, 4, 5];
    let ops: Vec<Nb201Op> = encoding
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(|op| {
            op.trim()
                .parse::<usize>()
                .ok()
                .and_then(|i| OPS.get(i).copied())
        })
        .collect::<Option<_>>()
        .with_context(|| format!("NB201 encoding {encoding}: not a tuple of op ids 0–4"))?;
    anyhow::ensure!(ops.len() == 6, "NB201 encoding {encoding}: not 6 edges");
    Ok(nb201_arch_string(&EDGE.map(|e| ops[e])))
}

/// Reads every sample; checks the decoded NB201 cells against the file's own `arch_str`.
fn read_samples(
    path: &Path,
    progress: &Arc<dyn Progress>,
) -> Result<Vec<(Sample, Option<String>)>> {
    let mut samples = Vec::new();
    for (number, line) in open_gz(path, "naslib-zc samples", progress)?
        .lines()
        .enumerate()
    {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let sample: Sample = serde_json::from_str(&quote_non_finite(&line))
            .with_context(|| format!("{} line {}: not a sample", path.display(), number + 1))?;
        let cell = if sample.search_space == NB201_SPACE {
            let cell = nb201_arch(&sample.naslib_encoding)?;
            if let Some(given) = sample.arch_str.as_ref().filter(|&a| *a != cell) {
                bail!(
                    "line {}: encoding {} decodes to {cell}, the file says {given}",
                    number + 1,
                    sample.naslib_encoding
                );
            }
            Some(cell)
        } else {
            None
        };
        samples.push((sample, cell));
    }
    Ok(samples)
}

/// Imports every sample's scores and accuracy; links NB201 samples to stored cells.
pub async fn import(
    pool: &sqlx::PgPool,
    dir: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Summary> {
    let samples = read_samples(&dir.join(FILE), &progress)?;
    let mut import = Import::begin(pool, ImportKind::NaslibZc, dir).await?;

    // NASLib's encodings of the stored cells become aliases; rows are linked through them below.
    let cells: Vec<&str> = samples.iter().filter_map(|(_, c)| c.as_deref()).collect();
    let stored: HashMap<String, i64> =
        sqlx::query_as("select value, architecture_id from architecture_aliases where namespace = $1 and value = any($2)")
            .bind(nb201::ARCH_ALIAS)
            .bind(&cells)
            .fetch_all(&mut *import.tx)
            .await?
            .into_iter()
            .collect();
    let alias_namespace = format!("naslib:{NB201_SPACE}");
    let mut aliased = HashSet::new();
    for (sample, cell) in &samples {
        if let Some(&id) = cell.as_ref().and_then(|c| stored.get(c))
            && aliased.insert(&sample.naslib_encoding)
        {
            architectures::add_alias(
                &mut import.tx,
                &alias_namespace,
                &sample.naslib_encoding,
                id,
            )
            .await?;
        }
    }
    // NB101, NB301 and TransNAS networks, stored with their encoding as an alias. Each batch
    // generates its own models: all 5,407 held at once took 4 GB.
    let samples = Arc::new(samples);
    let with_network: Vec<usize> = (0..samples.len())
        .filter(|&i| has_model(&samples[i].0.search_space, &samples[i].0.task))
        .collect();
    progress.phase("naslib-zc graphs", with_network.len() as u64, Unit::Items);
    let generated = with_network.len();
    let mut created = 0u64;
    let mut batches = build_in_background(with_network, BATCH, {
        let samples = samples.clone();
        move |batch| build_networks(&samples, batch)
    });
    while let Some(built) = batches.recv().await {
        let built = built?;
        let metas: Vec<NewArchitecture> = built
            .iter()
            .map(|(i, _)| {
                let sample = &samples[*i].0;
                NewArchitecture {
                    name: Some(sample.naslib_encoding.clone()),
                    family: Some(sample.family().into()),
                    source: Some(sample.namespace()),
                }
            })
            .collect();
        let items: Vec<_> = built.iter().map(|(_, g)| g).zip(&metas).collect();
        let stored = architectures::insert_batch_in(&mut import.tx, &items).await?;
        created += stored.iter().filter(|(_, new)| *new).count() as u64;
        progress.advance(built.len() as u64);
    }
    let sample_count = samples.len();

    let p = progress.clone();
    let (read, added) = copy_merge(
        &mut import.tx,
        import.id,
        "results",
        RESULT_COLUMNS,
        move |sink| {
            p.phase("naslib-zc results", samples.len() as u64, Unit::Items);
            for (sample, _) in samples.iter() {
                let (task, dataset, accuracy_metric) = sample.target()?;
                let hyperparameters =
                    json!({"search_space": sample.search_space, "naslib_idx": sample.naslib_idx});
                let figures = std::iter::once((
                    "val_accuracy",
                    accuracy_metric,
                    Some("valid"),
                    &sample.val_accuracy,
                ))
                .chain(
                    sample
                        .zero_cost
                        .iter()
                        .map(|(proxy, v)| (proxy.as_str(), proxy.as_str(), None, v)),
                );
                for (field, metric, split, value) in figures {
                    let key = format!(
                        "{}/{}/{}/{field}",
                        sample.search_space, sample.task, sample.naslib_encoding
                    );
                    sink.text(BENCHMARK)
                        .text(&key)
                        .text(task)
                        .text(dataset)
                        .text(metric)
                        .text(&sample.naslib_encoding);
                    sink.float(score(value))
                        .opt_text(split)
                        .json(&hyperparameters);
                    sink.end_row()?;
                }
                p.advance(1);
            }
            Ok(())
        },
    )
    .await?;

    // One path links this import's rows and those of an import that ran before `import nb201`:
    // each row's alias namespace is its sample's (`Sample::namespace`).
    let linked = sqlx::query(
        "update results r set architecture_id = a.architecture_id
         from architecture_aliases a
         where r.benchmark = $1 and r.architecture_id is null
           and a.namespace = 'naslib:' || (r.hyperparameters->>'search_space')
               || case when r.hyperparameters->>'search_space' like 'transbench101%'
                       then ':' || r.task::text else '' end
           and a.value = r.nn",
    )
    .bind(BENCHMARK)
    .execute(&mut *import.tx)
    .await?
    .rows_affected();
    progress.done();
    let details = json!({
        "samples": sample_count,
        "results": {"read": read, "added": added},
        "architectures": {"generated": generated, "added": created},
        "nb201_cells_found": stored.len(),
        "rows_linked": linked,
    });
    import
        .finish(
            pool,
            read + generated as u64,
            added + created,
            details,
            &["results", "architectures"],
        )
        .await
}
