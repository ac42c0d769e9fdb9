//! The recipe predictor's training material from a LEMUR extract: every image-classification
//! trial row (epoch, hyperparameters, accuracy) of the models whose ONNX graph is in
//! `onnx/lemur_onnx.tar.gz` (see `../shared/data/lemur/README.md`).

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Deserialize;

use super::train::{Graph, Row, TrainingSet};
use super::{CompleteRecipe, DATASETS, GraphDescriptor};
use crate::graph::BuildOptions;
use crate::graph::StoredGraph;
use crate::lemur::DEFAULT_GRAPH_DATASET;

/// A LEMUR model's family: its name up to the first `-` (`FractalNet`, `rag`, `alt`, …).
pub fn family(nn: &str) -> &str {
    nn.split('-').next().unwrap_or(nn)
}

#[derive(Deserialize)]
struct StatRow {
    task: String,
    dataset: String,
    metric: String,
    nn: String,
    epoch: f64,
    accuracy: f64,
    transform: String,
    prm: serde_json::Map<String, serde_json::Value>,
}

/// Reads `dir/onnx/lemur_onnx.tar.gz` and `dir/lemur_stat.jsonl.gz`.
pub fn load(dir: &Path) -> Result<TrainingSet> {
    let tarball = dir.join("onnx/lemur_onnx.tar.gz");
    let mut members = Vec::new();
    let file =
        std::fs::File::open(&tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().context("reading the ONNX tarball")? {
        let mut entry = entry.context("reading the ONNX tarball")?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".onnx") else {
            continue;
        };
        let (nn, dataset) = match DATASETS
            .iter()
            .find_map(|(d, _)| stem.strip_suffix(&format!("_{d}")).map(|nn| (nn, *d)))
        {
            Some((nn, d)) => (nn.to_string(), d.to_string()),
            None => (stem.to_string(), DEFAULT_GRAPH_DATASET.to_string()),
        };
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        members.push((nn, dataset, bytes));
    }
    let built: Vec<Option<Graph>> = crate::cpu::on_pool(|| {
        members
            .into_par_iter()
            .map(|(nn, dataset, bytes)| {
                let dataset_index = DATASETS.iter().position(|(d, _)| *d == dataset)?;
                match crate::ingest::analyse(bytes.into(), BuildOptions::default()) {
                    Ok(model) => {
                        let stored = StoredGraph::from(&model.graph);
                        Some(Graph {
                            family: family(&nn).to_string(),
                            name: nn,
                            dataset: dataset_index,
                            descriptor: GraphDescriptor::new(stored.as_cg()),
                        })
                    }
                    Err(e) => {
                        tracing::warn!(%nn, %dataset, error = %e, "graph not ingested");
                        None
                    }
                }
            })
            .collect()
    });
    let graphs: Vec<Graph> = built.into_iter().flatten().collect();
    let by_key: HashMap<(&str, usize), usize> = graphs
        .iter()
        .enumerate()
        .map(|(i, g)| ((g.name.as_str(), g.dataset), i))
        .collect();

    let stats = dir.join("lemur_stat.jsonl.gz");
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&stats).with_context(|| format!("opening {}", stats.display()))?,
    ));
    let mut rows = Vec::new();
    for line in reader.lines() {
        let line = line.with_context(|| format!("reading {}", stats.display()))?;
        // Cheap pre-filter: most rows are of other tasks.
        if !line.contains("\"img-classification\"") {
            continue;
        }
        let r: StatRow = serde_json::from_str(&line).context("a LEMUR stat row")?;
        if r.task != "img-classification" || r.metric != "acc" || !r.accuracy.is_finite() {
            continue;
        }
        let Some(dataset) = DATASETS.iter().position(|(d, _)| *d == r.dataset) else {
            continue;
        };
        let Some(&graph) = by_key.get(&(r.nn.as_str(), dataset)) else {
            continue;
        };
        let number = |k: &str| {
            r.prm
                .get(k)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        rows.push(Row {
            graph,
            dataset,
            recipe: CompleteRecipe {
                epoch: r.epoch,
                lr: number("lr"),
                momentum: number("momentum"),
                batch: number("batch"),
                dropout: number("dropout"),
                transform: r.transform,
            },
            accuracy: r.accuracy.clamp(0.0, 1.0),
        });
    }
    anyhow::ensure!(
        !rows.is_empty(),
        "no LEMUR image-classification rows with a graph in {}",
        dir.display()
    );
    Ok(TrainingSet { graphs, rows })
}
