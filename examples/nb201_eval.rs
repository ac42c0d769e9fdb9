//! NAS-Bench-201 evaluation of the accuracy predictor (docs/predictor.md): builds the CG of all
//! 15,625 cells through the ONNX generator and archdb's ingest, takes the CIFAR-10 200-epoch test
//! accuracy from the shared CSV, and for every (variant, train size, seed) trains on a random
//! sample of that size and tests on all remaining cells. Prints Kendall τ-b / Spearman / MAE per
//! run and mean ± sd tables, per-epoch training times and (with `--bench`) inference latency and
//! throughput.
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release --example nb201_eval -- \
//!     --sizes 78,156,469,781,1563 --seeds 0,1,2,3,4 --variants full --bench --out nb201.json
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use archdb::db::architectures::StoredGraph;
use archdb::generate::{nb201_arch_strings, nb201_model};
use archdb::graph::BuildOptions;
use archdb::predict::model::TargetScores;
use archdb::predict::{Predictor, PreparedGraph, Scores, TrainConfig, TrainSample, train};
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

#[path = "common/mod.rs"]
mod common;

use common::{
    NB201_CSV, mean_sd, nb201_accuracies, nb201_cg, nb201_graphs, parse_list, report_prepared,
};

struct Args {
    sizes: Vec<usize>,
    seeds: Vec<u64>,
    variants: Vec<String>,
    /// `path=value` overrides of the variant's TrainConfig (JSON values, dotted paths).
    overrides: Vec<(String, serde_json::Value)>,
    csv: String,
    out: Option<String>,
    bench: bool,
    pretrain_unlabelled: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        sizes: vec![78, 156, 469, 781, 1563],
        seeds: vec![0, 1, 2, 3, 4],
        variants: vec!["full".into()],
        overrides: Vec::new(),
        csv: NB201_CSV.into(),
        out: None,
        bench: false,
        pretrain_unlabelled: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context(format!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => a.sizes = parse_list(&value()?)?,
            "--seeds" => a.seeds = parse_list(&value()?)?,
            "--variants" => a.variants = parse_list(&value()?)?,
            "--set" => a.overrides.push(parse_override(&value()?)?),
            "--csv" => a.csv = value()?,
            "--out" => a.out = Some(value()?),
            "--bench" => a.bench = true,
            "--pretrain-unlabelled" => a.pretrain_unlabelled = true,
            _ => bail!(
                "unknown flag {flag}; flags: --sizes --seeds --variants --set path=value \
                 --csv --out --bench --pretrain-unlabelled"
            ),
        }
    }
    Ok(a)
}

/// The ablation ladder: each variant adds one component to the previous (GENNAPE's, then the
/// ranking loss and quantile target scores).
fn variant(name: &str) -> Result<TrainConfig> {
    let full = TrainConfig::default();
    let kgnn = TrainConfig {
        contrastive: archdb::predict::contrastive::ContrastiveConfig {
            epochs: 0,
            ..full.contrastive.clone()
        },
        clusters: 1,
        head_epochs: 0,
        flops_transform: false,
        rank_weight: 0.0,
        target_scores: TargetScores::Z,
        ..full.clone()
    };
    let cl = TrainConfig {
        contrastive: full.contrastive.clone(),
        ..kgnn.clone()
    };
    let cl_fcm = TrainConfig {
        clusters: full.clusters,
        head_epochs: full.head_epochs,
        ..cl.clone()
    };
    let cl_fcm_t = TrainConfig {
        flops_transform: true,
        ..cl_fcm.clone()
    };
    let cl_fcm_t_rank = TrainConfig {
        rank_weight: full.rank_weight,
        ..cl_fcm_t.clone()
    };
    Ok(match name {
        "kgnn" => kgnn,
        "cl" => cl,
        "cl_fcm" => cl_fcm,
        "cl_fcm_t" => cl_fcm_t,
        "cl_fcm_t_rank" => cl_fcm_t_rank,
        "full" => full,
        _ => bail!("unknown variant {name}: kgnn, cl, cl_fcm, cl_fcm_t, cl_fcm_t_rank, full"),
    })
}

/// `path=value`, the value as JSON when it parses, else as a string.
fn parse_override(s: &str) -> Result<(String, serde_json::Value)> {
    let (path, raw) = s.split_once('=').context("overrides are path=value")?;
    let json = serde_json::from_str(raw).unwrap_or_else(|_| raw.into());
    Ok((path.to_string(), json))
}

/// Applies `--set` overrides (`epochs=200`, `contrastive.epochs=0`) with archdb's settings merge.
fn with_overrides(
    config: TrainConfig,
    overrides: &[(String, serde_json::Value)],
) -> Result<TrainConfig> {
    let mut merged = config;
    for (path, value) in overrides {
        // `a.b=v` → {"a": {"b": v}}
        let nested = path.rsplit('.').fold(
            value.clone(),
            |inner, key| serde_json::json!({ key: inner }),
        );
        merged = archdb::training::with_overrides(&merged, &nested)?;
    }
    Ok(merged)
}

#[derive(serde::Serialize)]
struct Run {
    variant: String,
    size: usize,
    seed: u64,
    scores: Scores,
    /// τ on the training sample itself (how well the model fits).
    train_tau: f64,
    train_seconds: f64,
    seconds_per_epoch: BTreeMap<String, f64>,
}

fn main() -> Result<()> {
    let args = args()?;
    let table = nb201_accuracies(&args.csv)?;
    let archs: Vec<String> = nb201_arch_strings().collect();
    for (i, arch) in archs.iter().enumerate() {
        if *arch != table[i].0 {
            bail!("arch {i}: generator says {arch}, CSV says {}", table[i].0);
        }
    }
    // Featurised graphs per (encoder depth, feature scales): variants may change either.
    let mut prepared: BTreeMap<String, Arc<Vec<Arc<PreparedGraph>>>> = BTreeMap::new();
    let mut runs = Vec::new();
    let mut last: Option<(Predictor, Arc<Vec<Arc<PreparedGraph>>>)> = None;
    for name in &args.variants {
        // A variant is a ladder name plus optional `+path=value` overrides.
        let mut parts = name.split('+');
        let mut overrides = args.overrides.clone();
        for part in parts.clone().skip(1) {
            overrides.push(parse_override(part)?);
        }
        let mut config = with_overrides(variant(parts.next().unwrap_or_default())?, &overrides)?;
        let key = serde_json::to_string(&(config.encoder.layers, &config.features))?;
        if !prepared.contains_key(&key) {
            let started = Instant::now();
            let graphs = nb201_graphs(&archs, |g| Ok(Arc::new(config.prepare(g.as_cg())?)))?;
            report_prepared("NB201", &graphs, &config, started);
            prepared.insert(key.clone(), Arc::new(graphs));
        }
        let graphs = prepared[&key].clone();
        for &size in &args.sizes {
            for &seed in &args.seeds {
                let mut order: Vec<usize> = (0..graphs.len()).collect();
                order.shuffle(&mut StdRng::seed_from_u64(seed));
                let (train_idx, test_idx) = order.split_at(size);
                let mut samples: Vec<TrainSample> = train_idx
                    .iter()
                    .map(|&i| TrainSample {
                        graph: graphs[i].clone(),
                        accuracy: Some(table[i].1),
                    })
                    .collect();
                if args.pretrain_unlabelled {
                    samples.extend(test_idx.iter().map(|&i| TrainSample {
                        graph: graphs[i].clone(),
                        accuracy: None,
                    }));
                }
                config.seed = seed;
                let mut epoch_seconds: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                let t = Instant::now();
                let predictor = train(&samples, &config, &mut |r| {
                    epoch_seconds
                        .entry(format!("{:?}", r.stage))
                        .or_default()
                        .push(r.seconds);
                    if r.epoch % 25 == 0 {
                        eprintln!(
                            "  member {} {:?} epoch {:3} loss {:.4} val τ {}",
                            r.member,
                            r.stage,
                            r.epoch,
                            r.loss,
                            r.validation_kendall
                                .map_or("-".into(), |t| format!("{t:.3}"))
                        );
                    }
                    true
                })?;
                let train_seconds = t.elapsed().as_secs_f64();
                let test: Vec<&PreparedGraph> = test_idx.iter().map(|&i| &*graphs[i]).collect();
                let predicted: Vec<f64> = predictor
                    .predict_prepared(&test)?
                    .iter()
                    .map(|p| p.accuracy)
                    .collect();
                let truth: Vec<f64> = test_idx.iter().map(|&i| table[i].1).collect();
                let scores = Scores::compute(&predicted, &truth);
                let fit: Vec<&PreparedGraph> = train_idx.iter().map(|&i| &*graphs[i]).collect();
                let fitted: Vec<f64> = predictor
                    .predict_prepared(&fit)?
                    .iter()
                    .map(|p| p.accuracy)
                    .collect();
                let train_truth: Vec<f64> = train_idx.iter().map(|&i| table[i].1).collect();
                let train_tau = archdb::stats::kendall_tau_b(&fitted, &train_truth);
                let seconds_per_epoch = epoch_seconds
                    .iter()
                    .map(|(k, v)| (k.clone(), v.iter().sum::<f64>() / v.len() as f64))
                    .collect();
                println!(
                    "{name} size {size} seed {seed}: τ {:.4} ρ {:.4} MAE {:.3} (training-set τ \
                     {train_tau:.3}; train {:.1} s, s/epoch {:?})",
                    scores.kendall_tau,
                    scores.spearman,
                    scores.mae,
                    train_seconds,
                    seconds_per_epoch
                );
                runs.push(Run {
                    variant: name.clone(),
                    size,
                    seed,
                    scores,
                    train_tau,
                    train_seconds,
                    seconds_per_epoch,
                });
                last = Some((predictor, graphs.clone()));
            }
        }
    }

    println!("\n| variant | train size | seeds | Kendall τ-b | Spearman ρ | MAE (%) | train s |");
    println!("|---|---|---|---|---|---|---|");
    for name in &args.variants {
        for &size in &args.sizes {
            let these: Vec<&Run> = runs
                .iter()
                .filter(|r| &r.variant == name && r.size == size)
                .collect();
            let stat =
                |f: &dyn Fn(&Run) -> f64| mean_sd(&these.iter().map(|r| f(r)).collect::<Vec<_>>());
            let (tau, tau_sd) = stat(&|r| r.scores.kendall_tau);
            let (rho, rho_sd) = stat(&|r| r.scores.spearman);
            let (mae, mae_sd) = stat(&|r| r.scores.mae);
            let (secs, _) = stat(&|r| r.train_seconds);
            println!(
                "| {name} | {size} | {} | {tau:.3} ± {tau_sd:.3} | {rho:.3} ± {rho_sd:.3} | \
                 {mae:.2} ± {mae_sd:.2} | {secs:.0} |",
                these.len()
            );
        }
    }

    if args.bench
        && let Some((predictor, graphs)) = &last
    {
        bench(predictor, &archs, graphs)?;
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&runs)?)?;
    }
    Ok(())
}

/// Inference latency of single graphs (from ONNX bytes and from a CG) and batch throughput.
fn bench(predictor: &Predictor, archs: &[String], graphs: &[Arc<PreparedGraph>]) -> Result<()> {
    let percentile = |mut v: Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let (mut from_onnx, mut from_cg) = (Vec::new(), Vec::new());
    for arch in archs.iter().step_by(archs.len() / 300) {
        let bytes = nb201_model(arch, 10)?.encode_to_vec();
        let t = Instant::now();
        let ingested = archdb::ingest::ingest(bytes.into(), BuildOptions::default())?;
        let cg = StoredGraph::from(&ingested.graph);
        let t_cg = Instant::now();
        let p = predictor.predict(&[cg.as_cg()])?;
        let end = Instant::now();
        assert!(p[0].accuracy.is_finite());
        from_onnx.push((end - t).as_secs_f64() * 1e3);
        from_cg.push((end - t_cg).as_secs_f64() * 1e3);
    }
    println!(
        "\nlatency, one graph, {} members: CG → prediction p50 {:.2} ms p90 {:.2} ms; ONNX bytes \
         → ingest → prediction p50 {:.2} ms p90 {:.2} ms ({} graphs)",
        predictor.members.len(),
        percentile(from_cg.clone(), 0.5),
        percentile(from_cg.clone(), 0.9),
        percentile(from_onnx.clone(), 0.5),
        percentile(from_onnx.clone(), 0.9),
        from_cg.len()
    );
    let all: Vec<&PreparedGraph> = graphs.iter().map(|g| &**g).collect();
    let t = Instant::now();
    let predictions = predictor.predict_prepared(&all)?;
    let seconds = t.elapsed().as_secs_f64();
    println!(
        "batch: {} featurised graphs in {:.2} s = {:.0} architectures/s",
        predictions.len(),
        seconds,
        predictions.len() as f64 / seconds
    );
    let subset: Vec<StoredGraph> = archs
        .iter()
        .take(2000)
        .map(|a| nb201_cg(a))
        .collect::<Result<_>>()?;
    let refs: Vec<_> = subset.iter().map(StoredGraph::as_cg).collect();
    let t = Instant::now();
    let predictions = predictor.predict(&refs)?;
    let seconds = t.elapsed().as_secs_f64();
    println!(
        "batch incl. featurisation: {} CGs in {:.2} s = {:.0} architectures/s",
        predictions.len(),
        seconds,
        predictions.len() as f64 / seconds
    );
    Ok(())
}
