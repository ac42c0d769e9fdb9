//! `archdb ingest DIR`: every `.onnx` file under DIR stored as an architecture, in batches that
//! go through the same steps as `POST /v1/architectures/batch` (parse on every core, one
//! transaction per batch, deduplicated by graph hash), straight into the database like the
//! other commands. The next batch is parsed while the last one is stored.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::PgPool;

use crate::db::architectures::NewArchitecture;
use crate::graph::BuildOptions;
use crate::ingest::{self, Stored};

/// What `archdb ingest` stores and how.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestOptions {
    /// Model family of every file.
    #[arg(long)]
    pub family: Option<String>,
    /// Alias namespace of the files' names (their file names without `.onnx`; default `upload`).
    #[arg(long)]
    pub source: Option<String>,
    /// Files per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Most ONNX nodes accepted per model.
    #[arg(long, env = "ARCHDB_MAX_NODES", default_value_t = 200_000)]
    pub max_nodes: usize,
}

/// What an ingest did; printed as JSON.
#[derive(Debug, Serialize)]
pub struct IngestSummary {
    pub files: usize,
    pub created: usize,
    pub existing: usize,
    pub failed: usize,
    pub seconds: f64,
    pub files_per_second: f64,
    /// The files that were not stored, and why.
    pub problems: Vec<FileProblem>,
}

#[derive(Debug, Serialize)]
pub struct FileProblem {
    pub file: PathBuf,
    pub error: String,
}

/// Ingests every `.onnx` file under `dir`. A file that is not a usable model is reported in the
/// summary and the rest are stored; a file that cannot be read, or a database failure, stops the
/// ingest (batches committed before stay; a rerun adds only what is missing).
pub async fn run(pool: &PgPool, dir: &Path, options: &IngestOptions) -> Result<IngestSummary> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    if let Some(source) = options
        .source
        .as_deref()
        .filter(|s| crate::import::is_reserved_namespace(s))
    {
        anyhow::bail!("source `{source}` is an alias namespace reserved for `archdb import`");
    }
    let started = Instant::now();
    let files = crate::import::onnx_bench::onnx_files(dir)?;
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} files {per_sec} eta {eta} {msg}",
        )?
        .progress_chars("=> "),
    );
    let mut summary = IngestSummary {
        files: files.len(),
        created: 0,
        existing: 0,
        failed: 0,
        seconds: 0.0,
        files_per_second: 0.0,
        problems: Vec::new(),
    };
    let build = BuildOptions {
        max_nodes: options.max_nodes,
    };
    let mut batches =
        crate::import::build_in_background(files, options.batch as usize, move |paths| {
            let bytes = paths
                .iter()
                .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
                .map(|r| r.map(bytes::Bytes::from))
                .collect::<Result<Vec<_>>>()?;
            Ok(paths
                .iter()
                .cloned()
                .zip(ingest::ingest_all(bytes, build))
                .collect())
        });
    while let Some(built) = batches.recv().await {
        let built = built?;
        let n = built.len() as u64;
        let (paths, models): (Vec<PathBuf>, Vec<_>) = built.into_iter().unzip();
        let items = models
            .into_iter()
            .zip(&paths)
            .map(|(model, path)| {
                let meta = NewArchitecture {
                    name: path.file_stem().map(|s| s.to_string_lossy().into_owned()),
                    family: options.family.clone(),
                    source: options.source.clone(),
                };
                (model, meta)
            })
            .collect();
        for (path, stored) in paths
            .into_iter()
            .zip(ingest::store_batch(pool, items).await?)
        {
            match stored {
                Stored::Created(_) => summary.created += 1,
                Stored::Existing(_) => summary.existing += 1,
                Stored::Rejected(e) => {
                    summary.failed += 1;
                    summary.problems.push(FileProblem {
                        file: path,
                        error: e.to_string(),
                    });
                }
            }
        }
        bar.inc(n);
        bar.set_message(format!(
            "{} new, {} known, {} failed",
            summary.created, summary.existing, summary.failed
        ));
    }
    bar.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    summary.files_per_second = summary.files as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}
