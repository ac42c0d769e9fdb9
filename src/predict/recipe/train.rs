//! Training and honest evaluation of the recipe predictor: grouped cross-validation in which
//! every row of a family is on one side only, the baselines in the same folds, and the interval
//! and domain calibration taken from the out-of-fold residuals.

use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::Serialize;

use super::{
    CompleteRecipe, DATASETS, DatasetInfo, Domain, DomainCalibration, FORMAT, FeatureSet,
    GraphDescriptor, KnownGraph, RecipePredictor, booster_predict, fit_booster, fit_scale, logit,
    scaled, sigmoid,
};
use crate::predict::PredictError;
use crate::stats::{kendall_tau_b, mae, spearman};

/// A measured graph.
#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    /// The unit held out together in grouped cross-validation.
    pub family: String,
    /// Index into [`DATASETS`] of the dataset it was exported for.
    pub dataset: usize,
    pub descriptor: GraphDescriptor,
}

/// One measured trial: a graph trained with a recipe on a dataset.
#[derive(Debug, Clone)]
pub struct Row {
    pub graph: usize,
    pub dataset: usize,
    /// Missing hyperparameters are NaN (the trees treat them as missing).
    pub recipe: CompleteRecipe,
    /// Fraction in [0, 1].
    pub accuracy: f64,
}

#[derive(Debug, Clone, Default)]
pub struct TrainingSet {
    pub graphs: Vec<Graph>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    pub seed: u64,
    pub folds: usize,
    /// perpetual's complexity budget.
    pub budget: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            folds: 5,
            budget: 0.5,
        }
    }
}

/// Assigns whole families to `folds` folds of similar row counts (largest families first, each
/// to the lightest fold; ties broken by a seeded shuffle).
pub fn family_folds(set: &TrainingSet, folds: usize, seed: u64) -> Vec<usize> {
    let mut rows_per_family: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &set.rows {
        *rows_per_family
            .entry(&set.graphs[row.graph].family)
            .or_default() += 1;
    }
    for g in &set.graphs {
        rows_per_family.entry(&g.family).or_default();
    }
    let mut families: Vec<(&str, usize)> = rows_per_family.into_iter().collect();
    families.shuffle(&mut StdRng::seed_from_u64(seed));
    families.sort_by_key(|f| std::cmp::Reverse(f.1));
    let mut load = vec![0usize; folds];
    let mut fold_of: HashMap<&str, usize> = HashMap::new();
    for (family, rows) in families {
        let lightest = (0..folds).min_by_key(|&f| (load[f], f)).unwrap_or(0);
        load[lightest] += rows;
        fold_of.insert(family, lightest);
    }
    set.graphs
        .iter()
        .map(|g| fold_of[g.family.as_str()])
        .collect()
}

/// Rank and error metrics of predictions against the truth (fractions).
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub rows: usize,
    pub kendall_tau_b: f64,
    pub spearman: f64,
    pub mae: f64,
    /// Spearman over held-out models of their mean epoch-1 accuracy (predicted vs measured).
    pub epoch1_model_spearman: Option<f64>,
    pub epoch1_models: usize,
}

fn metrics(set: &TrainingSet, rows: &[usize], predicted: &[f64]) -> Metrics {
    let truth: Vec<f64> = rows.iter().map(|&r| set.rows[r].accuracy).collect();
    let mine: Vec<f64> = rows.iter().map(|&r| predicted[r]).collect();
    let mut epoch1: BTreeMap<usize, (f64, f64, f64)> = BTreeMap::new();
    for &r in rows {
        let row = &set.rows[r];
        if row.recipe.epoch == 1.0 {
            let e = epoch1.entry(row.graph).or_default();
            e.0 += row.accuracy;
            e.1 += predicted[r];
            e.2 += 1.0;
        }
    }
    let (measured, guessed): (Vec<f64>, Vec<f64>) =
        epoch1.values().map(|(m, p, n)| (m / n, p / n)).unzip();
    Metrics {
        rows: rows.len(),
        kendall_tau_b: kendall_tau_b(&mine, &truth),
        spearman: spearman(&mine, &truth),
        mae: mae(&mine, &truth),
        epoch1_model_spearman: (measured.len() >= 3).then(|| spearman(&guessed, &measured)),
        epoch1_models: measured.len(),
    }
}

/// How the 90 % intervals and the domain verdict did on held-out families (cross-fitted: the
/// rows of each fold are judged by the calibration of the other folds).
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport {
    pub coverage: f64,
    pub mean_width: f64,
    /// Per domain (`in`, `edge`, `out`): rows, share, MAE, coverage and mean width.
    pub domains: Vec<DomainReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DomainReport {
    pub domain: Domain,
    pub rows: usize,
    pub share: f64,
    pub mae: f64,
    pub coverage: f64,
    pub mean_width: f64,
}

/// The grouped cross-validation of one seed.
#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    pub seed: u64,
    pub folds: usize,
    pub families: usize,
    pub graphs: usize,
    pub rows: usize,
    /// Per feature set: all held-out rows, and the CIFAR-10 rows.
    pub models: Vec<ModelReport>,
    pub calibration: CalibrationReport,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub features: FeatureSet,
    pub name: &'static str,
    pub all: Metrics,
    pub cifar10: Metrics,
}

/// Out-of-fold results used for the calibration.
struct OutOfFold {
    /// Logit predictions of archdb's feature set, per row.
    logits: Vec<f64>,
    /// Distance of each row's graph to the nearest graph outside its fold.
    distances: Vec<f64>,
}

fn rows_of(set: &TrainingSet, features: FeatureSet, rows: &[usize]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|&r| {
            let row = &set.rows[r];
            features.row(row.dataset, &row.recipe, &set.graphs[row.graph].descriptor)
        })
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Calibration from out-of-fold residuals and distances of `rows`.
fn calibrate(set: &TrainingSet, oof: &OutOfFold, rows: &[usize]) -> DomainCalibration {
    let mut distances: Vec<f64> = rows.iter().map(|&r| oof.distances[r]).collect();
    distances.sort_by(f64::total_cmp);
    let edge_distance = quantile(&distances, 0.5);
    let out_distance = quantile(&distances, 0.9).max(edge_distance);
    let mut residuals: [Vec<f64>; 3] = Default::default();
    for &r in rows {
        let d = domain_of(oof.distances[r], edge_distance, out_distance);
        residuals[d.index()].push(logit(set.rows[r].accuracy) - oof.logits[r]);
    }
    let mut quantiles = [[0.0; 2]; 3];
    for (d, res) in residuals.iter_mut().enumerate() {
        res.sort_by(f64::total_cmp);
        quantiles[d] = [quantile(res, 0.05), quantile(res, 0.95)];
    }
    // An `out` answer is never narrower than an `edge` one, nor `edge` than `in`.
    for d in 1..3 {
        quantiles[d][0] = quantiles[d][0].min(quantiles[d - 1][0]);
        quantiles[d][1] = quantiles[d][1].max(quantiles[d - 1][1]);
    }
    DomainCalibration {
        edge_distance,
        out_distance,
        residual_quantiles: quantiles,
    }
}

fn domain_of(distance: f64, edge: f64, out: f64) -> Domain {
    if distance > out {
        Domain::Out
    } else if distance > edge {
        Domain::Edge
    } else {
        Domain::In
    }
}

/// Runs the grouped cross-validation for every feature set; returns the report and the
/// out-of-fold material for calibrating the final model.
fn cross_validate_inner(
    set: &TrainingSet,
    options: &TrainOptions,
) -> Result<(CvReport, OutOfFold), PredictError> {
    let started = std::time::Instant::now();
    let fold_of_graph = family_folds(set, options.folds, options.seed);
    let fold_rows: Vec<Vec<usize>> = (0..options.folds)
        .map(|f| {
            (0..set.rows.len())
                .filter(|&r| fold_of_graph[set.rows[r].graph] == f)
                .collect()
        })
        .collect();
    let all_rows: Vec<usize> = (0..set.rows.len()).collect();
    let cifar10: Vec<usize> = all_rows
        .iter()
        .copied()
        .filter(|&r| set.rows[r].dataset == 0)
        .collect();

    let mut models = Vec::new();
    let mut archdb_logits = vec![0.0; set.rows.len()];
    for features in FeatureSet::ALL {
        let mut logits = vec![0.0; set.rows.len()];
        for (fold, held_out) in fold_rows.iter().enumerate() {
            if held_out.is_empty() {
                continue;
            }
            let train: Vec<usize> = all_rows
                .iter()
                .copied()
                .filter(|&r| fold_of_graph[set.rows[r].graph] != fold)
                .collect();
            let targets: Vec<f64> = train.iter().map(|&r| logit(set.rows[r].accuracy)).collect();
            let booster = fit_booster(
                &rows_of(set, features, &train),
                &targets,
                options.budget,
                options.seed,
            )?;
            for (r, p) in held_out
                .iter()
                .zip(booster_predict(&booster, &rows_of(set, features, held_out)))
            {
                logits[*r] = p;
            }
        }
        let predicted: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
        models.push(ModelReport {
            features,
            name: features.name(),
            all: metrics(set, &all_rows, &predicted),
            cifar10: metrics(set, &cifar10, &predicted),
        });
        if features == FeatureSet::RecipeGraph {
            archdb_logits = logits;
        }
    }

    // Distance of each graph to the nearest graph of the other folds.
    let vectors: Vec<Vec<f64>> = set
        .graphs
        .iter()
        .map(|g| g.descriptor.domain_vector())
        .collect();
    let scale = fit_scale(&vectors);
    let standardised: Vec<Vec<f32>> = vectors.iter().map(|v| scaled(v, &scale)).collect();
    let graph_distance: Vec<f64> = crate::cpu::on_pool(|| {
        (0..set.graphs.len())
            .into_par_iter()
            .map(|g| {
                (0..set.graphs.len())
                    .filter(|&o| fold_of_graph[o] != fold_of_graph[g])
                    .map(|o| super::distance(&standardised[g], &standardised[o]))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    });
    let oof = OutOfFold {
        logits: archdb_logits,
        distances: set.rows.iter().map(|r| graph_distance[r.graph]).collect(),
    };

    // Cross-fitted calibration: fold f is judged by the calibration of the other folds.
    let mut judged: Vec<(usize, Domain, f64, [f64; 2])> = Vec::with_capacity(set.rows.len());
    for (fold, held_out) in fold_rows.iter().enumerate() {
        let others: Vec<usize> = all_rows
            .iter()
            .copied()
            .filter(|&r| fold_of_graph[set.rows[r].graph] != fold)
            .collect();
        let cal = calibrate(set, &oof, &others);
        for &r in held_out {
            let d = domain_of(oof.distances[r], cal.edge_distance, cal.out_distance);
            let [lo, hi] = cal.residual_quantiles[d.index()];
            let l = oof.logits[r];
            judged.push((r, d, sigmoid(l), [sigmoid(l + lo), sigmoid(l + hi)]));
        }
    }
    let summarise = |items: &[&(usize, Domain, f64, [f64; 2])]| {
        let n = items.len().max(1) as f64;
        let covered = items
            .iter()
            .filter(|(r, _, _, [lo, hi])| (*lo..=*hi).contains(&set.rows[*r].accuracy))
            .count() as f64;
        let width = items.iter().map(|(_, _, _, [lo, hi])| hi - lo).sum::<f64>() / n;
        let error = items
            .iter()
            .map(|(r, _, p, _)| (p - set.rows[*r].accuracy).abs())
            .sum::<f64>()
            / n;
        (covered / n, width, error)
    };
    let everything: Vec<&_> = judged.iter().collect();
    let (coverage, mean_width, _) = summarise(&everything);
    let domains = [Domain::In, Domain::Edge, Domain::Out]
        .into_iter()
        .map(|domain| {
            let part: Vec<&_> = judged.iter().filter(|j| j.1 == domain).collect();
            let (coverage, mean_width, mae) = summarise(&part);
            DomainReport {
                domain,
                rows: part.len(),
                share: part.len() as f64 / judged.len().max(1) as f64,
                mae,
                coverage,
                mean_width,
            }
        })
        .collect();
    let families = set
        .graphs
        .iter()
        .map(|g| g.family.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    Ok((
        CvReport {
            seed: options.seed,
            folds: options.folds,
            families,
            graphs: set.graphs.len(),
            rows: set.rows.len(),
            models,
            calibration: CalibrationReport {
                coverage,
                mean_width,
                domains,
            },
            seconds: started.elapsed().as_secs_f64(),
        },
        oof,
    ))
}

/// The grouped cross-validation of archdb's model and the baselines.
pub fn cross_validate(set: &TrainingSet, options: &TrainOptions) -> Result<CvReport, PredictError> {
    cross_validate_inner(set, options).map(|(report, _)| report)
}

/// Trains the served model on every row, calibrated by a grouped cross-validation (whose
/// report is stored in the artifact).
pub fn train(set: &TrainingSet, options: &TrainOptions) -> Result<RecipePredictor, PredictError> {
    let (report, oof) = cross_validate_inner(set, options)?;
    let all_rows: Vec<usize> = (0..set.rows.len()).collect();
    let calibration = calibrate(set, &oof, &all_rows);
    let features = FeatureSet::RecipeGraph;
    let targets: Vec<f64> = set.rows.iter().map(|r| logit(r.accuracy)).collect();
    let booster = fit_booster(
        &rows_of(set, features, &all_rows),
        &targets,
        options.budget,
        options.seed,
    )?;

    let vectors: Vec<Vec<f64>> = set
        .graphs
        .iter()
        .map(|g| g.descriptor.domain_vector())
        .collect();
    let scale = fit_scale(&vectors);
    let mut best: HashMap<usize, (f64, usize)> = HashMap::new();
    for row in &set.rows {
        let e = best.entry(row.graph).or_insert((0.0, 0));
        e.0 = e.0.max(row.accuracy);
        e.1 += 1;
    }
    let graphs = set
        .graphs
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let (best_accuracy, trials) = *best.get(&i)?;
            Some(KnownGraph {
                name: g.name.clone(),
                dataset: DATASETS[g.dataset].0.to_string(),
                best_accuracy,
                trials,
                vector: scaled(&vectors[i], &scale),
            })
        })
        .collect();
    let datasets = DATASETS
        .iter()
        .enumerate()
        .filter_map(|(d, (name, _))| dataset_info(set, d, name))
        .collect();
    Ok(RecipePredictor {
        format: FORMAT.to_string(),
        features,
        datasets,
        booster,
        graphs,
        scale,
        calibration,
        evaluation: serde_json::to_value(&report)?,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return 0.0;
    }
    values[values.len() / 2]
}

/// Reads one number of a recipe.
type RecipeField = fn(&CompleteRecipe) -> f64;

fn dataset_info(set: &TrainingSet, dataset: usize, name: &str) -> Option<DatasetInfo> {
    let rows: Vec<&Row> = set.rows.iter().filter(|r| r.dataset == dataset).collect();
    if rows.is_empty() {
        return None;
    }
    let field =
        |f: fn(&CompleteRecipe) -> f64| -> Vec<f64> { rows.iter().map(|r| f(&r.recipe)).collect() };
    let mut transforms: HashMap<&str, usize> = HashMap::new();
    for r in &rows {
        *transforms.entry(r.recipe.transform.as_str()).or_default() += 1;
    }
    let transform = transforms
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(t, _)| t.to_string())
        .unwrap_or_default();
    let mut ranges = BTreeMap::new();
    let fields: [(&str, RecipeField); 5] = [
        ("epoch", |r| r.epoch),
        ("lr", |r| r.lr),
        ("momentum", |r| r.momentum),
        ("batch", |r| r.batch),
        ("dropout", |r| r.dropout),
    ];
    for (key, f) in fields {
        let values: Vec<f64> = field(f).into_iter().filter(|v| v.is_finite()).collect();
        if let (Some(lo), Some(hi)) = (
            values.iter().copied().reduce(f64::min),
            values.iter().copied().reduce(f64::max),
        ) {
            ranges.insert(key.to_string(), [lo, hi]);
        }
    }
    let graphs = rows
        .iter()
        .map(|r| r.graph)
        .collect::<std::collections::HashSet<_>>()
        .len();
    Some(DatasetInfo {
        name: name.to_string(),
        rows: rows.len(),
        graphs,
        typical: CompleteRecipe {
            epoch: median(field(|r| r.epoch)),
            lr: median(field(|r| r.lr)),
            momentum: median(field(|r| r.momentum)),
            batch: median(field(|r| r.batch)),
            dropout: median(field(|r| r.dropout)),
            transform,
        },
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(name: &str) -> Graph {
        Graph {
            name: name.into(),
            family: crate::predict::recipe::lemur::family(name).into(),
            dataset: 0,
            descriptor: GraphDescriptor {
                params: 1.0,
                macs: 1.0,
                nodes: 3.0,
                edges: 2.0,
                depth: 2.0,
                input_size: 32.0,
                input_channels: 3.0,
                classes: 10.0,
                widest: 8.0,
                downsamplings: 0.0,
                op_shares: vec![0.0; super::super::op_groups().len()],
            },
        }
    }

    #[test]
    fn folds_hold_whole_families_of_similar_size() {
        let names = [
            "rag-1",
            "rag-2",
            "alt-1",
            "alt-2",
            "alt-3",
            "ga-1",
            "AlexNet",
            "ast-1",
            "ast-2",
            "FractalNet-9",
        ];
        let set = TrainingSet {
            graphs: names.iter().map(|n| graph(n)).collect(),
            rows: (0..names.len())
                .flat_map(|g| {
                    (0..10).map(move |e| Row {
                        graph: g,
                        dataset: 0,
                        recipe: CompleteRecipe {
                            epoch: f64::from(e + 1),
                            lr: 0.01,
                            momentum: 0.9,
                            batch: 64.0,
                            dropout: f64::NAN,
                            transform: "norm_32".into(),
                        },
                        accuracy: 0.5,
                    })
                })
                .collect(),
        };
        for seed in 0..4 {
            let folds = family_folds(&set, 3, seed);
            for (a, ga) in set.graphs.iter().enumerate() {
                for (b, gb) in set.graphs.iter().enumerate() {
                    if ga.family == gb.family {
                        assert_eq!(folds[a], folds[b], "{} and {} split", ga.name, gb.name);
                    }
                }
            }
            let mut sizes = [0usize; 3];
            folds.iter().for_each(|&f| sizes[f] += 1);
            assert!(sizes.iter().all(|&s| (2..=5).contains(&s)), "{sizes:?}");
        }
    }
}
