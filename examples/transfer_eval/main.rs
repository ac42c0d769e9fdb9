//! Zero-shot transfer of the accuracy predictor (docs/predictor.md).
//!
//! `transfer_eval spaces …` ([`spaces`]): across NASLib's search spaces (NB101, NB201, NB301),
//! in-process, no database.
//!
//! `transfer_eval [seeds]`: train on NB201 cells
//! (CIFAR-10, 200 epochs) alone, or on NB201 plus LEMUR model families (best CIFAR-10 accuracy
//! per model), and test, without any of their labels, on all of NAS-Bench-Macro and on the
//! LEMUR families held out from training. Spearman ρ and Kendall τ-b (ranks only: the families
//! measure accuracy on different scales).
//!
//! Needs a database with the benchmarks imported:
//!
//! ```sh
//! archdb import nb201 data/nasbench201 && archdb import nb-macro data/nasbench_macro
//! archdb import lemur ../shared/data/lemur && archdb import lemur-onnx ../shared/data/lemur/onnx
//! DATABASE_URL=… RAYON_NUM_THREADS=1 cargo run --release --example transfer_eval -- 0,1,2
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result};
use archdb::db::predictors::{Aggregate, Target};
use archdb::predict::{PreparedGraph, TrainConfig, TrainSample, train};
use archdb::stats::Scores;
use archdb::training::Population;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

#[path = "../common/mod.rs"]
mod common;
mod spaces;

use common::mean_sd;

/// NB201 cells per training set (the 10 % of the NB201 protocol).
const NB201_TRAIN: usize = 1_563;
/// Share of LEMUR families held out.
const HELD_OUT_FAMILIES: f64 = 0.3;

fn target(benchmark: &str, dataset: &str, epoch: Option<i32>, split: Option<&str>) -> Target {
    Target {
        benchmark: benchmark.into(),
        dataset: dataset.into(),
        metric: "acc".into(),
        epoch,
        split: split.map(String::from),
        aggregate: None,
    }
}

fn score(
    predictor: &archdb::predict::Predictor,
    population: &Population,
    idx: &[usize],
) -> Result<Scores> {
    let graphs: Vec<&PreparedGraph> = idx.iter().map(|&i| &*population.graphs[i]).collect();
    let predicted: Vec<f64> = predictor
        .predict_prepared(&graphs)?
        .iter()
        .map(|p| p.accuracy)
        .collect();
    let truth: Vec<f64> = idx.iter().map(|&i| population.measured[i].value).collect();
    Ok(Scores::compute(&predicted, &truth))
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("spaces") {
        // No database and no async work: the runtime thread is free to block.
        return spaces::run(std::env::args().skip(2));
    }
    let seeds: Vec<u64> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0,1,2".into())
        .split(',')
        .map(|s| s.trim().parse().context("seeds: 0,1,2"))
        .collect::<Result<_>>()?;
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL names the database")?;
    let pool = sqlx::PgPool::connect(&url).await?;
    let config = TrainConfig::default();
    let load = |t: Target| {
        let (pool, config) = (pool.clone(), config.clone());
        async move { Population::load(&pool, &t, move |g| config.prepare(g)).await }
    };
    let nb201 = load(target("nb201", "cifar10", Some(200), Some("test"))).await?;
    let macro_ = load(target("nb-macro", "cifar10", None, Some("test"))).await?;
    let lemur = load(Target {
        aggregate: Some(Aggregate::Max),
        ..target("lemur", "cifar-10", None, None)
    })
    .await?;
    // A LEMUR family is the model name before its first '-' (AirNet, AirNet-<uuid>, …).
    let ids: Vec<i64> = lemur.measured.iter().map(|m| m.architecture_id).collect();
    let names: HashMap<i64, String> = sqlx::query_as::<_, (i64, String)>(
        "select architecture_id, min(nn) from results
          where benchmark = 'lemur' and dataset = 'cifar-10' and architecture_id = any($1)
          group by architecture_id",
    )
    .bind(&ids)
    .fetch_all(&pool)
    .await?
    .into_iter()
    .collect();
    let family: Vec<String> = ids
        .iter()
        .map(|id| names[id].split('-').next().unwrap_or_default().to_string())
        .collect();
    let families: BTreeSet<&String> = family.iter().collect();
    println!(
        "NB201 {} graphs, NAS-Bench-Macro {}, LEMUR CIFAR-10 {} graphs in {} families",
        nb201.measured.len(),
        macro_.measured.len(),
        lemur.measured.len(),
        families.len()
    );
    let all_macro: Vec<usize> = (0..macro_.measured.len()).collect();
    let nb201_values: Vec<f64> = nb201.measured.iter().map(|m| m.value).collect();
    let (nb201_mean, nb201_sd) = mean_sd(&nb201_values);

    let mut table: BTreeMap<(&str, &str), Vec<Scores>> = BTreeMap::new();
    for &seed in &seeds {
        let mut shuffled: Vec<&String> = families.iter().copied().collect();
        shuffled.shuffle(&mut StdRng::seed_from_u64(seed));
        let held: BTreeSet<&String> = shuffled
            [..(shuffled.len() as f64 * HELD_OUT_FAMILIES).round() as usize]
            .iter()
            .copied()
            .collect();
        let (lemur_train, lemur_test): (Vec<usize>, Vec<usize>) =
            (0..lemur.measured.len()).partition(|&i| !held.contains(&family[i]));
        let (nb201_train, _) = nb201.split(NB201_TRAIN, seed);
        let nb201_samples: Vec<TrainSample> =
            nb201_train.iter().map(|&i| nb201.sample(i, true)).collect();
        // LEMUR accuracies (0–1) mapped onto NB201's scale by z-score, so that one target
        // transform serves both; only ranks are compared afterwards.
        let values: Vec<f64> = lemur_train
            .iter()
            .map(|&i| lemur.measured[i].value)
            .collect();
        let (mean, sd) = mean_sd(&values);
        let lemur_samples: Vec<TrainSample> = lemur_train
            .iter()
            .map(|&i| TrainSample {
                graph: lemur.graphs[i].clone(),
                accuracy: Some((lemur.measured[i].value - mean) / sd * nb201_sd + nb201_mean),
            })
            .collect();
        for (variant, samples) in [
            ("NB201", nb201_samples.clone()),
            (
                "NB201 + LEMUR",
                [nb201_samples.clone(), lemur_samples].concat(),
            ),
        ] {
            let config = TrainConfig {
                seed,
                ..config.clone()
            };
            let samples = Arc::new(samples);
            let predictor = tokio::task::spawn_blocking({
                let samples = samples.clone();
                move || train(&samples, &config, &mut |_| true)
            })
            .await??;
            let on_macro = score(&predictor, &macro_, &all_macro)?;
            let on_lemur = score(&predictor, &lemur, &lemur_test)?;
            println!(
                "seed {seed} {variant:>13} ({} graphs): NAS-Bench-Macro ρ {:.3} τ {:.3} | held-out LEMUR \
                 ({} graphs, {} families) ρ {:.3} τ {:.3}",
                samples.len(),
                on_macro.spearman,
                on_macro.kendall_tau,
                lemur_test.len(),
                held.len(),
                on_lemur.spearman,
                on_lemur.kendall_tau
            );
            table
                .entry((variant, "NAS-Bench-Macro"))
                .or_default()
                .push(on_macro);
            table
                .entry((variant, "held-out LEMUR families"))
                .or_default()
                .push(on_lemur);
        }
    }
    println!(
        "\n| trained on | tested on | seeds | Spearman ρ | Kendall τ-b |\n|---|---|---|---|---|"
    );
    for ((variant, test), scores) in &table {
        let rho: Vec<f64> = scores.iter().map(|s| s.spearman).collect();
        let tau: Vec<f64> = scores.iter().map(|s| s.kendall_tau).collect();
        let ((rm, rs), (tm, ts)) = (mean_sd(&rho), mean_sd(&tau));
        println!(
            "| {variant} | {test} | {} | {rm:.3} ± {rs:.3} | {tm:.3} ± {ts:.3} |",
            scores.len()
        );
    }
    Ok(())
}
