//! What a serving process holds: the active predictor of every target, loaded from the database
//! with its index of measured architectures, and swapped atomically when another predictor is
//! activated (PostgreSQL NOTIFY on [`CHANNEL`]). A request takes one snapshot and uses it to the
//! end, so a swap never fails or mixes predictors within a request.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::db::predictors::{self, CHANNEL, IndexRow, Target};
use crate::predict::recipe::{self, DescriptorCache, RecipePredictor};
use crate::predict::{Backend, Predictor};

/// Fewest measured architectures whose residuals make an interval.
pub const MIN_RESIDUALS: usize = 30;

/// A loaded predictor and its index.
pub struct Loaded {
    pub id: i64,
    pub target: Target,
    pub predictor: Predictor,
    pub index: NearestIndex,
}

impl Loaded {
    /// Loads predictor `id` (artifact and index) from the database.
    pub async fn load(pool: &PgPool, id: i64, target: Target) -> anyhow::Result<Self> {
        let bytes = predictors::artifact(pool, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("predictor {id} does not exist"))?;
        let predictor =
            tokio::task::spawn_blocking(move || Predictor::from_bytes(&bytes, Backend::Cpu))
                .await??;
        let index = NearestIndex::new(predictors::index(pool, id).await?);
        Ok(Self {
            id,
            target,
            predictor,
            index,
        })
    }
}

/// A measured architecture near a query, by encoder embedding.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Neighbour {
    pub architecture_id: i64,
    /// Its measured value of the predictor's target.
    pub measured_accuracy: f64,
    /// Euclidean distance between the embeddings.
    pub distance: f64,
}

/// Embeddings and cached predictions of the measured architectures of a predictor's target.
pub struct NearestIndex {
    rows: Vec<IndexRow>,
    by_id: HashMap<i64, usize>,
    /// Row-major embeddings, `rows × dim`.
    embeddings: Vec<f32>,
    dim: usize,
    /// 5 % and 95 % quantiles of `measured − predicted` over the indexed architectures (most of
    /// them held out of training): the 90 % interval of an in-domain prediction. `None` below
    /// [`MIN_RESIDUALS`] measured architectures (the interval then comes from the ensemble).
    pub residual_quantiles: Option<[f64; 2]>,
    /// Upper end of the target's range: 1 when every measured value is a fraction, else 100.
    pub upper_bound: f64,
    /// Architectures deleted since the index was loaded: never answered or named again.
    deleted: RwLock<HashSet<i64>>,
}

impl NearestIndex {
    pub fn new(rows: Vec<IndexRow>) -> Self {
        let dim = rows.first().map_or(0, |r| r.embedding.len());
        let embeddings = rows
            .iter()
            .flat_map(|r| r.embedding.iter().copied())
            .collect();
        let by_id = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.architecture_id, i))
            .collect();
        let mut residuals: Vec<f64> = rows.iter().map(|r| r.measured - r.accuracy).collect();
        residuals.sort_by(f64::total_cmp);
        let at = |q: f64| {
            residuals
                .get(((residuals.len().saturating_sub(1)) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let upper_bound = if rows.iter().all(|r| r.measured <= 1.0) && !rows.is_empty() {
            1.0
        } else {
            100.0
        };
        Self {
            residual_quantiles: (rows.len() >= MIN_RESIDUALS).then(|| [at(0.05), at(0.95)]),
            upper_bound,
            deleted: RwLock::default(),
            rows,
            by_id,
            embeddings,
            dim,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The cached row of a measured architecture.
    pub fn get(&self, architecture_id: i64) -> Option<&IndexRow> {
        if self.is_deleted(architecture_id) {
            return None;
        }
        self.by_id.get(&architecture_id).map(|&i| &self.rows[i])
    }

    fn is_deleted(&self, architecture_id: i64) -> bool {
        let deleted = self.deleted.read().expect("deleted lock");
        !deleted.is_empty() && deleted.contains(&architecture_id)
    }

    /// Drops a deleted architecture from the answers.
    pub fn forget(&self, architecture_id: i64) {
        if self.by_id.contains_key(&architecture_id) {
            self.deleted
                .write()
                .expect("deleted lock")
                .insert(architecture_id);
        }
    }

    /// The `k` nearest measured architectures to `embedding` (ties by id), leaving out `skip`.
    pub fn nearest(&self, embedding: &[f32], k: usize, skip: Option<i64>) -> Vec<Neighbour> {
        if k == 0 || embedding.len() != self.dim || self.dim == 0 {
            return Vec::new();
        }
        // Max-heap of the best k by (squared distance, id).
        let mut heap: BinaryHeap<(OrdF32, i64)> = BinaryHeap::with_capacity(k + 1);
        let deleted = self.deleted.read().expect("deleted lock");
        for (row, stored) in self.rows.iter().zip(self.embeddings.chunks_exact(self.dim)) {
            if Some(row.architecture_id) == skip || deleted.contains(&row.architecture_id) {
                continue;
            }
            let d = squared_distance(stored, embedding);
            let item = (OrdF32(d), row.architecture_id);
            if heap.len() < k {
                heap.push(item);
            } else if item < *heap.peek().expect("k > 0") {
                heap.pop();
                heap.push(item);
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|(d, id)| Neighbour {
                architecture_id: id,
                measured_accuracy: self.rows[self.by_id[&id]].measured,
                distance: (d.0 as f64).sqrt(),
            })
            .collect()
    }
}

/// Squared Euclidean distance with 8 independent accumulators, so that the compiler can keep
/// them in one SIMD register (a single running sum would force sequential adds).
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            let d = x[l] - y[l];
            lanes[l] += d * d;
        }
    }
    let tail: f32 = a_rest
        .iter()
        .zip(b_rest)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// `f32` ordered by `total_cmp` (distances are never NaN for finite embeddings).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF32(f32);

impl Eq for OrdF32 {}

impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The recipe predictor a serving process answers LEMUR targets with.
#[derive(Clone)]
pub struct ServedRecipe {
    /// Its registry id; `None` for the one compiled into the binary.
    pub id: Option<i64>,
    pub predictor: Arc<RecipePredictor>,
}

/// The active predictors of a serving process, by target, the active recipe predictor, and the
/// recipe predictor's descriptors of the stored architectures it was asked about.
#[derive(Default)]
pub struct Registry {
    active: RwLock<Arc<Vec<Arc<Loaded>>>>,
    /// The active registered recipe predictor; `None` serves the bundled one.
    recipe: RwLock<Option<ServedRecipe>>,
    /// Reloads run one at a time, so one that read the database earlier can never swap in its
    /// older view after one that read it later (an activation's own reload racing the NOTIFY
    /// listener's).
    reloading: tokio::sync::Mutex<()>,
    descriptors: DescriptorCache,
}

impl Registry {
    /// The active predictors now (oldest id first); unaffected by later swaps.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Loaded>>> {
        self.active.read().expect("registry lock").clone()
    }

    /// The recipe predictor to answer with now: the active registered one, else the bundled
    /// one (absent only when the bundled artifact fails to load).
    pub fn recipe(&self) -> Option<ServedRecipe> {
        let registered = self.recipe.read().expect("registry lock").clone();
        registered.or_else(|| {
            recipe::bundled().map(|predictor| ServedRecipe {
                id: None,
                predictor,
            })
        })
    }

    /// Loads the active predictors the database names, reusing those already loaded, and swaps
    /// them in at once.
    pub async fn reload(&self, pool: &PgPool) -> anyhow::Result<()> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.snapshot();
        let mut next = Vec::new();
        for (id, target) in predictors::active(pool).await? {
            match current.iter().find(|l| l.id == id) {
                Some(loaded) => next.push(loaded.clone()),
                None => next.push(Arc::new(Loaded::load(pool, id, target).await?)),
            }
        }
        let served = self.recipe.read().expect("registry lock").clone();
        let recipe = match predictors::active_recipe(pool).await? {
            None => None,
            Some(id) if served.as_ref().is_some_and(|r| r.id == Some(id)) => served,
            Some(id) => {
                let bytes = predictors::artifact(pool, id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("predictor {id} does not exist"))?;
                let predictor =
                    tokio::task::spawn_blocking(move || RecipePredictor::from_bytes(&bytes))
                        .await??;
                Some(ServedRecipe {
                    id: Some(id),
                    predictor: Arc::new(predictor),
                })
            }
        };
        let ids: Vec<i64> = next.iter().map(|l| l.id).collect();
        let recipe_id = recipe.as_ref().and_then(|r| r.id);
        *self.active.write().expect("registry lock") = Arc::new(next);
        *self.recipe.write().expect("registry lock") = recipe;
        // Loading an index decodes every stored embedding; what it freed goes back to the OS.
        crate::memory::release_freed_memory();
        tracing::info!(?ids, ?recipe_id, "active predictors loaded");
        Ok(())
    }

    /// Graph descriptors of stored architectures, for the recipe predictor.
    pub fn descriptors(&self) -> &DescriptorCache {
        &self.descriptors
    }

    /// Drops a deleted architecture from every loaded index and the descriptor cache.
    pub fn forget(&self, architecture_id: i64) {
        for loaded in self.snapshot().iter() {
            loaded.index.forget(architecture_id);
        }
        self.descriptors.forget(architecture_id);
    }

    /// Reloads whenever a predictor is activated (and forgets deleted architectures), for as long as the process runs: LISTEN on
    /// [`CHANNEL`], reconnecting (and reloading, in case a NOTIFY was missed) after errors.
    pub fn watch(self: &Arc<Self>, pool: PgPool) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = registry.listen(&pool).await {
                    tracing::warn!("predictor listener: {e:#}; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }

    async fn listen(&self, pool: &PgPool) -> anyhow::Result<()> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        // Anything activated before LISTEN took effect.
        self.reload(pool).await?;
        loop {
            let notification = listener.recv().await?;
            match notification
                .payload()
                .strip_prefix(crate::db::architectures::DELETED_PREFIX)
                .map(str::parse::<i64>)
            {
                Some(Ok(id)) => self.forget(id),
                _ => self.reload(pool).await?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, embedding: Vec<f32>) -> IndexRow {
        IndexRow {
            architecture_id: id,
            measured: id as f64,
            accuracy: 0.0,
            std: 0.0,
            ood_score: 0.0,
            membership_entropy: 0.0,
            embedding,
        }
    }

    #[test]
    fn nearest_by_euclidean_distance() {
        let index = NearestIndex::new(vec![
            row(1, vec![0.0, 0.0]),
            row(2, vec![3.0, 4.0]),
            row(3, vec![1.0, 0.0]),
            row(4, vec![-1.0, 0.0]),
        ]);
        let near = index.nearest(&[0.9, 0.0], 3, None);
        let ids: Vec<i64> = near.iter().map(|n| n.architecture_id).collect();
        assert_eq!(ids, [3, 1, 4]);
        assert!((near[0].distance - 0.1).abs() < 1e-6);
        assert_eq!(near[1].measured_accuracy, 1.0);
        // Skipping the query's own architecture; k larger than the index.
        let ids: Vec<i64> = index
            .nearest(&[0.0, 0.0], 10, Some(1))
            .iter()
            .map(|n| n.architecture_id)
            .collect();
        assert_eq!(ids, [3, 4, 2]);
        assert!(index.nearest(&[0.0], 2, None).is_empty(), "wrong width");
        assert_eq!(index.get(2).unwrap().embedding, [3.0, 4.0]);
    }

    #[test]
    fn squared_distance_handles_lanes_and_tails() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..19).map(|i| (i * 2) as f32).collect();
        let expected: f32 = (0..19).map(|i| (i * i) as f32).sum();
        assert_eq!(squared_distance(&a, &b), expected);
        assert_eq!(squared_distance(&[], &[]), 0.0);
    }
}
