//! Helpers shared by the evaluation examples (`nb201_eval`, `transfer_eval`): the NB201 cells
//! with their CIFAR-10 200-epoch test accuracy, built into featurised CGs, and mean ± sd.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use archdb::db::architectures::StoredGraph;
use archdb::generate::nb201_model;
use archdb::graph::BuildOptions;
use archdb::predict::{PreparedGraph, TrainConfig};

/// The NB201 table of `data/nasbench201` (CIFAR-10, 200 epochs, mean over seeds).
pub const NB201_CSV: &str = "data/nasbench201/nb201_tss_200ep_test.csv.gz";

/// `(arch_str, CIFAR-10 200-epoch test accuracy)` in official index order.
pub fn nb201_accuracies(path: &str) -> Result<Vec<(String, f64)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file));
    let mut rows = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if i == 0 {
            if !line.starts_with("arch_index,arch_str,c10_test_acc_200ep") {
                bail!("unexpected header in {path}: {line}");
            }
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let index: usize = fields[0].parse()?;
        if index != rows.len() {
            bail!("{path}: row {index} out of order");
        }
        rows.push((fields[1].to_string(), fields[2].parse()?));
    }
    Ok(rows)
}

/// The CG of an NB201 cell (CIFAR-10 head) as archdb ingests it.
pub fn nb201_cg(arch: &str) -> Result<StoredGraph> {
    let ingested = archdb::ingest::ingest_model(nb201_model(arch, 10)?, BuildOptions::default())?;
    Ok(StoredGraph::from(&ingested.graph))
}

/// A comma-separated list (`0,1,2`).
pub fn parse_list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .ok()
                .context(format!("bad list item '{x}'"))
        })
        .collect()
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

/// `f` over `items` on every core, in order (building CGs is ~3 ms an item on one).
pub fn map_parallel<T: Sync, U: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<U> + Sync,
) -> Result<Vec<U>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = items.len().div_ceil(threads).max(1);
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per_thread)
            .map(|chunk| s.spawn(|| chunk.iter().map(&f).collect::<Result<Vec<U>>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(parts.into_iter().flatten().collect())
}

/// `f` of the CG of every NB201 cell, on every core, in order.
pub fn nb201_graphs<U: Send>(
    archs: &[String],
    f: impl Fn(StoredGraph) -> Result<U> + Sync,
) -> Result<Vec<U>> {
    map_parallel(archs, |arch| f(nb201_cg(arch)?))
}

/// Prints how many graphs were featurised, how long it took and their size.
pub fn report_prepared(
    what: &str,
    graphs: &[Arc<PreparedGraph>],
    config: &TrainConfig,
    started: Instant,
) {
    if graphs.is_empty() {
        return;
    }
    let nodes: usize = graphs.iter().map(|g| g.num_nodes).sum();
    let rows = graphs.iter().fold((0, 0), |(r, n), g| {
        let (a, b) = g.unique_rows();
        (r + a, n + b)
    });
    println!(
        "built {} {what} CGs ({} layers) in {:.1} s: {:.1} nodes on average, {:.2}× fewer GNN \
         rows after WL deduplication",
        graphs.len(),
        config.encoder.layers,
        started.elapsed().as_secs_f64(),
        nodes as f64 / graphs.len() as f64,
        rows.1 as f64 / rows.0 as f64
    );
}
