//! Normalised-Laplacian spectra of computation graphs, the structural similarity GENNAPE's
//! contrastive loss weights its soft positives with. A dense symmetric eigen-solver
//! (Householder tridiagonalisation + implicit QL, eigenvalues only, ~4n³/3 flops: ~10 ms for an
//! NB201-sized 300-node CG) keeps archdb free of LAPACK; spectra are needed only for training.

/// Eigenvalues (ascending) of `L = D^-½ (D − A) D^-½` of the undirected simple graph with `n`
/// nodes and `edges` (direction, parallel edges and self loops ignored). Isolated nodes get
/// `L_ii = 0`, as networkx's `normalized_laplacian_matrix`.
pub fn normalized_laplacian_spectrum(n: usize, edges: &[[u32; 2]]) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let mut adjacency = vec![false; n * n];
    for &[a, b] in edges {
        let (a, b) = (a as usize, b as usize);
        if a != b && a < n && b < n {
            adjacency[a * n + b] = true;
            adjacency[b * n + a] = true;
        }
    }
    let degree: Vec<f64> = (0..n)
        .map(|i| adjacency[i * n..(i + 1) * n].iter().filter(|&&x| x).count() as f64)
        .collect();
    let inv_sqrt: Vec<f64> = degree
        .iter()
        .map(|&d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
        .collect();
    let mut matrix = vec![0.0; n * n];
    for i in 0..n {
        matrix[i * n + i] = if degree[i] > 0.0 { 1.0 } else { 0.0 };
        for j in 0..n {
            if adjacency[i * n + j] {
                matrix[i * n + j] = -inv_sqrt[i] * inv_sqrt[j];
            }
        }
    }
    let mut values = symmetric_eigenvalues(matrix, n);
    values.sort_by(f64::total_cmp);
    values
}

/// The `q` smallest eigenvalues, padded with 1 (the mean eigenvalue of a normalised Laplacian
/// without isolated nodes) when the graph has fewer than `q` nodes.
pub fn spectral_signature(spectrum: &[f64], q: usize) -> Vec<f32> {
    (0..q)
        .map(|i| spectrum.get(i).copied().unwrap_or(1.0) as f32)
        .collect()
}

/// Eigenvalues (unordered) of the symmetric `n × n` row-major matrix `a` (only its lower
/// triangle is read).
pub fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    assert_eq!(a.len(), n * n, "symmetric_eigenvalues: not n × n");
    let (mut d, mut e) = (vec![0.0; n], vec![0.0; n]);
    tridiagonalize(&mut a, n, &mut d, &mut e);
    tridiagonal_ql(&mut d, &mut e);
    d
}

/// Householder reduction to tridiagonal form (Numerical Recipes `tred2`, no eigenvectors):
/// `d` gets the diagonal, `e[i]` the sub-diagonal element between rows `i − 1` and `i`.
fn tridiagonalize(a: &mut [f64], n: usize, d: &mut [f64], e: &mut [f64]) {
    for i in (1..n).rev() {
        let l = i - 1;
        let mut h = 0.0;
        if l > 0 {
            let scale: f64 = a[i * n..i * n + l + 1].iter().map(|x| x.abs()).sum();
            if scale == 0.0 {
                e[i] = a[i * n + l];
            } else {
                for k in 0..=l {
                    a[i * n + k] /= scale;
                    h += a[i * n + k] * a[i * n + k];
                }
                let f = a[i * n + l];
                let g = if f >= 0.0 { -h.sqrt() } else { h.sqrt() };
                e[i] = scale * g;
                h -= f * g;
                a[i * n + l] = f - g;
                let mut f = 0.0;
                for j in 0..=l {
                    let mut g = 0.0;
                    for k in 0..=j {
                        g += a[j * n + k] * a[i * n + k];
                    }
                    for k in j + 1..=l {
                        g += a[k * n + j] * a[i * n + k];
                    }
                    e[j] = g / h;
                    f += e[j] * a[i * n + j];
                }
                let hh = f / (h + h);
                for j in 0..=l {
                    let f = a[i * n + j];
                    let g = e[j] - hh * f;
                    e[j] = g;
                    for k in 0..=j {
                        a[j * n + k] -= f * e[k] + g * a[i * n + k];
                    }
                }
            }
        } else {
            e[i] = a[i * n + l];
        }
        d[i] = h;
    }
    for i in 0..n {
        d[i] = a[i * n + i];
    }
}

/// Implicit QL with Wilkinson shifts on a symmetric tridiagonal matrix (Numerical Recipes
/// `tqli`, no eigenvectors). `d` becomes the eigenvalues.
fn tridiagonal_ql(d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    if n < 2 {
        return;
    }
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    for l in 0..n {
        let mut iterations = 0;
        loop {
            let mut m = l;
            while m < n - 1 {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            // Symmetric tridiagonal QL converges in a handful of steps per eigenvalue; this cap
            // only guards against NaN input.
            if iterations > 100 {
                break;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut deflated = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if deflated {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn assert_spectrum(got: &[f64], mut want: Vec<f64>) {
        want.sort_by(f64::total_cmp);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-10, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn path_cycle_complete_and_isolated() {
        // Path P_n: 1 − cos(πk/(n−1)).
        let n = 9;
        let path: Vec<[u32; 2]> = (0..n - 1).map(|i| [i as u32, i as u32 + 1]).collect();
        let want = (0..n).map(|k| 1.0 - (PI * k as f64 / (n - 1) as f64).cos());
        assert_spectrum(&normalized_laplacian_spectrum(n, &path), want.collect());
        // Cycle C_n (edges in both directions and duplicated: still a simple graph).
        let n = 12;
        let mut cycle: Vec<[u32; 2]> = (0..n).map(|i| [i as u32, ((i + 1) % n) as u32]).collect();
        cycle.extend(cycle.clone().iter().map(|&[a, b]| [b, a]));
        let want = (0..n).map(|k| 1.0 - (2.0 * PI * k as f64 / n as f64).cos());
        assert_spectrum(&normalized_laplacian_spectrum(n, &cycle), want.collect());
        // Complete K_5: 0 and 5/4 four times.
        let mut complete = Vec::new();
        for a in 0..5u32 {
            for b in a + 1..5 {
                complete.push([a, b]);
            }
        }
        assert_spectrum(
            &normalized_laplacian_spectrum(5, &complete),
            vec![0.0, 1.25, 1.25, 1.25, 1.25],
        );
        // An isolated node adds an eigenvalue 0.
        assert_spectrum(
            &normalized_laplacian_spectrum(3, &[[0, 1]]),
            vec![0.0, 0.0, 2.0],
        );
    }

    #[test]
    fn dense_symmetric_matrix() {
        // [[2,1,0],[1,2,1],[0,1,2]]: 2 − √2, 2, 2 + √2.
        let a = vec![2.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0];
        let mut got = symmetric_eigenvalues(a, 3);
        got.sort_by(f64::total_cmp);
        let s = 2f64.sqrt();
        assert_spectrum(&got, vec![2.0 - s, 2.0, 2.0 + s]);
    }

    #[test]
    fn signature_pads_small_graphs() {
        assert_eq!(spectral_signature(&[0.0, 2.0], 4), vec![0.0, 2.0, 1.0, 1.0]);
    }
}
