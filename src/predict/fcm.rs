//! Fuzzy c-means (Bezdek) on graph embeddings, GENNAPE's soft partition of the training family:
//! `U_ik = 1 / Σ_j (d_ik / d_ij)^{2/(m−1)}`, `v_k = Σ_i U_ik^m x_i / Σ_i U_ik^m`, alternated from
//! linfa's k-means++ centroids until memberships move less than the tolerance. After fitting the
//! centroids are frozen: new graphs only get memberships, which weight the per-cluster heads and
//! whose spread gives the out-of-distribution score.

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::KMeans;
use ndarray::{Array2, ArrayView2, Axis};

use super::PredictError;

/// Fitted fuzzy c-means centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct Fcm {
    /// `clusters × dims`.
    pub centroids: Array2<f64>,
    /// Fuzzifier m > 1 (2 = the usual choice; → 1 is hard k-means).
    pub fuzzifier: f64,
}

impl Fcm {
    /// Fits `clusters` centroids (fewer if there are fewer points) to the rows of `data`.
    pub fn fit(
        data: ArrayView2<f64>,
        clusters: usize,
        fuzzifier: f64,
        max_iterations: usize,
        tolerance: f64,
    ) -> Result<Self, PredictError> {
        if fuzzifier <= 1.0 {
            return Err(PredictError::Config(format!(
                "fuzzifier must be > 1, got {fuzzifier}"
            )));
        }
        let n = data.nrows();
        let clusters = clusters.min(n);
        if clusters == 0 {
            return Err(PredictError::Config(
                "fuzzy c-means needs at least one point and one cluster".into(),
            ));
        }
        let mut fcm = if clusters == 1 {
            Self {
                centroids: data.mean_axis(Axis(0)).unwrap().insert_axis(Axis(0)),
                fuzzifier,
            }
        } else {
            // linfa's default generator is a fixed-seed Xoshiro: the seeding is deterministic.
            let kmeans = KMeans::params(clusters)
                .n_runs(3)
                .fit(&DatasetBase::from(data.to_owned()))
                .map_err(|e| PredictError::Config(format!("k-means: {e}")))?;
            Self {
                centroids: kmeans.centroids().clone(),
                fuzzifier,
            }
        };
        let mut u = fcm.memberships(data);
        for _ in 0..max_iterations {
            let weights = u.mapv(|x| x.powf(fuzzifier));
            let totals = weights.sum_axis(Axis(0));
            let mut centroids = weights.t().dot(&data);
            for (mut row, &total) in centroids.rows_mut().into_iter().zip(&totals) {
                if total > 0.0 {
                    row /= total;
                }
            }
            // A cluster no point is near keeps its old centroid.
            for (k, &total) in totals.iter().enumerate() {
                if total <= 0.0 {
                    centroids.row_mut(k).assign(&fcm.centroids.row(k));
                }
            }
            fcm.centroids = centroids;
            let next = fcm.memberships(data);
            let change = (&next - &u).iter().fold(0.0f64, |m, d| m.max(d.abs()));
            u = next;
            if change <= tolerance {
                break;
            }
        }
        Ok(fcm)
    }

    pub fn clusters(&self) -> usize {
        self.centroids.nrows()
    }

    /// Euclidean distances of every row of `data` to every centroid, `points × clusters`.
    pub fn distances(&self, data: ArrayView2<f64>) -> Array2<f64> {
        Array2::from_shape_fn((data.nrows(), self.clusters()), |(i, k)| {
            data.row(i)
                .iter()
                .zip(self.centroids.row(k))
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt()
        })
    }

    /// Memberships from distances: rows sum to 1; a point on a centroid belongs to it only.
    pub fn memberships_from_distances(&self, distances: &Array2<f64>) -> Array2<f64> {
        let exponent = 2.0 / (self.fuzzifier - 1.0);
        let mut u = Array2::zeros(distances.raw_dim());
        for (d, mut row) in distances.rows().into_iter().zip(u.rows_mut()) {
            let nearest = d.iter().copied().fold(f64::INFINITY, f64::min);
            if nearest <= 1e-12 {
                let on: Vec<bool> = d.iter().map(|&x| x <= 1e-12).collect();
                let count = on.iter().filter(|&&b| b).count() as f64;
                for (r, hit) in row.iter_mut().zip(on) {
                    *r = if hit { 1.0 / count } else { 0.0 };
                }
            } else {
                // (nearest/d)^e ≤ 1 avoids overflow for far points.
                for (r, &x) in row.iter_mut().zip(d) {
                    *r = (nearest / x).powf(exponent);
                }
                let total = row.sum();
                row /= total;
            }
        }
        u
    }

    /// Memberships of the rows of `data`, `points × clusters`.
    pub fn memberships(&self, data: ArrayView2<f64>) -> Array2<f64> {
        self.memberships_from_distances(&self.distances(data))
    }
}

/// Entropy of each membership row divided by ln(clusters): 0 = inside one cluster, 1 = equally
/// far from all (0 when there is a single cluster).
pub fn normalized_entropy(memberships: &Array2<f64>) -> Vec<f64> {
    let clusters = memberships.ncols();
    if clusters < 2 {
        return vec![0.0; memberships.nrows()];
    }
    memberships
        .rows()
        .into_iter()
        .map(|row| {
            -row.iter()
                .filter(|&&u| u > 0.0)
                .map(|&u| u * u.ln())
                .sum::<f64>()
                / (clusters as f64).ln()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated blobs of 30 points (a deterministic jitter of ±0.5).
    fn blobs() -> (Array2<f64>, [[f64; 2]; 3]) {
        let centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let mut points = Vec::new();
        for c in centres {
            for i in 0..30 {
                let a = (i as f64 * 0.731).sin() * 0.5;
                let b = (i as f64 * 1.317).cos() * 0.5;
                points.extend([c[0] + a, c[1] + b]);
            }
        }
        (Array2::from_shape_vec((90, 2), points).unwrap(), centres)
    }

    #[test]
    fn converges_on_separable_blobs() {
        let (data, centres) = blobs();
        let fcm = Fcm::fit(data.view(), 3, 2.0, 300, 1e-9).unwrap();
        for c in centres {
            let nearest = fcm
                .centroids
                .rows()
                .into_iter()
                .map(|v| ((v[0] - c[0]).powi(2) + (v[1] - c[1]).powi(2)).sqrt())
                .fold(f64::INFINITY, f64::min);
            assert!(nearest < 0.2, "no centroid near {c:?}: {:?}", fcm.centroids);
        }
        let u = fcm.memberships(data.view());
        for row in u.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-12);
            assert!(row.iter().copied().fold(0.0, f64::max) > 0.95);
        }
        // The point equidistant from the three blobs is ambiguous: high entropy.
        let far = Array2::from_shape_vec((1, 2), vec![5.0, 5.0]).unwrap();
        let u_far = fcm.memberships(far.view());
        assert!((u_far.row(0).sum() - 1.0).abs() < 1e-12);
        assert!(normalized_entropy(&u_far)[0] > 0.9);
        assert!(normalized_entropy(&u)[0] < 0.2);
    }

    #[test]
    fn degenerate_cases() {
        let (data, _) = blobs();
        let one = Fcm::fit(data.view(), 1, 2.0, 10, 1e-9).unwrap();
        assert_eq!(one.clusters(), 1);
        assert!(one.memberships(data.view()).iter().all(|&u| u == 1.0));
        let few = Fcm::fit(data.slice(ndarray::s![..2, ..]), 5, 2.0, 10, 1e-9).unwrap();
        assert_eq!(few.clusters(), 2);
        assert!(Fcm::fit(data.view(), 3, 1.0, 10, 1e-9).is_err());
        // Exactly on a centroid.
        let on = few.centroids.slice(ndarray::s![..1, ..]).to_owned();
        assert_eq!(few.memberships(on.view()).row(0).to_vec(), vec![1.0, 0.0]);
    }
}
