//! Training: per ensemble member, (1) contrastive pre-training of the encoder on every given
//! graph, labelled or not; (2) end-to-end regression of encoder + one head on the member's
//! training fold; (3) fuzzy c-means on the embeddings of every given graph, centroids frozen;
//! (4) one head per cluster, initialised from the regression head, trained on the frozen
//! embeddings with membership weights. Members differ in seed and validation fold, so the
//! ensemble as a whole sees every labelled sample. Few-shot fine-tuning refits stage (4).
//!
//! Every random choice (initial weights, shuffles, folds, dropout masks) comes from a `StdRng`
//! seeded from `TrainConfig::seed`; with a fixed CPU thread count two runs are bit-identical.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::PredictError;
use super::backend::Backend;
use super::batch::{Batch, Vocabulary};
use super::contrastive::{ContrastiveConfig, Projection, contrastive_loss, soft_positive_weights};
use super::encoder::{Dropout, Encoder, EncoderConfig};
use super::fcm::Fcm;
use super::features::{FeatureConfig, NUMERIC_FEATURES, PreparedGraph};
use super::model::{
    Head, Member, MemberConfig, ModelConfig, Predictor, TargetScores, TargetTransform,
    memberships_tensor, mixture, to_array,
};
use super::nn::{self, Params, Source};
use super::spectral::spectral_signature;
use crate::stats::kendall_tau_b;

type Result<T> = std::result::Result<T, PredictError>;

/// Version of the artifact layout written by this code.
pub const FORMAT_VERSION: u32 = 1;

/// A training graph; `accuracy: None` graphs take part in contrastive pre-training and the
/// clustering only.
#[derive(Debug, Clone)]
pub struct TrainSample {
    pub graph: Arc<PreparedGraph>,
    pub accuracy: Option<f64>,
}

/// Training settings. Defaults are the ones `docs/predictor.md` evaluates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    /// Ensemble members.
    pub ensemble: usize,
    pub encoder: EncoderConfig,
    pub features: FeatureConfig,
    /// Hidden width of the regression heads.
    pub head_hidden: usize,
    pub contrastive: ContrastiveConfig,
    /// Regression epochs (stage 2).
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Weight of the pairwise logistic ranking loss added to the MSE (0 = MSE only).
    pub rank_weight: f64,
    pub flops_transform: bool,
    /// Scale of the (FLOPs-transformed) regression targets: z-scores or quantile scores (see
    /// [`TargetTransform`]).
    #[serde(default)]
    pub target_scores: TargetScores,
    /// Fuzzy c-means clusters (heads); 1 = a single head, no clustering.
    pub clusters: usize,
    pub fuzzifier: f64,
    /// Epochs of the per-cluster heads on frozen embeddings (stage 4).
    pub head_epochs: usize,
    pub head_learning_rate: f64,
    /// Share of the labelled samples each member holds out for validation (reported as τ, and
    /// used to keep each stage's best epoch); 0 = train on all, keep the last epoch.
    pub validation_fraction: f64,
    pub backend: Backend,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            ensemble: 3,
            encoder: EncoderConfig::default(),
            features: FeatureConfig::default(),
            head_hidden: 32,
            contrastive: ContrastiveConfig::default(),
            epochs: 150,
            batch_size: 32,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            rank_weight: 0.25,
            flops_transform: true,
            target_scores: TargetScores::Uniform,
            clusters: 4,
            fuzzifier: 2.0,
            head_epochs: 50,
            head_learning_rate: 1e-3,
            validation_fraction: 0.1,
            backend: Backend::Cpu,
        }
    }
}

impl TrainConfig {
    /// Featurises a graph for the encoder this configuration trains.
    pub fn prepare(&self, graph: super::CgGraphRef<'_>) -> Result<PreparedGraph> {
        PreparedGraph::new(graph, &self.features, self.encoder.layers)
    }
}

/// Training stage an [`EpochReport`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    Pretrain,
    Regression,
    Heads,
}

/// Progress of one epoch of one member (also what the PyTorch trainer prints, one JSON line
/// an epoch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochReport {
    pub member: usize,
    pub stage: Stage,
    pub epoch: usize,
    /// Mean training loss of the epoch.
    pub loss: f64,
    /// Kendall τ-b on the member's validation fold (None without one, and in pre-training).
    pub validation_kendall: Option<f64>,
    pub seconds: f64,
}

/// Trains a predictor on `samples` (at least two labelled). `progress` hears every epoch and
/// stops the training (with [`PredictError::Cancelled`]) by returning false.
pub fn train(
    samples: &[TrainSample],
    config: &TrainConfig,
    progress: &mut dyn FnMut(EpochReport) -> bool,
) -> Result<Predictor> {
    let labelled: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].accuracy.is_some())
        .collect();
    if labelled.len() < 2 {
        return Err(PredictError::Config(
            "training needs at least two labelled graphs".into(),
        ));
    }
    if config.ensemble == 0 || config.batch_size == 0 || config.encoder.layers == 0 {
        return Err(PredictError::Config(
            "ensemble, batch_size and encoder.layers must be positive".into(),
        ));
    }
    if samples
        .iter()
        .any(|s| s.graph.layers() != config.encoder.layers)
    {
        return Err(PredictError::Config(
            "samples were prepared for another encoder depth (use TrainConfig::prepare)".into(),
        ));
    }
    let device = config.backend.device()?;
    let vocabulary = Vocabulary::current();
    let target = TargetTransform::fit(
        &labelled
            .iter()
            .map(|&i| samples[i].accuracy.unwrap())
            .collect::<Vec<_>>(),
        &labelled
            .iter()
            .map(|&i| samples[i].graph.flops)
            .collect::<Vec<_>>(),
        config.flops_transform,
        config.target_scores,
    );
    let targets: Vec<f32> = samples
        .iter()
        .map(|s| {
            s.accuracy
                .map_or(f32::NAN, |a| target.forward(a, s.graph.flops) as f32)
        })
        .collect();

    // Validation folds: one shuffle of the labelled samples, member m holds out the m-th slice.
    let mut order = labelled.clone();
    order.shuffle(&mut StdRng::seed_from_u64(config.seed));
    let held_out = if config.validation_fraction > 0.0 {
        ((labelled.len() as f64 * config.validation_fraction).round() as usize)
            .clamp(1, labelled.len() - 1)
    } else {
        0
    };

    let context = Context {
        samples,
        targets: &targets,
        target: target.clone(),
        config,
        vocabulary: &vocabulary,
        device: &device,
    };
    let mut members = Vec::with_capacity(config.ensemble);
    let mut validation = Vec::new();
    for m in 0..config.ensemble {
        let start = (m * held_out) % labelled.len();
        let fold: Vec<usize> = (0..held_out)
            .map(|k| order[(start + k) % order.len()])
            .collect();
        let train_idx: Vec<usize> = order
            .iter()
            .copied()
            .filter(|i| !fold.contains(i))
            .collect();
        let seed = config
            .seed
            .wrapping_add((m as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (member, tau) = context.train_member(m, seed, &train_idx, &fold, progress)?;
        members.push(member);
        validation.push(tau);
    }

    let model = ModelConfig {
        format_version: FORMAT_VERSION,
        encoder: config.encoder,
        head_hidden: config.head_hidden,
        features: config.features.clone(),
        numeric_features: NUMERIC_FEATURES.iter().map(|s| s.to_string()).collect(),
        vocabulary: vocabulary.labels().to_vec(),
        target,
        fuzzifier: config.fuzzifier,
        members: members
            .iter()
            .map(|m| MemberConfig {
                clusters: m.heads.len(),
                ood_scale: m.ood_scale,
            })
            .collect(),
        provenance: serde_json::json!({
            "train_config": config,
            "samples": samples.len(),
            "labelled": labelled.len(),
            "validation_kendall": validation,
        }),
    };
    Ok(Predictor {
        config: model,
        vocabulary,
        members,
        device,
    })
}

/// What every member's training reads.
struct Context<'a> {
    samples: &'a [TrainSample],
    targets: &'a [f32],
    target: TargetTransform,
    config: &'a TrainConfig,
    vocabulary: &'a Vocabulary,
    device: &'a Device,
}

impl Context<'_> {
    fn graphs(&self, idx: &[usize]) -> Vec<&PreparedGraph> {
        idx.iter().map(|&i| &*self.samples[i].graph).collect()
    }

    fn batch(&self, idx: &[usize]) -> Result<Batch> {
        Batch::new(&self.graphs(idx), self.vocabulary, self.device)
    }

    fn targets_of(&self, idx: &[usize]) -> Vec<f32> {
        idx.iter().map(|&i| self.targets[i]).collect()
    }

    /// Kendall τ between predicted targets mapped back to accuracies and true accuracies.
    fn kendall(&self, idx: &[usize], predicted: &Tensor) -> Result<f64> {
        let predicted: Vec<f32> = predicted.to_vec1()?;
        let (p, t): (Vec<f64>, Vec<f64>) = idx
            .iter()
            .zip(predicted)
            .map(|(&i, y)| {
                let s = &self.samples[i];
                (
                    self.target.inverse(y as f64, s.graph.flops),
                    s.accuracy.unwrap(),
                )
            })
            .unzip();
        Ok(kendall_tau_b(&p, &t))
    }

    fn train_member(
        &self,
        member: usize,
        seed: u64,
        train_idx: &[usize],
        val_idx: &[usize],
        progress: &mut dyn FnMut(EpochReport) -> bool,
    ) -> Result<(Member, Option<f64>)> {
        let config = self.config;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = Params::new(Source::Init(&mut rng), self.device);
        let encoder = Encoder::new(&mut params, &config.encoder, self.vocabulary.rows())?;
        let mut vars = params.vars.clone();
        let head = Head::new(
            &mut params,
            "head.0",
            config.encoder.embedding,
            config.head_hidden,
        )?;
        let all_vars = params.vars;

        if config.contrastive.epochs > 0 && self.samples.len() >= 2 {
            self.pretrain(member, &encoder, &vars, &mut rng, progress)?;
        }
        let val_batch = if val_idx.is_empty() {
            None
        } else {
            Some(self.batch(val_idx)?)
        };
        let mut best_tau = self.regress(
            member,
            &encoder,
            &head,
            &all_vars,
            train_idx,
            val_idx,
            val_batch.as_ref(),
            &mut rng,
            progress,
        )?;

        // Stage 3: fuzzy c-means on every graph's embedding.
        let all: Vec<usize> = (0..self.samples.len()).collect();
        let mut embeddings = Vec::new();
        for chunk in all.chunks(512) {
            embeddings.push(to_array(&encoder.forward(&self.batch(chunk)?, None)?)?);
        }
        let views: Vec<_> = embeddings.iter().map(|e| e.view()).collect();
        let points = ndarray::concatenate(ndarray::Axis(0), &views)
            .map_err(|e| PredictError::Config(e.to_string()))?;
        let fcm = Fcm::fit(points.view(), config.clusters, config.fuzzifier, 300, 1e-6)?;
        let nearest: Vec<f64> = fcm
            .distances(points.view())
            .rows()
            .into_iter()
            .map(|r| r.iter().copied().fold(f64::INFINITY, f64::min))
            .collect();
        let ood_scale = percentile(&nearest, 0.95).max(1e-9);

        // Stage 4: per-cluster heads from copies of the regression head.
        let copies: HashMap<String, Tensor> = (0..fcm.clusters())
            .flat_map(|k| {
                all_vars
                    .iter()
                    .filter(|(name, _)| name.starts_with("head.0."))
                    .map(move |(name, var)| {
                        (
                            name.replacen("head.0.", &format!("head.{k}."), 1),
                            var.as_tensor().clone(),
                        )
                    })
            })
            .collect();
        let mut params = Params::new(Source::Load(&copies), self.device);
        let heads = Head::many(
            &mut params,
            fcm.clusters(),
            config.encoder.embedding,
            config.head_hidden,
        )?;
        let head_vars = params.vars;
        if fcm.clusters() > 1 && config.head_epochs > 0 {
            let tau = self.fit_heads(
                member, &encoder, &heads, &head_vars, &fcm, train_idx, val_idx, &mut rng, progress,
            )?;
            if tau.is_some() {
                best_tau = tau;
            }
        }
        vars.extend(head_vars);
        Ok((
            Member {
                encoder,
                heads,
                fcm,
                ood_scale,
                vars,
            },
            best_tau,
        ))
    }

    /// Stage 1: soft-positive contrastive pre-training of the encoder.
    fn pretrain(
        &self,
        member: usize,
        encoder: &Encoder,
        encoder_vars: &BTreeMap<String, Var>,
        rng: &mut StdRng,
        progress: &mut dyn FnMut(EpochReport) -> bool,
    ) -> Result<()> {
        let c = &self.config.contrastive;
        let projection = {
            let mut params = Params::new(Source::Init(rng), self.device);
            let p = Projection::new(&mut params, self.config.encoder.embedding, c.projection)?;
            (p, params.vars)
        };
        let vars: Vec<Var> = encoder_vars
            .values()
            .chain(projection.1.values())
            .cloned()
            .collect();
        let mut optimizer = AdamW::new(
            vars,
            ParamsAdamW {
                lr: c.learning_rate,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let signatures: Vec<Vec<f32>> = self
            .samples
            .iter()
            .map(|s| spectral_signature(s.graph.spectrum(), c.eigenvalues))
            .collect();
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        for epoch in 0..c.epochs {
            let started = Instant::now();
            order.shuffle(rng);
            let (mut total, mut count) = (0.0, 0);
            for chunk in order.chunks(c.batch_size.max(2)) {
                if chunk.len() < 2 {
                    continue;
                }
                let batch = self.batch(chunk)?;
                let a = encoder.forward(
                    &batch,
                    Some(Dropout {
                        rate: c.dropout,
                        rng,
                    }),
                )?;
                let b = encoder.forward(
                    &batch,
                    Some(Dropout {
                        rate: c.dropout,
                        rng,
                    }),
                )?;
                let z = projection.0.forward(&Tensor::cat(&[a, b], 0)?)?;
                let sigs: Vec<Vec<f32>> = chunk.iter().map(|&i| signatures[i].clone()).collect();
                let alpha = soft_positive_weights(&sigs, c.spectral_temperature);
                let loss = contrastive_loss(&z, &alpha, c.temperature)?;
                optimizer.backward_step(&loss)?;
                total += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
                count += chunk.len();
            }
            report(
                progress,
                EpochReport {
                    member,
                    stage: Stage::Pretrain,
                    epoch,
                    loss: total / count.max(1) as f64,
                    validation_kendall: None,
                    seconds: started.elapsed().as_secs_f64(),
                },
            )?;
        }
        Ok(())
    }

    /// Stage 2: encoder + one head on the training fold. Returns the kept epoch's validation τ.
    #[allow(clippy::too_many_arguments)]
    fn regress(
        &self,
        member: usize,
        encoder: &Encoder,
        head: &Head,
        vars: &BTreeMap<String, Var>,
        train_idx: &[usize],
        val_idx: &[usize],
        val_batch: Option<&Batch>,
        rng: &mut StdRng,
        progress: &mut dyn FnMut(EpochReport) -> bool,
    ) -> Result<Option<f64>> {
        let config = self.config;
        let mut optimizer = AdamW::new(
            vars.values().cloned().collect(),
            ParamsAdamW {
                lr: config.learning_rate,
                weight_decay: config.weight_decay,
                ..Default::default()
            },
        )?;
        let mut order = train_idx.to_vec();
        let mut best: Option<(f64, Vec<Tensor>)> = None;
        for epoch in 0..config.epochs {
            let started = Instant::now();
            order.shuffle(rng);
            let (mut total, mut count) = (0.0, 0);
            for chunk in order.chunks(config.batch_size) {
                let embeddings = encoder.forward(&self.batch(chunk)?, None)?;
                let predicted = head.forward(&embeddings)?.squeeze(1)?;
                let loss = regression_loss(
                    &predicted,
                    &self.targets_of(chunk),
                    config.rank_weight,
                    self.device,
                )?;
                optimizer.backward_step(&loss)?;
                total += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
                count += chunk.len();
            }
            let tau = match val_batch {
                Some(batch) => {
                    let predicted = head.forward(&encoder.forward(batch, None)?)?.squeeze(1)?;
                    Some(self.kendall(val_idx, &predicted)?)
                }
                None => None,
            };
            keep_best(&mut best, tau, vars)?;
            report(
                progress,
                EpochReport {
                    member,
                    stage: Stage::Regression,
                    epoch,
                    loss: total / count.max(1) as f64,
                    validation_kendall: tau,
                    seconds: started.elapsed().as_secs_f64(),
                },
            )?;
        }
        restore_best(best, vars)
    }

    /// Stage 4: per-cluster heads on frozen embeddings. Returns the kept epoch's validation τ.
    #[allow(clippy::too_many_arguments)]
    fn fit_heads(
        &self,
        member: usize,
        encoder: &Encoder,
        heads: &[Head],
        vars: &BTreeMap<String, Var>,
        fcm: &Fcm,
        train_idx: &[usize],
        val_idx: &[usize],
        rng: &mut StdRng,
        progress: &mut dyn FnMut(EpochReport) -> bool,
    ) -> Result<Option<f64>> {
        let config = self.config;
        let frozen = |idx: &[usize]| -> Result<(Tensor, Tensor)> {
            let embeddings = encoder.forward(&self.batch(idx)?, None)?.detach();
            let u = fcm.memberships(to_array(&embeddings)?.view());
            Ok((embeddings, memberships_tensor(&u, self.device)?))
        };
        let (train_e, train_u) = frozen(train_idx)?;
        let validation = if val_idx.is_empty() {
            None
        } else {
            Some(frozen(val_idx)?)
        };
        let targets = self.targets_of(train_idx);
        let mut optimizer = AdamW::new(
            vars.values().cloned().collect(),
            ParamsAdamW {
                lr: config.head_learning_rate,
                weight_decay: config.weight_decay,
                ..Default::default()
            },
        )?;
        let mut order: Vec<u32> = (0..train_idx.len() as u32).collect();
        let mut best: Option<(f64, Vec<Tensor>)> = None;
        for epoch in 0..config.head_epochs {
            let started = Instant::now();
            order.shuffle(rng);
            let (mut total, mut count) = (0.0, 0);
            for chunk in order.chunks(config.batch_size) {
                let rows = Tensor::from_slice(chunk, chunk.len(), self.device)?;
                let predicted = mixture(
                    heads,
                    &train_e.index_select(&rows, 0)?,
                    &train_u.index_select(&rows, 0)?,
                )?;
                let chunk_targets: Vec<f32> = chunk.iter().map(|&r| targets[r as usize]).collect();
                let loss =
                    regression_loss(&predicted, &chunk_targets, config.rank_weight, self.device)?;
                optimizer.backward_step(&loss)?;
                total += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
                count += chunk.len();
            }
            let tau = match &validation {
                Some((e, u)) => Some(self.kendall(val_idx, &mixture(heads, e, u)?)?),
                None => None,
            };
            keep_best(&mut best, tau, vars)?;
            report(
                progress,
                EpochReport {
                    member,
                    stage: Stage::Heads,
                    epoch,
                    loss: total / count.max(1) as f64,
                    validation_kendall: tau,
                    seconds: started.elapsed().as_secs_f64(),
                },
            )?;
        }
        restore_best(best, vars)
    }
}

/// Hands an epoch's report to the caller, who may stop the training.
fn report(progress: &mut dyn FnMut(EpochReport) -> bool, epoch: EpochReport) -> Result<()> {
    if progress(epoch) {
        Ok(())
    } else {
        Err(PredictError::Cancelled)
    }
}

/// Remembers the parameters of the epoch with the best validation τ so far.
fn keep_best(
    best: &mut Option<(f64, Vec<Tensor>)>,
    tau: Option<f64>,
    vars: &BTreeMap<String, Var>,
) -> Result<()> {
    if let Some(tau) = tau.filter(|t| t.is_finite())
        && best.as_ref().is_none_or(|(b, _)| tau > *b)
    {
        *best = Some((tau, nn::snapshot(vars)?));
    }
    Ok(())
}

fn restore_best(
    best: Option<(f64, Vec<Tensor>)>,
    vars: &BTreeMap<String, Var>,
) -> Result<Option<f64>> {
    Ok(match best {
        Some((tau, values)) => {
            nn::restore(vars, &values)?;
            Some(tau)
        }
        None => None,
    })
}

/// MSE plus `rank_weight` × the mean pairwise logistic loss
/// `softplus(−sign(yᵢ − yⱼ)(ŷᵢ − ŷⱼ))` over the batch's pairs with different targets.
pub fn regression_loss(
    predicted: &Tensor,
    targets: &[f32],
    rank_weight: f64,
    device: &Device,
) -> Result<Tensor> {
    let n = targets.len();
    let truth = Tensor::from_slice(targets, n, device)?;
    let mse = predicted.sub(&truth)?.sqr()?.mean_all()?;
    if rank_weight == 0.0 || n < 2 {
        return Ok(mse);
    }
    let signs: Vec<f32> = (0..n * n)
        .map(|k| {
            let d = targets[k / n] - targets[k % n];
            if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            }
        })
        .collect();
    let pairs = signs.iter().filter(|&&s| s != 0.0).count();
    if pairs == 0 {
        return Ok(mse);
    }
    let signs = Tensor::from_vec(signs, (n, n), device)?;
    let differences = predicted
        .unsqueeze(1)?
        .broadcast_sub(&predicted.unsqueeze(0)?)?;
    let margin = differences.mul(&signs)?.neg()?;
    // softplus(x) = max(x, 0) + ln(1 + e^−|x|), stable for large |x|.
    let softplus = margin
        .relu()?
        .add(&margin.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    let ranking = softplus
        .mul(&signs.abs()?)?
        .sum_all()?
        .affine(1.0 / pairs as f64, 0.0)?;
    Ok(mse.add(&ranking.affine(rank_weight, 0.0)?)?)
}

/// `(a, b)` minimising Σ (a·xᵢ + b − yᵢ)² with a > 0 (else a = 1: keep the ranking).
fn least_squares_line(x: &[f32], y: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let mx = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let my = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        sxy += (a as f64 - mx) * (b as f64 - my);
        sxx += (a as f64 - mx).powi(2);
    }
    let scale = if sxx > 0.0 && sxy > 0.0 {
        sxy / sxx
    } else {
        1.0
    };
    (scale, my - scale * mx)
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Few-shot adaptation settings (GENNAPE: 50 samples of the new family).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub rank_weight: f64,
    /// Also adapt the encoder's readout MLP (memberships then follow the moving embeddings).
    pub tune_readout: bool,
    /// First map every member's output through the least-squares line `a·ŷ + b` (a > 0) onto
    /// the new targets: a new family's accuracy level may be several standard deviations away
    /// from the training family's, which gradient steps at a fine-tuning rate take long to reach.
    pub recalibrate: bool,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            epochs: 100,
            batch_size: 16,
            learning_rate: 1e-3,
            rank_weight: 0.5,
            tune_readout: true,
            recalibrate: true,
        }
    }
}

impl Predictor {
    /// Adapts every member's heads (and readout MLP if asked) to labelled `samples` of a new
    /// family, on a target transform refitted to them; the GNN layers and FCM centroids stay
    /// frozen, so OOD scores remain relative to the original training set.
    pub fn finetune(&mut self, samples: &[TrainSample], config: &FinetuneConfig) -> Result<()> {
        let labelled: Vec<&TrainSample> = samples.iter().filter(|s| s.accuracy.is_some()).collect();
        if labelled.is_empty() || config.batch_size == 0 {
            return Err(PredictError::Config(
                "fine-tuning needs labelled samples and a positive batch size".into(),
            ));
        }
        let graphs: Vec<&PreparedGraph> = labelled.iter().map(|s| &*s.graph).collect();
        // The new family's accuracies set the target scale: quantile scores fitted on another
        // family squeeze a family that sits in its sparse tail (NB201 CIFAR-100 at 60–73 %
        // under CIFAR-10's 80–94 % crowd) into a sliver of the scale.
        let old = &self.config.target;
        self.config.target = TargetTransform::fit(
            &labelled
                .iter()
                .map(|s| s.accuracy.unwrap())
                .collect::<Vec<_>>(),
            &graphs.iter().map(|g| g.flops).collect::<Vec<_>>(),
            old.flops_transform,
            old.scores,
        );
        let targets: Vec<f32> = labelled
            .iter()
            .map(|s| {
                self.config
                    .target
                    .forward(s.accuracy.unwrap(), s.graph.flops) as f32
            })
            .collect();
        let batch = Batch::new(&graphs, &self.vocabulary, &self.device)?;
        for (m, member) in self.members.iter().enumerate() {
            let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(m as u64));
            let pooled = member.encoder.pooled(&batch, None)?.detach();
            if config.recalibrate {
                let output = member.embed(&batch)?;
                let predicted: Vec<f32> = member
                    .targets(&output.embeddings, &output.memberships)?
                    .to_vec1()?;
                let (scale, shift) = least_squares_line(&predicted, &targets);
                for head in &member.heads {
                    head.rescale(scale, shift)?;
                }
            }
            let trainable: Vec<Var> = member
                .vars
                .iter()
                .filter(|(name, _)| {
                    name.starts_with("head.")
                        || (config.tune_readout && name.starts_with("encoder.readout."))
                })
                .map(|(_, v)| v.clone())
                .collect();
            let mut optimizer = AdamW::new(
                trainable,
                ParamsAdamW {
                    lr: config.learning_rate,
                    weight_decay: 0.0,
                    ..Default::default()
                },
            )?;
            let mut order: Vec<u32> = (0..graphs.len() as u32).collect();
            for _ in 0..config.epochs {
                order.shuffle(&mut rng);
                for chunk in order.chunks(config.batch_size) {
                    let rows = Tensor::from_slice(chunk, chunk.len(), &self.device)?;
                    let embeddings = member.encoder.readout(&pooled.index_select(&rows, 0)?)?;
                    let u: Array2<f64> = member
                        .fcm
                        .memberships(to_array(&embeddings.detach())?.view());
                    let predicted = member.targets(&embeddings, &u)?;
                    let chunk_targets: Vec<f32> =
                        chunk.iter().map(|&r| targets[r as usize]).collect();
                    let loss = regression_loss(
                        &predicted,
                        &chunk_targets,
                        config.rank_weight,
                        &self.device,
                    )?;
                    optimizer.backward_step(&loss)?;
                }
            }
        }
        Ok(())
    }
}
