//! Transfer across NASLib's search spaces (docs/predictor.md, "Transfer across search spaces"),
//! in-process, no database: the graph predictor trained on one space and tested on another
//! without its labels, then fine-tuned on 50 of them; the zero-cost proxies alone and combined
//! with the graph encoder (gradient-boosted trees) on the same splits; and the LEMUR recipe
//! predictor's zero-shot ranking under its typical CIFAR-10 recipe.
//!
//! * NB101 → NB201: trained on NASLib's NB101 samples (all 500, and 200 drawn by the seed;
//!   samples of the same network averaged), tested on all 15,625 NB201 cells (CIFAR-10
//!   200-epoch test accuracy, mean over seeds); then fine-tuned on 50 of NASLib's 724 NB201
//!   samples and tested on the other 674 and on every other cell.
//! * NB201 → NB301: trained on 1,563 NB201 cells drawn by the seed (the bundled predictor's
//!   recipe), tested on NASLib's 725 NB301 samples; fine-tuned on 50 of them, tested on the
//!   other 675. The bundled artifact is evaluated the same way.
//!
//! ```sh
//! cargo build --release --example transfer_eval
//! RAYON_NUM_THREADS=1 target/release/examples/transfer_eval spaces --seeds 0,1,2,3,4 \
//!     --out docs/results/transfer_spaces.jsonl
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use archdb::db::architectures::StoredGraph;
use archdb::generate::naslib::{parse_sample, sample_model};
use archdb::graph::BuildOptions;
use archdb::predict::recipe::{self, Domain, GraphDescriptor, Recipe};
use archdb::predict::{
    Backend, FinetuneConfig, Prediction, Predictor, PreparedGraph, Scores, TrainConfig,
    TrainSample, train,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::common::{
    NB201_CSV, map_parallel, mean_sd, nb201_accuracies, nb201_graphs, parse_list, report_prepared,
};

const SAMPLES: &str = "../shared/data/nas_bench_suite_zero/nas_bench_suite_zero_samples.jsonl.gz";
const BUNDLED: &str = "data/predictor/nb201-cifar10.safetensors";
/// NASLib's score for a proxy that was not finite (`ZeroCost.query`).
const NOT_FINITE: f64 = -1e8;
/// The recipe predictor's tree budget.
const GBT_BUDGET: f32 = 0.5;

/// Which experiments to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Train on NB101, test on NB201 (and fine-tune on 50 NB201 samples).
    Nb101,
    /// Train on NB201, test on NB301 and NB101 (and fine-tune on 50 NB301 samples).
    Nb201,
    /// The LEMUR recipe predictor on all three spaces.
    Recipe,
}

impl std::str::FromStr for Part {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "nb101" => Part::Nb101,
            "nb201" => Part::Nb201,
            "recipe" => Part::Recipe,
            _ => bail!("unknown part {s}: nb101, nb201, recipe"),
        })
    }
}

struct Args {
    seeds: Vec<u64>,
    parts: Vec<Part>,
    nb101_sizes: Vec<usize>,
    nb201_train: usize,
    /// Seeds for which NB201 → NB301 also trains a fresh NB201 predictor (the bundled artifact
    /// is evaluated on every seed's split).
    retrain_seeds: Vec<u64>,
    finetune: usize,
    samples: String,
    csv: String,
    out: Option<String>,
}

fn args(raw: impl Iterator<Item = String>) -> Result<Args> {
    let mut a = Args {
        seeds: vec![0, 1, 2, 3, 4],
        parts: vec![Part::Nb101, Part::Nb201, Part::Recipe],
        nb101_sizes: vec![500, 200],
        nb201_train: 1_563,
        retrain_seeds: Vec::new(),
        finetune: 50,
        samples: SAMPLES.into(),
        csv: NB201_CSV.into(),
        out: None,
    };
    let mut it = raw;
    while let Some(flag) = it.next() {
        let mut value = || it.next().context(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seeds" => a.seeds = parse_list(&value()?)?,
            "--parts" => a.parts = parse_list(&value()?)?,
            "--nb101-sizes" => a.nb101_sizes = parse_list(&value()?)?,
            "--nb201-train" => a.nb201_train = value()?.parse()?,
            "--retrain-seeds" => a.retrain_seeds = parse_list(&value()?)?,
            "--finetune" => a.finetune = value()?.parse()?,
            "--samples" => a.samples = value()?,
            "--csv" => a.csv = value()?,
            "--out" => a.out = Some(value()?),
            _ => bail!(
                "unknown flag {flag}; flags: --seeds --parts nb101,nb201,recipe --nb101-sizes \
                 --nb201-train --retrain-seeds --finetune --samples --csv --out"
            ),
        }
    }
    Ok(a)
}

/// A NASLib sample of NB101 or NB301 with its generated graph.
struct Sample {
    graph: Arc<PreparedGraph>,
    descriptor: GraphDescriptor,
    hash: String,
    /// NASLib's `val_accuracy` (%).
    accuracy: f64,
    proxies: BTreeMap<String, f64>,
}

/// A NASLib NB201 CIFAR-10 sample: its cell and proxies.
struct Nb201Sample {
    cell: usize,
    /// NASLib's `val_accuracy` (%), a single-run figure.
    naslib_accuracy: f64,
    proxies: BTreeMap<String, f64>,
}

fn proxies(sample: &serde_json::Value) -> BTreeMap<String, f64> {
    sample["zero_cost"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(NOT_FINITE)))
                .collect()
        })
        .unwrap_or_default()
}

/// One evaluation: a model, what it was trained on, what it was tested on, one seed.
#[derive(serde::Serialize)]
struct Row {
    part: &'static str,
    model: String,
    trained_on: String,
    tested_on: String,
    seed: Option<u64>,
    /// Labelled training graphs (distinct networks; 0 for a proxy).
    train_n: usize,
    test_n: usize,
    spearman: f64,
    kendall_tau_b: f64,
    seconds: Option<f64>,
}

/// Collects rows, prints each and appends it to the JSON-lines file as it comes.
struct Log {
    file: Option<std::fs::File>,
    rows: Vec<Row>,
}

impl Log {
    fn push(&mut self, row: Row) -> Result<()> {
        println!(
            "[{}] {} | trained on {} | tested on {} ({}) | seed {} | ρ {:.4} τ {:.4}{}",
            row.part,
            row.model,
            row.trained_on,
            row.tested_on,
            row.test_n,
            row.seed.map_or("-".into(), |s| s.to_string()),
            row.spearman,
            row.kendall_tau_b,
            row.seconds
                .map_or(String::new(), |s| format!(" ({s:.1} s)"))
        );
        if let Some(f) = &mut self.file {
            writeln!(f, "{}", serde_json::to_string(&row)?)?;
            f.flush()?;
        }
        self.rows.push(row);
        Ok(())
    }

    /// Mean ± sd over seeds per (part, model, training set, test set), in first-seen order.
    fn summary(&self) {
        let mut keys: Vec<(&str, &str, &str, &str)> = Vec::new();
        let mut groups: HashMap<(&str, &str, &str, &str), Vec<&Row>> = HashMap::new();
        for r in &self.rows {
            let key = (
                r.part,
                r.model.as_str(),
                r.trained_on.as_str(),
                r.tested_on.as_str(),
            );
            if !groups.contains_key(&key) {
                keys.push(key);
            }
            groups.entry(key).or_default().push(r);
        }
        println!(
            "\n| part | model | trained on | tested on | n test | seeds | Spearman ρ | Kendall τ-b | ρ per seed |\n|---|---|---|---|---|---|---|---|---|"
        );
        for key in keys {
            let rows = &groups[&key];
            let rho: Vec<f64> = rows.iter().map(|r| r.spearman).collect();
            let tau: Vec<f64> = rows.iter().map(|r| r.kendall_tau_b).collect();
            let ((rm, rs), (tm, ts)) = (mean_sd(&rho), mean_sd(&tau));
            let per_seed: Vec<String> = rho.iter().map(|v| format!("{v:.3}")).collect();
            println!(
                "| {} | {} | {} | {} | {} | {} | {rm:.3} ± {rs:.3} | {tm:.3} ± {ts:.3} | {} |",
                key.0,
                key.1,
                key.2,
                key.3,
                rows[0].test_n,
                rows.len(),
                per_seed.join(", ")
            );
        }
    }
}

/// Everything the experiments read, generated and featurised once.
struct Data {
    config: TrainConfig,
    /// NB201 cells in official order: CIFAR-10 200-epoch test accuracy, graph, descriptor.
    nb201_accuracy: Vec<f64>,
    nb201_graphs: Vec<Arc<PreparedGraph>>,
    nb201_descriptors: Vec<GraphDescriptor>,
    /// The 4,096 cells without `none`, GENNAPE's NB201 test family.
    nb201_without_none: Vec<usize>,
    nb201_samples: Vec<Nb201Sample>,
    nb101: Vec<Sample>,
    nb301: Vec<Sample>,
}

impl Data {
    fn load(args: &Args) -> Result<Self> {
        let config = TrainConfig::default();
        let table = nb201_accuracies(&args.csv)?;
        let archs: Vec<String> = table.iter().map(|(a, _)| a.clone()).collect();
        let generated: Vec<String> = archdb::generate::nb201_arch_strings().collect();
        if generated != archs {
            bail!("{}: cells not in the generator's official order", args.csv);
        }
        // NB201 → NB301 with the bundled artifact alone needs no NB201 graph.
        let needs_nb201 = args.parts.iter().any(|p| *p != Part::Nb201)
            || (args.parts.contains(&Part::Nb201) && !args.retrain_seeds.is_empty());
        let started = Instant::now();
        let (nb201_graphs, nb201_descriptors): (Vec<_>, Vec<_>) = if needs_nb201 {
            nb201_graphs(&archs, |g| {
                Ok((
                    Arc::new(config.prepare(g.as_cg())?),
                    GraphDescriptor::new(g.as_cg()),
                ))
            })?
            .into_iter()
            .unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        report_prepared("NB201", &nb201_graphs, &config, started);
        let index: HashMap<&str, usize> = archs
            .iter()
            .enumerate()
            .map(|(i, a)| (a.as_str(), i))
            .collect();

        let text = {
            let file = std::fs::File::open(&args.samples)
                .with_context(|| format!("opening {}", args.samples))?;
            let mut s = String::new();
            std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(file), &mut s)?;
            s
        };
        let mut nb201_samples = Vec::new();
        let mut generated_lines = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v = parse_sample(line)?;
            match (v["search_space"].as_str(), v["task"].as_str()) {
                (Some("nasbench201"), Some("cifar10")) => {
                    let arch = v["arch_str"].as_str().unwrap_or_default();
                    nb201_samples.push(Nb201Sample {
                        cell: *index
                            .get(arch)
                            .with_context(|| format!("NB201 sample {arch} is no cell"))?,
                        naslib_accuracy: v["val_accuracy"].as_f64().context("val_accuracy")?,
                        proxies: proxies(&v),
                    });
                }
                (Some(space @ ("nasbench101" | "nasbench301")), Some("cifar10")) => {
                    generated_lines.push((space.to_string(), v));
                }
                _ => {}
            }
        }
        let started = Instant::now();
        let generated = map_parallel(&generated_lines, |(space, v)| {
            let model = sample_model(space, "cifar10", v)?.context("not generated")?;
            let ingested = archdb::ingest::ingest_model(model, BuildOptions::default())?;
            let stored = StoredGraph::from(&ingested.graph);
            Ok((
                space.clone(),
                Sample {
                    graph: Arc::new(config.prepare(stored.as_cg())?),
                    descriptor: GraphDescriptor::new(stored.as_cg()),
                    hash: ingested.graph_hash,
                    accuracy: v["val_accuracy"].as_f64().context("val_accuracy")?,
                    proxies: proxies(v),
                },
            ))
        })?;
        let (mut nb101, mut nb301) = (Vec::new(), Vec::new());
        for (space, sample) in generated {
            if space == "nasbench101" {
                nb101.push(sample)
            } else {
                nb301.push(sample)
            }
        }
        for (name, samples) in [("NB101", &nb101), ("NB301", &nb301)] {
            let graphs: Vec<Arc<PreparedGraph>> = samples.iter().map(|s| s.graph.clone()).collect();
            report_prepared(name, &graphs, &config, started);
        }
        println!(
            "NASLib samples: NB101 {} ({} distinct graphs), NB301 {} ({} distinct), NB201 \
             CIFAR-10 {}",
            nb101.len(),
            distinct(&nb101, &(0..nb101.len()).collect::<Vec<_>>()).len(),
            nb301.len(),
            distinct(&nb301, &(0..nb301.len()).collect::<Vec<_>>()).len(),
            nb201_samples.len()
        );
        Ok(Self {
            config,
            nb201_accuracy: table.iter().map(|(_, a)| *a).collect(),
            nb201_graphs,
            nb201_descriptors,
            nb201_without_none: (0..archs.len())
                .filter(|&i| !archs[i].contains("none"))
                .collect(),
            nb201_samples,
            nb101,
            nb301,
        })
    }
}

/// Samples `idx` grouped by network (graph hash), in first-seen order: the indices of each.
fn distinct(samples: &[Sample], idx: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for &i in idx {
        let h = samples[i].hash.as_str();
        if !groups.contains_key(h) {
            order.push(h);
        }
        groups.entry(h).or_default().push(i);
    }
    order
        .into_iter()
        .map(|h| groups.remove(h).unwrap())
        .collect()
}

/// One labelled training sample per network: the mean accuracy of its samples.
fn distinct_samples(samples: &[Sample], idx: &[usize]) -> Vec<TrainSample> {
    distinct(samples, idx)
        .iter()
        .map(|group| TrainSample {
            graph: samples[group[0]].graph.clone(),
            accuracy: Some(
                group.iter().map(|&i| samples[i].accuracy).sum::<f64>() / group.len() as f64,
            ),
        })
        .collect()
}

/// A seeded permutation of `0..n` split after `first`.
fn split(n: usize, first: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let rest = order.split_off(first.min(n));
    (order, rest)
}

fn predict(predictor: &Predictor, graphs: &[Arc<PreparedGraph>]) -> Result<Vec<Prediction>> {
    let refs: Vec<&PreparedGraph> = graphs.iter().map(|g| &**g).collect();
    Ok(predictor.predict_prepared(&refs)?)
}

fn accuracy(predictions: &[Prediction]) -> Vec<f64> {
    predictions.iter().map(|p| p.accuracy).collect()
}

fn pick(values: &[f64], idx: &[usize]) -> Vec<f64> {
    idx.iter().map(|&i| values[i]).collect()
}

fn train_timed(samples: &[TrainSample], config: &TrainConfig) -> Result<(Predictor, f64)> {
    let t = Instant::now();
    let predictor = train(samples, config, &mut |_| true)?;
    Ok((predictor, t.elapsed().as_secs_f64()))
}

/// Fine-tunes as `archdb finetune` does (`FinetuneConfig` defaults, the split's seed).
fn finetune_timed(predictor: &mut Predictor, samples: &[TrainSample], seed: u64) -> Result<f64> {
    let t = Instant::now();
    predictor.finetune(
        samples,
        &FinetuneConfig {
            seed,
            ..FinetuneConfig::default()
        },
    )?;
    Ok(t.elapsed().as_secs_f64())
}

/// The proxy names common to `rows` (one map per sample).
fn proxy_names<'a>(rows: impl Iterator<Item = &'a BTreeMap<String, f64>>) -> Vec<String> {
    let mut rows = rows.peekable();
    let first: Vec<String> = rows
        .peek()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    let all: Vec<&BTreeMap<String, f64>> = rows.collect();
    first
        .into_iter()
        .filter(|k| all.iter().all(|r| r.contains_key(k)))
        .collect()
}

/// The tree features of sample `i`.
type FeatureRow<'a> = &'a dyn Fn(usize) -> Vec<f64>;

/// A test set with what the baselines need: truth, proxies, and the graph encoder's zero-shot
/// prediction and embedding, for a fine-tune / test split.
struct Split<'a> {
    part: &'static str,
    seed: u64,
    tested_on: String,
    truth: Vec<f64>,
    proxies: Vec<&'a BTreeMap<String, f64>>,
    predictions: Vec<Prediction>,
    train: Vec<usize>,
    test: Vec<usize>,
}

impl Split<'_> {
    /// Each proxy alone, then gradient-boosted trees fitted on the fine-tune samples on the
    /// proxies, the proxies + the zero-shot prediction, and the proxies + the embedding.
    fn baselines(&self, encoder: &str, log: &mut Log) -> Result<()> {
        let names = proxy_names(self.proxies.iter().copied());
        let test_truth = pick(&self.truth, &self.test);
        for name in &names {
            let scores: Vec<f64> = self.test.iter().map(|&i| self.proxies[i][name]).collect();
            let s = Scores::compute(&scores, &test_truth);
            log.push(Row {
                part: self.part,
                model: format!("proxy {name}"),
                trained_on: "-".into(),
                tested_on: self.tested_on.clone(),
                seed: Some(self.seed),
                train_n: 0,
                test_n: self.test.len(),
                spearman: s.spearman,
                kendall_tau_b: s.kendall_tau,
                seconds: None,
            })?;
        }
        let proxies_row =
            |i: usize| -> Vec<f64> { names.iter().map(|n| self.proxies[i][n]).collect() };
        let variants: [(&str, FeatureRow); 3] = [
            ("GBT on all proxies", &proxies_row),
            ("GBT on proxies + zero-shot prediction", &|i| {
                let mut r = proxies_row(i);
                r.push(self.predictions[i].accuracy);
                r
            }),
            ("GBT on proxies + encoder embedding", &|i| {
                let mut r = proxies_row(i);
                r.extend(self.predictions[i].embedding.iter().map(|&v| f64::from(v)));
                r
            }),
        ];
        for (model, row) in variants {
            let t = Instant::now();
            let rows: Vec<Vec<f64>> = self.train.iter().map(|&i| row(i)).collect();
            let y = pick(&self.truth, &self.train);
            let booster = recipe::fit_booster(&rows, &y, GBT_BUDGET, self.seed)?;
            let test_rows: Vec<Vec<f64>> = self.test.iter().map(|&i| row(i)).collect();
            let predicted = recipe::booster_predict(&booster, &test_rows);
            let s = Scores::compute(&predicted, &test_truth);
            log.push(Row {
                part: self.part,
                model: model.replace("zero-shot prediction", &format!("{encoder} prediction")),
                trained_on: format!("{} fine-tune samples", self.train.len()),
                tested_on: self.tested_on.clone(),
                seed: Some(self.seed),
                train_n: self.train.len(),
                test_n: self.test.len(),
                spearman: s.spearman,
                kendall_tau_b: s.kendall_tau,
                seconds: Some(t.elapsed().as_secs_f64()),
            })?;
        }
        Ok(())
    }
}

/// Each proxy over whole sets (no split), once.
fn proxies_alone(
    part: &'static str,
    tested_on: &str,
    proxies: &[&BTreeMap<String, f64>],
    truth: &[f64],
    log: &mut Log,
) -> Result<()> {
    for name in proxy_names(proxies.iter().copied()) {
        let scores: Vec<f64> = proxies.iter().map(|p| p[&name]).collect();
        let s = Scores::compute(&scores, truth);
        log.push(Row {
            part,
            model: format!("proxy {name}"),
            trained_on: "-".into(),
            tested_on: tested_on.into(),
            seed: None,
            train_n: 0,
            test_n: truth.len(),
            spearman: s.spearman,
            kendall_tau_b: s.kendall_tau,
            seconds: None,
        })?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn score_row(
    log: &mut Log,
    part: &'static str,
    model: &str,
    trained_on: &str,
    tested_on: &str,
    seed: Option<u64>,
    train_n: usize,
    predicted: &[f64],
    truth: &[f64],
    seconds: Option<f64>,
) -> Result<()> {
    let s = Scores::compute(predicted, truth);
    log.push(Row {
        part,
        model: model.into(),
        trained_on: trained_on.into(),
        tested_on: tested_on.into(),
        seed,
        train_n,
        test_n: truth.len(),
        spearman: s.spearman,
        kendall_tau_b: s.kendall_tau,
        seconds,
    })
}

const GRAPH: &str = "archdb graph predictor";
const BUNDLED_MODEL: &str = "bundled NB201 artifact";

/// NB101 → NB201, then 50 NB201 samples for fine-tuning and the baselines.
fn nb101_part(data: &Data, args: &Args, log: &mut Log) -> Result<()> {
    let part = "NB101→NB201";
    let all_cells = "NB201 CIFAR-10, all 15,625 cells";
    let naslib_nb201 = format!(
        "NB201 CIFAR-10, NASLib's {} samples",
        data.nb201_samples.len()
    );
    let sample_cells: Vec<usize> = data.nb201_samples.iter().map(|s| s.cell).collect();
    let sample_truth = pick(&data.nb201_accuracy, &sample_cells);
    let sample_proxies: Vec<&BTreeMap<String, f64>> =
        data.nb201_samples.iter().map(|s| &s.proxies).collect();
    proxies_alone(part, &naslib_nb201, &sample_proxies, &sample_truth, log)?;
    let naslib_truth: Vec<f64> = data
        .nb201_samples
        .iter()
        .map(|s| s.naslib_accuracy)
        .collect();
    proxies_alone(
        part,
        &format!("{naslib_nb201} vs NASLib's val_accuracy"),
        &sample_proxies,
        &naslib_truth,
        log,
    )?;
    let largest = args.nb101_sizes.iter().copied().max().unwrap_or(0);
    for &seed in &args.seeds {
        for &size in &args.nb101_sizes {
            let (chosen, _) = split(data.nb101.len(), size, seed);
            let samples = distinct_samples(&data.nb101, &chosen);
            // The graph count (samples of one network are averaged) is the row's `train_n`.
            let trained_on = format!("NB101 {} samples", chosen.len());
            let config = TrainConfig {
                seed,
                ..data.config.clone()
            };
            let (mut predictor, seconds) = train_timed(&samples, &config)?;
            let all = predict(&predictor, &data.nb201_graphs)?;
            let predicted = accuracy(&all);
            score_row(
                log,
                part,
                GRAPH,
                &trained_on,
                all_cells,
                Some(seed),
                samples.len(),
                &predicted,
                &data.nb201_accuracy,
                Some(seconds),
            )?;
            score_row(
                log,
                part,
                GRAPH,
                &trained_on,
                &format!(
                    "NB201 CIFAR-10, the {} cells without none",
                    data.nb201_without_none.len()
                ),
                Some(seed),
                samples.len(),
                &pick(&predicted, &data.nb201_without_none),
                &pick(&data.nb201_accuracy, &data.nb201_without_none),
                None,
            )?;
            score_row(
                log,
                part,
                GRAPH,
                &trained_on,
                &naslib_nb201,
                Some(seed),
                samples.len(),
                &pick(&predicted, &sample_cells),
                &sample_truth,
                None,
            )?;
            if size != largest {
                continue;
            }
            // 50 of NASLib's NB201 samples to fine-tune on, the other samples to test.
            let (train_idx, test_idx) = split(sample_cells.len(), args.finetune, seed);
            let tested_on = format!(
                "NB201 CIFAR-10, the other {} NASLib samples",
                test_idx.len()
            );
            let split_set = Split {
                part,
                seed,
                tested_on: tested_on.clone(),
                truth: sample_truth.clone(),
                proxies: sample_proxies.clone(),
                predictions: sample_cells.iter().map(|&c| all[c].clone()).collect(),
                train: train_idx.clone(),
                test: test_idx.clone(),
            };
            score_row(
                log,
                part,
                GRAPH,
                &trained_on,
                &tested_on,
                Some(seed),
                samples.len(),
                &pick(&predicted, &pick_cells(&sample_cells, &test_idx)),
                &pick(&sample_truth, &test_idx),
                None,
            )?;
            split_set.baselines("NB101-trained", log)?;
            let finetune: Vec<TrainSample> = train_idx
                .iter()
                .map(|&i| TrainSample {
                    graph: data.nb201_graphs[sample_cells[i]].clone(),
                    accuracy: Some(sample_truth[i]),
                })
                .collect();
            let seconds = finetune_timed(&mut predictor, &finetune, seed)?;
            let tuned = accuracy(&predict(&predictor, &data.nb201_graphs)?);
            let model = format!("{GRAPH}, fine-tuned");
            let tuned_on = format!("{trained_on} + {} NB201 samples", finetune.len());
            score_row(
                log,
                part,
                &model,
                &tuned_on,
                &tested_on,
                Some(seed),
                finetune.len(),
                &pick(&tuned, &pick_cells(&sample_cells, &test_idx)),
                &pick(&sample_truth, &test_idx),
                Some(seconds),
            )?;
            let held: std::collections::HashSet<usize> =
                train_idx.iter().map(|&i| sample_cells[i]).collect();
            let rest: Vec<usize> = (0..data.nb201_graphs.len())
                .filter(|c| !held.contains(c))
                .collect();
            score_row(
                log,
                part,
                &model,
                &tuned_on,
                &format!("NB201 CIFAR-10, the other {} cells", rest.len()),
                Some(seed),
                finetune.len(),
                &pick(&tuned, &rest),
                &pick(&data.nb201_accuracy, &rest),
                None,
            )?;
        }
    }
    Ok(())
}

fn pick_cells(cells: &[usize], idx: &[usize]) -> Vec<usize> {
    idx.iter().map(|&i| cells[i]).collect()
}

/// NB201 → NB301 (and NB101), then 50 NB301 samples for fine-tuning and the baselines; the
/// bundled artifact alongside.
fn nb201_part(data: &Data, args: &Args, log: &mut Log) -> Result<()> {
    let part = "NB201→NB301";
    let nb301_all = format!("NB301 CIFAR-10, all {} NASLib samples", data.nb301.len());
    let nb301_graphs: Vec<Arc<PreparedGraph>> =
        data.nb301.iter().map(|s| s.graph.clone()).collect();
    let nb301_truth: Vec<f64> = data.nb301.iter().map(|s| s.accuracy).collect();
    let nb301_proxies: Vec<&BTreeMap<String, f64>> =
        data.nb301.iter().map(|s| &s.proxies).collect();
    proxies_alone(part, &nb301_all, &nb301_proxies, &nb301_truth, log)?;
    let nb101_all: Vec<usize> = (0..data.nb101.len()).collect();
    let nb101_distinct = distinct_samples(&data.nb101, &nb101_all);
    let nb101_graphs: Vec<Arc<PreparedGraph>> =
        nb101_distinct.iter().map(|s| s.graph.clone()).collect();
    let nb101_truth: Vec<f64> = nb101_distinct.iter().map(|s| s.accuracy.unwrap()).collect();
    let nb101_test = format!(
        "NB101 CIFAR-10, NASLib's {} samples ({} graphs)",
        data.nb101.len(),
        nb101_distinct.len()
    );
    let bundled_bytes = std::fs::read(BUNDLED).with_context(|| format!("reading {BUNDLED}"))?;
    let load_bundled = || -> Result<Predictor> {
        let p = Predictor::from_bytes(&bundled_bytes, Backend::Cpu)?;
        if p.config.features != data.config.features
            || p.config.encoder.layers != data.config.encoder.layers
        {
            bail!("{BUNDLED} featurises graphs differently from TrainConfig::default()");
        }
        Ok(p)
    };
    {
        let bundled = load_bundled()?;
        let trained_on = "NB201 1,563 cells (its own seed)";
        for (tested_on, graphs, truth) in [
            (&nb301_all, &nb301_graphs, &nb301_truth),
            (&nb101_test, &nb101_graphs, &nb101_truth),
        ] {
            let predicted = accuracy(&predict(&bundled, graphs)?);
            score_row(
                log,
                part,
                BUNDLED_MODEL,
                trained_on,
                tested_on,
                None,
                1_563,
                &predicted,
                truth,
                None,
            )?;
        }
    }
    for &seed in &args.seeds {
        let (train_idx, test_idx) = split(data.nb301.len(), args.finetune, seed);
        let tested_on = format!(
            "NB301 CIFAR-10, the other {} NASLib samples",
            test_idx.len()
        );
        let test_truth = pick(&nb301_truth, &test_idx);
        let finetune: Vec<TrainSample> = train_idx
            .iter()
            .map(|&i| TrainSample {
                graph: nb301_graphs[i].clone(),
                accuracy: Some(nb301_truth[i]),
            })
            .collect();
        let mut models = vec![(
            BUNDLED_MODEL,
            load_bundled()?,
            "NB201 1,563 cells (its own seed)".to_string(),
            1_563,
            None,
        )];
        if args.retrain_seeds.contains(&seed) {
            let (cells, _) = split(data.nb201_graphs.len(), args.nb201_train, seed);
            let samples: Vec<TrainSample> = cells
                .iter()
                .map(|&c| TrainSample {
                    graph: data.nb201_graphs[c].clone(),
                    accuracy: Some(data.nb201_accuracy[c]),
                })
                .collect();
            let config = TrainConfig {
                seed,
                ..data.config.clone()
            };
            let (trained, seconds) = train_timed(&samples, &config)?;
            let trained_on = format!("NB201 {} cells", samples.len());
            let zero = accuracy(&predict(&trained, &nb301_graphs)?);
            score_row(
                log,
                part,
                GRAPH,
                &trained_on,
                &nb301_all,
                Some(seed),
                samples.len(),
                &zero,
                &nb301_truth,
                Some(seconds),
            )?;
            let nb101 = accuracy(&predict(&trained, &nb101_graphs)?);
            score_row(
                log,
                "NB201→NB101",
                GRAPH,
                &trained_on,
                &nb101_test,
                Some(seed),
                samples.len(),
                &nb101,
                &nb101_truth,
                None,
            )?;
            models.push((GRAPH, trained, trained_on, samples.len(), Some(seconds)));
        }
        for (model, mut predictor, trained_on, train_n, seconds) in models {
            let zero = predict(&predictor, &nb301_graphs)?;
            let zero_acc = accuracy(&zero);
            score_row(
                log,
                part,
                model,
                &trained_on,
                &tested_on,
                Some(seed),
                train_n,
                &pick(&zero_acc, &test_idx),
                &test_truth,
                seconds,
            )?;
            if model == BUNDLED_MODEL {
                Split {
                    part,
                    seed,
                    tested_on: tested_on.clone(),
                    truth: nb301_truth.clone(),
                    proxies: nb301_proxies.clone(),
                    predictions: zero,
                    train: train_idx.clone(),
                    test: test_idx.clone(),
                }
                .baselines("bundled NB201", log)?;
            }
            let seconds = finetune_timed(&mut predictor, &finetune, seed)?;
            let tuned = accuracy(&predict(&predictor, &nb301_graphs)?);
            score_row(
                log,
                part,
                &format!("{model}, fine-tuned"),
                &format!("{trained_on} + {} NB301 samples", finetune.len()),
                &tested_on,
                Some(seed),
                finetune.len(),
                &pick(&tuned, &test_idx),
                &test_truth,
                Some(seconds),
            )?;
        }
    }
    Ok(())
}

/// The LEMUR recipe predictor, zero-shot, under LEMUR CIFAR-10's typical recipe.
fn recipe_part(data: &Data, log: &mut Log) -> Result<()> {
    let part = "recipe";
    let predictor = recipe::bundled().context("no bundled recipe predictor")?;
    let dataset = predictor.dataset("cifar-10").context("no cifar-10")?;
    let (typical, _, _) = predictor.complete(dataset, &Recipe::default());
    println!("recipe predictor, CIFAR-10 typical recipe: {typical:?}");
    let nb101_all: Vec<usize> = (0..data.nb101.len()).collect();
    let nb101_groups = distinct(&data.nb101, &nb101_all);
    let nb101: Vec<(GraphDescriptor, f64)> = nb101_groups
        .iter()
        .map(|g| {
            let mean = g.iter().map(|&i| data.nb101[i].accuracy).sum::<f64>() / g.len() as f64;
            (data.nb101[g[0]].descriptor.clone(), mean)
        })
        .collect();
    let sets: [(String, Vec<GraphDescriptor>, Vec<f64>); 3] = [
        (
            "NB201 CIFAR-10, all 15,625 cells".into(),
            data.nb201_descriptors.clone(),
            data.nb201_accuracy.clone(),
        ),
        (
            format!(
                "NB101 CIFAR-10, NASLib's {} samples ({} graphs)",
                data.nb101.len(),
                nb101.len()
            ),
            nb101.iter().map(|(d, _)| d.clone()).collect(),
            nb101.iter().map(|(_, a)| *a).collect(),
        ),
        (
            format!("NB301 CIFAR-10, all {} NASLib samples", data.nb301.len()),
            data.nb301.iter().map(|s| s.descriptor.clone()).collect(),
            data.nb301.iter().map(|s| s.accuracy).collect(),
        ),
    ];
    for (tested_on, descriptors, truth) in sets {
        let t = Instant::now();
        let answers = predictor.predict(&descriptors, &[(dataset, typical.clone(), false)], 1);
        let predicted: Vec<f64> = answers.iter().map(|a| a.accuracy).collect();
        let share = |d: Domain| {
            answers.iter().filter(|a| a.domain == d).count() as f64 / answers.len() as f64
        };
        let (lo, hi) = predicted
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        println!(
            "  {tested_on}: domain in {:.1} %, edge {:.1} %, out {:.1} %; predicted accuracy {lo:.3}–{hi:.3}",
            share(Domain::In) * 100.0,
            share(Domain::Edge) * 100.0,
            share(Domain::Out) * 100.0
        );
        score_row(
            log,
            part,
            "recipe predictor (LEMUR), typical CIFAR-10 recipe",
            "LEMUR 123,620 trial rows",
            &tested_on,
            None,
            123_620,
            &predicted,
            &truth,
            Some(t.elapsed().as_secs_f64()),
        )?;
    }
    Ok(())
}

pub fn run(raw: impl Iterator<Item = String>) -> Result<()> {
    let args = args(raw)?;
    let data = Data::load(&args)?;
    let mut log = Log {
        file: match &args.out {
            Some(path) => {
                Some(std::fs::File::create(path).with_context(|| format!("creating {path}"))?)
            }
            None => None,
        },
        rows: Vec::new(),
    };
    for part in &args.parts {
        let t = Instant::now();
        match part {
            Part::Nb101 => nb101_part(&data, &args, &mut log)?,
            Part::Nb201 => nb201_part(&data, &args, &mut log)?,
            Part::Recipe => recipe_part(&data, &mut log)?,
        }
        println!("{part:?} done in {:.0} s", t.elapsed().as_secs_f64());
    }
    log.summary();
    Ok(())
}
