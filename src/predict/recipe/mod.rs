//! Accuracy under a training recipe, for any architecture.
//!
//! LEMUR's accuracies depend on the recipe (epochs, learning rate, batch, input transform) at
//! least as much as on the network, so a prediction is conditioned on both: gradient-boosted
//! trees ([perpetual](https://docs.rs/perpetual)) over
//!
//! * the dataset (one-hot) and the [`Recipe`]: epoch, learning rate, momentum, batch, dropout and
//!   the input transform's resolution, flip and normalisation;
//! * a [`GraphDescriptor`] of the computation graph: size (params, MACs at the recipe's
//!   resolution, nodes, edges, depth), shape (input channels, classes, widest layer,
//!   down-samplings) and the mix of op labels.
//!
//! The target is the logit of the accuracy fraction, so every answer lies in (0, 1). The 90 %
//! interval and the `in | edge | out` domain verdict come from out-of-fold residuals of a
//! grouped cross-validation in which whole families were held out ([`train`]).
//!
//! `docs/predictor.md` ("Any architecture") has the evaluation and the baselines.

pub mod lemur;
pub mod train;

use std::collections::{BTreeMap, HashMap};

use perpetual::objective::Objective;
use perpetual::{Matrix, PerpetualBooster};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::CgGraphRef;
use super::PredictError;

/// The image-classification datasets the recipe predictor covers, with their native input size.
pub const DATASETS: [(&str, f64); 6] = [
    ("cifar-10", 32.0),
    ("cifar-100", 32.0),
    ("mnist", 28.0),
    ("svhn", 32.0),
    ("imagenette", 320.0),
    ("celeba-gender", 218.0),
];

/// The hyperparameter names a recipe understands (others are ignored with a warning).
pub const HYPERPARAMETERS: [&str; 5] = ["lr", "momentum", "batch", "dropout", "transform"];

/// How a network was (or will be) trained. Every field is optional: missing ones take the
/// dataset's typical value ([`RecipePredictor::complete`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recipe {
    /// Training epochs (LEMUR: the epoch of the row; 1 = after the first epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// LEMUR transform name, e.g. `norm_32_flip` (resolution 32, horizontal flip, normalised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
}

impl Recipe {
    /// A recipe from a JSON `hyperparameters` object; unknown or ill-typed names are returned as
    /// warnings instead of failing the request.
    pub fn from_hyperparameters(
        epoch: Option<f64>,
        hyperparameters: &serde_json::Map<String, serde_json::Value>,
    ) -> (Self, Vec<String>) {
        let mut recipe = Recipe {
            epoch,
            ..Recipe::default()
        };
        let mut warnings = Vec::new();
        for (name, value) in hyperparameters {
            let number = value.as_f64().filter(|v| v.is_finite());
            let slot = match name.as_str() {
                "lr" => &mut recipe.lr,
                "momentum" => &mut recipe.momentum,
                "batch" => &mut recipe.batch,
                "dropout" => &mut recipe.dropout,
                "transform" => {
                    match value.as_str() {
                        Some(t) => recipe.transform = Some(t.to_string()),
                        None => warnings
                            .push("hyperparameter 'transform' is not a string; ignored".into()),
                    }
                    continue;
                }
                _ => {
                    warnings.push(format!(
                        "unknown hyperparameter '{name}' ignored (known: {})",
                        HYPERPARAMETERS.join(", ")
                    ));
                    continue;
                }
            };
            match number {
                Some(v) => *slot = Some(v),
                None => warnings.push(format!("hyperparameter '{name}' is not a number; ignored")),
            }
        }
        (recipe, warnings)
    }
}

/// What a LEMUR transform name says about the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransformInfo {
    /// Side of the resized input; `None` keeps the dataset's native size.
    pub resolution: Option<f64>,
    pub flip: bool,
    pub kind: TransformKind,
}

/// The normalisation family of a transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformKind {
    /// `norm_*`: per-channel mean/std normalisation.
    Norm,
    /// `echo_*`: no normalisation.
    Echo,
    /// `complex_*`: complex-valued input.
    Complex,
    /// Anything else (`bf-v1-…` augmentation pipelines, `soft_pad`, …).
    Other,
}

impl TransformInfo {
    pub fn parse(name: &str) -> Self {
        let mut parts = name.split('_');
        let kind = match parts.next() {
            Some("norm") => TransformKind::Norm,
            Some("echo") => TransformKind::Echo,
            Some("complex") => TransformKind::Complex,
            _ => TransformKind::Other,
        };
        let mut info = TransformInfo {
            resolution: None,
            flip: name.to_ascii_lowercase().contains("flip"),
            kind,
        };
        if kind != TransformKind::Other {
            info.resolution = parts
                .filter_map(|p| p.parse::<f64>().ok())
                .find(|r| *r > 0.0);
        }
        info
    }
}

/// Whole-graph features of a computation graph (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphDescriptor {
    pub params: f64,
    pub macs: f64,
    pub nodes: f64,
    pub edges: f64,
    pub depth: f64,
    /// Height of the graph's input (the resolution its MACs were counted at).
    pub input_size: f64,
    pub input_channels: f64,
    pub classes: f64,
    pub widest: f64,
    pub downsamplings: f64,
    /// Share of the nodes per op label of [`op_groups`].
    pub op_shares: Vec<f64>,
}

/// Descriptors of stored architectures, kept so that predicting by id does not load the whole
/// graph again. A stored graph never changes and ids are never reused, so an entry never goes
/// stale; the least recently used go first when the cache is full.
pub struct DescriptorCache(std::sync::Mutex<lru::LruCache<i64, std::sync::Arc<GraphDescriptor>>>);

/// Descriptors kept by a [`DescriptorCache`] by default: about 30 MB at ~300 bytes each.
pub const DESCRIPTOR_CACHE_ENTRIES: usize = 100_000;

impl Default for DescriptorCache {
    fn default() -> Self {
        Self::new(std::num::NonZeroUsize::new(DESCRIPTOR_CACHE_ENTRIES).expect("non-zero"))
    }
}

impl DescriptorCache {
    pub fn new(capacity: std::num::NonZeroUsize) -> Self {
        Self(std::sync::Mutex::new(lru::LruCache::new(capacity)))
    }

    pub fn get(&self, id: i64) -> Option<std::sync::Arc<GraphDescriptor>> {
        self.lock().get(&id).cloned()
    }

    pub fn insert(&self, id: i64, descriptor: std::sync::Arc<GraphDescriptor>) {
        self.lock().put(id, descriptor);
    }

    /// Drops a deleted architecture (its memory; lookups by a deleted id fail before this).
    pub fn forget(&self, id: i64) {
        self.lock().pop(&id);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, lru::LruCache<i64, std::sync::Arc<GraphDescriptor>>> {
        // The cache holds plain values: a panic elsewhere cannot leave it inconsistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Op labels grouped into the families whose shares describe a graph.
pub fn op_groups() -> &'static [(&'static str, &'static [&'static str])] {
    &[
        ("conv", &["Conv", "ConvTranspose"]),
        ("depthwise", &["DepthwiseConv"]),
        ("linear", &["Linear", "MatMul", "Gemm", "Einsum"]),
        ("batchnorm", &["BatchNorm"]),
        (
            "layernorm",
            &["LayerNorm", "GroupNorm", "InstanceNorm", "LRN"],
        ),
        ("relu", &["ReLU", "ReLU6", "LeakyReLU", "PReLU", "Clip"]),
        (
            "smooth_act",
            &[
                "GELU",
                "SiLU",
                "Sigmoid",
                "Tanh",
                "HardSwish",
                "HardSigmoid",
                "Mish",
                "Softplus",
                "Elu",
                "Selu",
                "Erf",
            ],
        ),
        ("pool", &["MaxPool", "AveragePool", "AvgPool", "LpPool"]),
        (
            "global_pool",
            &["GlobalAvgPool", "GlobalMaxPool", "ReduceMean", "ReduceMax"],
        ),
        ("add", &["Add", "Sub"]),
        ("mul", &["Mul", "Div"]),
        ("concat", &["Concat", "Split"]),
        ("softmax", &["Softmax", "LogSoftmax"]),
        (
            "reshape",
            &[
                "Reshape",
                "Flatten",
                "Transpose",
                "Squeeze",
                "Unsqueeze",
                "Gather",
                "Slice",
                "Expand",
            ],
        ),
        ("dropout", &["Dropout"]),
    ]
}

impl GraphDescriptor {
    pub fn new(graph: CgGraphRef<'_>) -> Self {
        let n = graph.nodes.len();
        let mut depth = vec![0u32; n];
        // Nodes are stored in topological order, so one pass over the edges sorted by source
        // gives the longest path.
        let mut edges: Vec<[u32; 2]> = graph.edges.to_vec();
        edges.sort_unstable();
        for [s, t] in &edges {
            let (s, t) = (*s as usize, *t as usize);
            if s < n && t < n {
                depth[t] = depth[t].max(depth[s] + 1);
            }
        }
        let groups = op_groups();
        let mut shares = vec![0.0; groups.len()];
        let (mut params, mut macs, mut widest, mut downsamplings) = (0u64, 0u64, 0i64, 0usize);
        let (mut input_size, mut input_channels, mut classes) = (0.0, 0.0, 0.0);
        for node in graph.nodes {
            params = params.saturating_add(node.params);
            macs = macs.saturating_add(node.macs);
            let [h_in, h_out, _, _, _, c_out] = node.resolution;
            widest = widest.max(c_out);
            if h_in > 0 && h_out > 0 && h_out < h_in {
                downsamplings += 1;
            }
            match node.label.as_str() {
                "Input" if input_size == 0.0 => {
                    let shape = node.output_shape.as_deref().unwrap_or(&[]);
                    input_channels = shape.get(1).copied().unwrap_or(0) as f64;
                    input_size = shape.get(2).copied().unwrap_or(0) as f64;
                }
                "Output" => {
                    let shape = node.input_shape.as_deref().unwrap_or(&[]);
                    classes = shape.last().copied().unwrap_or(0) as f64;
                }
                label => {
                    if let Some(g) = groups.iter().position(|(_, ls)| ls.contains(&label)) {
                        shares[g] += 1.0;
                    }
                }
            }
        }
        let ops = (n.saturating_sub(2)).max(1) as f64;
        shares.iter_mut().for_each(|s| *s /= ops);
        GraphDescriptor {
            params: params as f64,
            macs: macs as f64,
            nodes: n as f64,
            edges: graph.edges.len() as f64,
            depth: depth.iter().copied().max().unwrap_or(0) as f64,
            input_size,
            input_channels,
            classes,
            widest: widest as f64,
            downsamplings: downsamplings as f64,
            op_shares: shares,
        }
    }

    /// The features the domain distance is measured on (scale-free: logs and shares).
    fn domain_vector(&self) -> Vec<f64> {
        let mut v = vec![
            self.params.ln_1p(),
            self.macs.ln_1p(),
            self.nodes.ln_1p(),
            self.depth.ln_1p(),
            self.widest.ln_1p(),
            self.downsamplings,
        ];
        v.extend(&self.op_shares);
        v
    }
}

/// Which inputs a model sees: the baselines and archdb's model share everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSet {
    /// Dataset and recipe only.
    Recipe,
    /// Plus params, MACs, node count and depth.
    RecipeSize,
    /// Plus the whole [`GraphDescriptor`] (archdb's model).
    RecipeGraph,
}

impl FeatureSet {
    pub const ALL: [FeatureSet; 3] = [Self::Recipe, Self::RecipeSize, Self::RecipeGraph];

    pub fn name(self) -> &'static str {
        match self {
            Self::Recipe => "GBT on the recipe",
            Self::RecipeSize => "GBT on recipe + params, MACs, nodes, depth",
            Self::RecipeGraph => "archdb (GBT on recipe + graph descriptor)",
        }
    }

    /// One model input row.
    pub fn row(self, dataset: usize, recipe: &CompleteRecipe, graph: &GraphDescriptor) -> Vec<f64> {
        let mut row: Vec<f64> = (0..DATASETS.len())
            .map(|d| f64::from(d == dataset))
            .collect();
        let transform = TransformInfo::parse(&recipe.transform);
        let resolution = transform.resolution.unwrap_or(DATASETS[dataset].1);
        row.extend([
            recipe.epoch,
            recipe.epoch.ln(),
            recipe.lr.max(1e-12).ln(),
            recipe.momentum,
            recipe.batch.max(1.0).ln(),
            recipe.dropout,
            resolution.ln(),
            f64::from(transform.flip),
            transform.kind as u8 as f64,
        ]);
        if self == Self::Recipe {
            return row;
        }
        // MACs scale with the input area: the graph was counted at its own input size.
        let area = if graph.input_size > 0.0 {
            (resolution / graph.input_size).powi(2)
        } else {
            1.0
        };
        row.extend([
            graph.params.ln_1p(),
            (graph.macs * area).ln_1p(),
            graph.nodes.ln_1p(),
            graph.depth.ln_1p(),
        ]);
        if self == Self::RecipeSize {
            return row;
        }
        row.extend([
            graph.edges.ln_1p(),
            graph.input_channels,
            graph.classes.ln_1p(),
            graph.widest.ln_1p(),
            graph.downsamplings,
            (graph.macs.ln_1p() - graph.params.ln_1p()),
        ]);
        row.extend(&graph.op_shares);
        row
    }
}

/// A recipe with every field filled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompleteRecipe {
    pub epoch: f64,
    pub lr: f64,
    pub momentum: f64,
    pub batch: f64,
    pub dropout: f64,
    pub transform: String,
}

/// The domain verdict of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// As close to the measured graphs as the closer half of held-out families were.
    In,
    /// Between the held-out families' median and 90th-percentile distance.
    Edge,
    /// Farther than 90 % of held-out families, or a recipe outside the training ranges.
    Out,
}

impl Domain {
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Thresholds and interval half-widths calibrated on held-out families ([`train`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainCalibration {
    /// Distance to the nearest training graph above which a graph is `edge`, and `out`.
    pub edge_distance: f64,
    pub out_distance: f64,
    /// Per domain (`in`, `edge`, `out`): the 5 % and 95 % quantiles of the out-of-fold
    /// residuals (measured − predicted, logit scale), so `[lo, hi]` covers 90 %.
    pub residual_quantiles: [[f64; 2]; 3],
}

/// A measured graph of the training set, for the domain distance and the nearest neighbours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownGraph {
    /// LEMUR model name (`nn`).
    pub name: String,
    pub dataset: String,
    /// Best measured accuracy of any of its trials (fraction).
    pub best_accuracy: f64,
    pub trials: usize,
    /// Standardised [`GraphDescriptor::domain_vector`].
    vector: Vec<f32>,
}

/// The typical recipe and the ranges seen in training, per dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    pub rows: usize,
    pub graphs: usize,
    /// Medians of the numbers and the most frequent transform.
    pub typical: CompleteRecipe,
    /// Minimum and maximum of epoch, lr, momentum, batch, dropout.
    pub ranges: BTreeMap<String, [f64; 2]>,
}

/// The trained model with its calibration (serialised as the artifact).
#[derive(Clone, Serialize, Deserialize)]
pub struct RecipePredictor {
    pub format: String,
    pub features: FeatureSet,
    pub datasets: Vec<DatasetInfo>,
    booster: PerpetualBooster,
    graphs: Vec<KnownGraph>,
    /// Mean and standard deviation of each domain-vector dimension.
    scale: Vec<[f64; 2]>,
    pub calibration: DomainCalibration,
    /// The grouped cross-validation that calibrated it (see [`train::CvReport`]).
    pub evaluation: serde_json::Value,
}

/// A measured graph near a query.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NearestGraph {
    pub name: String,
    pub dataset: String,
    pub best_accuracy: f64,
    pub distance: f64,
}

/// One prediction of the recipe predictor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecipePrediction {
    /// Accuracy as a fraction, in (0, 1).
    pub accuracy: f64,
    /// 90 % interval (fraction).
    pub interval: [f64; 2],
    /// Width of the interval ÷ 3.29 (the standard deviation of a normal with that 90 % range).
    pub std: f64,
    pub domain: Domain,
    /// Distance to the nearest measured graph, relative to the `out` threshold (≤ 1 typical).
    pub ood_score: f64,
    pub nearest: Vec<NearestGraph>,
    pub warnings: Vec<String>,
}

/// The artifact's `format` field.
pub const FORMAT: &str = "archdb-recipe-predictor/1";

const LOGIT_CLIP: f64 = 1e-3;

pub fn logit(p: f64) -> f64 {
    let p = p.clamp(LOGIT_CLIP, 1.0 - LOGIT_CLIP);
    (p / (1.0 - p)).ln()
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Rows as the column-major buffer perpetual's `Matrix` reads, with their column count.
fn column_major(rows: &[Vec<f64>]) -> (Vec<f64>, usize) {
    let cols = rows.first().map_or(0, Vec::len);
    let mut data = vec![0.0; rows.len() * cols];
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            data[c * rows.len() + r] = *v;
        }
    }
    (data, cols)
}

/// Fits gradient-boosted trees on rows of one feature set (logit targets).
pub fn fit_booster(
    rows: &[Vec<f64>],
    targets: &[f64],
    budget: f32,
    seed: u64,
) -> Result<PerpetualBooster, PredictError> {
    let (data, cols) = column_major(rows);
    let mut booster = PerpetualBooster::default()
        .set_objective(Objective::SquaredLoss)
        .set_budget(budget)
        .set_seed(seed)
        .set_num_threads(Some(rayon::current_num_threads()));
    booster
        .fit(&Matrix::new(&data, rows.len(), cols), targets, None, None)
        .map_err(|e| PredictError::Config(format!("boosting failed: {e}")))?;
    Ok(booster)
}

/// Predictions of a booster for rows (logit scale).
pub fn booster_predict(booster: &PerpetualBooster, rows: &[Vec<f64>]) -> Vec<f64> {
    let (data, cols) = column_major(rows);
    booster.predict(&Matrix::new(&data, rows.len(), cols), false)
}

/// Standardises domain vectors: the scale fitted on `fit` rows.
fn fit_scale(vectors: &[Vec<f64>]) -> Vec<[f64; 2]> {
    let dims = vectors.first().map_or(0, Vec::len);
    (0..dims)
        .map(|d| {
            let n = vectors.len().max(1) as f64;
            let mean = vectors.iter().map(|v| v[d]).sum::<f64>() / n;
            let var = vectors.iter().map(|v| (v[d] - mean).powi(2)).sum::<f64>() / n;
            [mean, var.sqrt().max(1e-6)]
        })
        .collect()
}

fn scaled(vector: &[f64], scale: &[[f64; 2]]) -> Vec<f32> {
    vector
        .iter()
        .zip(scale)
        .map(|(v, [m, s])| ((v - m) / s) as f32)
        .collect()
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Nearest-neighbour search over standardised graph descriptors.
pub struct GraphSpace<'a> {
    graphs: &'a [KnownGraph],
    scale: &'a [[f64; 2]],
}

impl GraphSpace<'_> {
    /// The `k` nearest known graphs of `descriptor` among those measured on `dataset` (all
    /// datasets when `None`), nearest first.
    pub fn nearest(
        &self,
        descriptor: &GraphDescriptor,
        k: usize,
        dataset: Option<&str>,
    ) -> Vec<(usize, f64)> {
        let query = scaled(&descriptor.domain_vector(), self.scale);
        let mut all: Vec<(usize, f64)> = self
            .graphs
            .iter()
            .enumerate()
            .filter(|(_, g)| dataset.is_none_or(|d| g.dataset == d))
            .map(|(i, g)| (i, distance(&query, &g.vector)))
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1));
        all.truncate(k.max(1));
        all
    }
}

impl RecipePredictor {
    pub fn dataset(&self, name: &str) -> Option<usize> {
        self.datasets.iter().position(|d| d.name == name)
    }

    fn space(&self) -> GraphSpace<'_> {
        GraphSpace {
            graphs: &self.graphs,
            scale: &self.scale,
        }
    }

    /// Fills the missing fields of `recipe` with the dataset's typical values; returns the names
    /// filled and a warning per given value outside the training ranges (the typical values are
    /// medians, always inside, so a recipe is outside exactly when there is a warning).
    pub fn complete(
        &self,
        dataset: usize,
        recipe: &Recipe,
    ) -> (CompleteRecipe, Vec<String>, Vec<String>) {
        let info = &self.datasets[dataset];
        let typical = &info.typical;
        let mut defaulted = Vec::new();
        let mut warnings = Vec::new();
        let mut take = |name: &str, value: Option<f64>, default: f64| -> f64 {
            match value {
                Some(v) => {
                    if let Some([lo, hi]) = info.ranges.get(name)
                        && (v < *lo || v > *hi)
                    {
                        warnings.push(format!(
                            "{name} {v} is outside the range measured on {} ({lo}–{hi}): the \
                             prediction extrapolates and its domain is 'out'",
                            info.name
                        ));
                    }
                    v
                }
                None => {
                    defaulted.push(name.to_string());
                    default
                }
            }
        };
        let complete = CompleteRecipe {
            epoch: take("epoch", recipe.epoch, typical.epoch),
            lr: take("lr", recipe.lr, typical.lr),
            momentum: take("momentum", recipe.momentum, typical.momentum),
            batch: take("batch", recipe.batch, typical.batch),
            dropout: take("dropout", recipe.dropout, typical.dropout),
            transform: match &recipe.transform {
                Some(t) => t.clone(),
                None => {
                    defaulted.push("transform".into());
                    typical.transform.clone()
                }
            },
        };
        (complete, defaulted, warnings)
    }

    /// Predicts each graph under each (dataset, recipe) condition: `graphs × conditions`
    /// answers, graph-major. The descriptors and neighbour searches are computed once per graph.
    pub fn predict(
        &self,
        graphs: &[GraphDescriptor],
        conditions: &[(usize, CompleteRecipe, bool)],
        nearest: usize,
    ) -> Vec<RecipePrediction> {
        let space = self.space();
        // The domain is judged against every measured graph; the neighbours shown are those
        // measured on the dataset asked.
        let closest: Vec<f64> = graphs
            .iter()
            .map(|g| {
                space
                    .nearest(g, 1, None)
                    .first()
                    .map_or(f64::INFINITY, |n| n.1)
            })
            .collect();
        let mut neighbours: HashMap<(usize, usize), Vec<(usize, f64)>> = HashMap::new();
        let rows: Vec<Vec<f64>> = graphs
            .iter()
            .flat_map(|g| {
                conditions
                    .iter()
                    .map(|(d, recipe, _)| self.features.row(*d, recipe, g))
            })
            .collect();
        let raw = booster_predict(&self.booster, &rows);
        let cal = &self.calibration;
        let mut out = Vec::with_capacity(raw.len());
        for (g, &closest) in closest.iter().enumerate() {
            let by_graph = if closest > cal.out_distance {
                Domain::Out
            } else if closest > cal.edge_distance {
                Domain::Edge
            } else {
                Domain::In
            };
            for (c, (dataset, _, recipe_outside)) in conditions.iter().enumerate() {
                let near = neighbours.entry((g, *dataset)).or_insert_with(|| {
                    space.nearest(&graphs[g], nearest, Some(&self.datasets[*dataset].name))
                });
                let logit_value = raw[g * conditions.len() + c];
                let domain = if *recipe_outside {
                    Domain::Out
                } else {
                    by_graph
                };
                let [lo, hi] = cal.residual_quantiles[domain.index()];
                let interval = [sigmoid(logit_value + lo), sigmoid(logit_value + hi)];
                let mut warnings = Vec::new();
                if domain == Domain::Out {
                    warnings.push(
                        "out of domain: no measured architecture and recipe this far from the \
                         training data was predicted well in held-out evaluation; treat the \
                         interval, not the point, as the answer"
                            .to_string(),
                    );
                }
                out.push(RecipePrediction {
                    accuracy: sigmoid(logit_value),
                    interval,
                    std: (interval[1] - interval[0]) / 3.29,
                    domain,
                    ood_score: closest / cal.out_distance.max(1e-9),
                    nearest: near
                        .iter()
                        .take(nearest)
                        .map(|&(i, d)| NearestGraph {
                            name: self.graphs[i].name.clone(),
                            dataset: self.graphs[i].dataset.clone(),
                            best_accuracy: self.graphs[i].best_accuracy,
                            distance: d,
                        })
                        .collect(),
                    warnings,
                });
            }
        }
        out
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, PredictError> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        serde_json::to_writer(&mut gz, self)?;
        gz.flush()?;
        Ok(gz.finish()?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PredictError> {
        let predictor: Self = serde_json::from_reader(flate2::read::GzDecoder::new(bytes))?;
        if predictor.format != FORMAT {
            return Err(PredictError::Artifact(format!(
                "format {:?}, expected {FORMAT:?}",
                predictor.format
            )));
        }
        Ok(predictor)
    }
}

/// The recipe predictor shipped in `data/predictor/`, parsed on first use.
pub fn bundled() -> Option<std::sync::Arc<RecipePredictor>> {
    static BUNDLED: std::sync::OnceLock<Option<std::sync::Arc<RecipePredictor>>> =
        std::sync::OnceLock::new();
    BUNDLED
        .get_or_init(|| {
            const BYTES: &[u8] = include_bytes!("../../../data/predictor/lemur-recipe.json.gz");
            match RecipePredictor::from_bytes(BYTES) {
                Ok(p) => Some(std::sync::Arc::new(p)),
                Err(e) => {
                    tracing::error!("the bundled recipe predictor does not load: {e}");
                    None
                }
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_names_give_resolution_flip_and_kind() {
        let t = TransformInfo::parse("norm_32_flip");
        assert_eq!(
            t,
            TransformInfo {
                resolution: Some(32.0),
                flip: true,
                kind: TransformKind::Norm
            }
        );
        let t = TransformInfo::parse("echo");
        assert_eq!(
            t,
            TransformInfo {
                resolution: None,
                flip: false,
                kind: TransformKind::Echo
            }
        );
        let t = TransformInfo::parse("bf-v1-RandomCrop_Pad_RandomHorizontalFlip");
        assert_eq!(
            (t.resolution, t.flip, t.kind),
            (None, true, TransformKind::Other)
        );
        assert_eq!(TransformInfo::parse("complex_128").resolution, Some(128.0));
    }

    #[test]
    fn hyperparameters_parse_with_warnings_for_unknown_names() {
        let hp = serde_json::json!({"lr": 0.01, "batch": 64, "transform": "norm_32", "foo": 1, "momentum": "x"});
        let (recipe, warnings) = Recipe::from_hyperparameters(Some(5.0), hp.as_object().unwrap());
        assert_eq!(recipe.epoch, Some(5.0));
        assert_eq!(recipe.lr, Some(0.01));
        assert_eq!(recipe.batch, Some(64.0));
        assert_eq!(recipe.transform.as_deref(), Some("norm_32"));
        assert_eq!(recipe.momentum, None);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("'foo'")));
    }

    #[test]
    fn logit_round_trips_inside_the_clip() {
        for p in [0.01, 0.2, 0.5, 0.93] {
            assert!((sigmoid(logit(p)) - p).abs() < 1e-12);
        }
        assert!(sigmoid(logit(1.0)) < 1.0 && sigmoid(logit(0.0)) > 0.0);
    }
}
