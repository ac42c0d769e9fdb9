//! KDE-ECE (Zhang, Kailkhura & Han, ICML 2020, "Mix-n-Match"), top-label, order 1.
//!
//! Follows the reference computation used by the calibration benchmark's evaluation code
//! (Zhang's `ece_kde_binary` on top-label confidences, with KDEpy's `FFTKDE`):
//!
//! * `bw = std(conf of correct predictions) · (2N)^(-1/5)` (population std, N = all samples);
//! * each of the two samples (confidences of correct predictions, all confidences) is
//!   mirrored about the nearer boundary (`c < 0.5 → −c`, `c ≥ 0.5 → 2 − c`);
//! * densities on the grid `x_g = −0.6 + g · 2.2/16383`, g = 0..16383 (only the points in
//!   `[0, 1]` are needed), by linear binning onto the grid and convolution with the triweight kernel `35/32 (1 − u²)³ / h`, `h = 3·bw`
//!   (KDEpy scales the kernel to standard deviation `bw`), plus `f64::EPSILON` as KDEpy adds;
//! * both densities set to 0 at `x ≤ 0` and `x ≥ 1` and doubled;
//! * `acc(x) = min(accuracy · f_correct(x) / f_all(x), 1)` where `max(f_correct, f_all) > 1e-6`,
//!   else the previous integrand value is carried forward (as the reference does);
//! * `KDE-ECE = ∫ |x − acc(x)| f_all(x) dx / ∫ f_all(x) dx` over grid points in `[0, 1]`, trapezoid rule.
//!
//! The convolution is computed with an FFT like KDEpy's (SciPy `convolve`), so results agree
//! with the reference up to floating-point rounding.
//!
//! Undefined (`None`) when the bandwidth is 0 or not finite: no correct prediction, or all
//! correct predictions have the same confidence. (The reference code raises inside KDEpy
//! there and its `try/except` reports 0; we report `None`, serialised as `null`.)

const GRID_POINTS: usize = 1 << 14;
const GRID_MIN: f64 = -0.6;
const GRID_MAX: f64 = 1.6;

/// KDE-ECE of top-label confidences `all` (every sample) and `correct` (the correctly
/// predicted samples' confidences, a sub-multiset of `all`).
pub fn kde_ece(all: &[f64], correct: &[f64]) -> Option<f64> {
    let n = all.len();
    if n == 0 || correct.is_empty() {
        return None;
    }
    let mean = correct.iter().sum::<f64>() / correct.len() as f64;
    let var = correct
        .iter()
        .map(|&c| (c - mean) * (c - mean))
        .sum::<f64>()
        / correct.len() as f64;
    let bw = var.sqrt() * ((2 * n) as f64).powf(-0.2);
    if !(bw > 0.0 && bw.is_finite()) {
        return None;
    }

    let div = (GRID_POINTS - 1) as f64;
    let dx = (GRID_MAX - GRID_MIN) / div;
    let x = |g: usize| {
        if g == GRID_POINTS - 1 {
            GRID_MAX
        } else {
            g as f64 * dx + GRID_MIN
        }
    };

    let bin_correct = linear_binning(correct, dx);
    let bin_all = linear_binning(all, dx);

    // kernel weights at offsets t·dx, |t| <= L (KDEpy: L = min(floor(real_bw / dx), intervals + 1))
    let h = 3.0 * bw;
    let l = ((h / dx).floor() as usize).min(GRID_POINTS);
    let kernel: Vec<f64> = (0..=l)
        .map(|t| {
            let u = t as f64 * dx / h;
            let u2 = u * u;
            if u2 < 1.0 {
                let w = 1.0 - u2;
                w * w * w * (105.0 / 48.0) / (h * 2.0)
            } else {
                0.0
            }
        })
        .collect();

    // grid points in [0, 1] (the integration range; the densities are zeroed elsewhere)
    let first = (0..GRID_POINTS)
        .find(|&g| x(g) >= 0.0)
        .unwrap_or(GRID_POINTS);
    let mut idx: Vec<usize> = Vec::new();
    for g in first..GRID_POINTS {
        let xg = x(g);
        if xg > 1.0 {
            break;
        }
        idx.push(g);
    }
    if idx.len() < 2 {
        return None;
    }
    // only these outputs are needed, so only grid cells within L of them enter the convolution
    let lo = idx[0].saturating_sub(l);
    let hi = (idx[idx.len() - 1] + l + 1).min(GRID_POINTS);
    let (dens_correct, dens_all) = convolve_pair(&bin_correct[lo..hi], &bin_all[lo..hi], &kernel);

    let perc = correct.len() as f64 / n as f64;
    let mut integral_prev = 0.0;
    let mut num = 0.0; // trapezoid of the integrand
    let mut den = 0.0; // trapezoid of f_all
    let mut prev: Option<(f64, f64, f64)> = None; // (x, integrand, f_all)
    for &g in &idx {
        let xg = x(g);
        let (mut f1, mut f2) = if xg <= 0.0 || xg >= 1.0 {
            (0.0, 0.0)
        } else {
            (
                dens_correct[g - lo] + f64::EPSILON,
                dens_all[g - lo] + f64::EPSILON,
            )
        };
        f1 *= 2.0;
        f2 *= 2.0;
        let integrand = if f1.max(f2) > 1e-6 {
            let acc = (perc * f1 / f2).min(1.0);
            if acc.is_nan() {
                0.0
            } else {
                (xg - acc).abs() * f2
            }
        } else {
            integral_prev
        };
        integral_prev = integrand;
        if let Some((xp, ip, fp)) = prev {
            let w = xg - xp;
            num += w * (ip + integrand) / 2.0;
            den += w * (fp + f2) / 2.0;
        }
        prev = Some((xg, integrand, f2));
    }
    let out = num / den;
    out.is_finite().then_some(out)
}

/// Linear binning (KDEpy `linbin`) of the mirrored sample onto the grid, weights 1/M.
fn linear_binning(data: &[f64], dx: f64) -> Vec<f64> {
    let mut out = vec![0.0; GRID_POINTS + 1];
    let m = 2 * data.len();
    let w = 1.0 / m as f64;
    let mut put = |v: f64| {
        let t = (v - GRID_MIN) / dx;
        let i = t.floor();
        let frac = t - i;
        let i = i as usize;
        let fw = frac * w;
        out[i + 1] += fw;
        out[i] += w - fw;
    };
    for &c in data {
        put(c);
        put(if c < 0.5 {
            2.0 * 0.0 - c
        } else {
            2.0 * 1.0 - c
        });
    }
    out.truncate(GRID_POINTS);
    out
}

/// `(a ∗ K)[g]` and `(b ∗ K)[g]` for every index g of `a` and `b` (equal lengths), where
/// `(x ∗ K)[g] = Σ_{|t| ≤ L} x[g + t] K(t)` with the symmetric kernel `K(t) = kernel[|t|]` and
/// zero padding outside (SciPy `convolve(x, K, mode="same")`, as KDEpy's `FFTKDE` does).
///
/// Both real sequences are packed into one complex sequence `a + i b`; because the kernel is
/// real and even its DFT is real, so one forward transform, one kernel transform and one
/// inverse transform of a power-of-two size ≥ len + L give both convolutions without
/// wrap-around.
fn convolve_pair(a: &[f64], b: &[f64], kernel: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let len = a.len();
    let l = kernel.len() - 1;
    let fft = Fft::cached((len + l).next_power_of_two().trailing_zeros().max(1));
    let m = fft.len();
    let mut re = vec![0.0; m];
    let mut im = vec![0.0; m];
    re[..len].copy_from_slice(a);
    im[..len].copy_from_slice(b);
    let mut kre = vec![0.0; m];
    let mut kim = vec![0.0; m];
    kre[0] = kernel[0];
    for t in 1..=l.min(m / 2) {
        kre[t] = kernel[t];
        kre[m - t] = kernel[t];
    }
    fft.transform(&mut re, &mut im, false);
    fft.transform(&mut kre, &mut kim, false);
    for i in 0..m {
        // the kernel's spectrum is real up to rounding
        let s = kre[i];
        re[i] *= s;
        im[i] *= s;
    }
    fft.transform(&mut re, &mut im, true);
    let scale = 1.0 / m as f64;
    re.truncate(len);
    im.truncate(len);
    for v in re.iter_mut().chain(im.iter_mut()) {
        *v *= scale;
    }
    (re, im)
}

/// Iterative radix-2 complex FFT of a fixed size with precomputed twiddles.
struct Fft {
    n: usize,
    /// Twiddles of every stage laid out contiguously: stage with half-size `h` uses
    /// `tw_re/tw_im[h - 1 .. 2h - 1]` = `exp(-2πi j / 2h)`, j = 0..h.
    tw_re: Vec<f64>,
    tw_im: Vec<f64>,
    rev: Vec<u32>,
}

impl Fft {
    /// The transform of size `2^log2` (built once per size; sizes up to 2^15 = 32768 ≥
    /// GRID_POINTS + max L occur).
    fn cached(log2: u32) -> &'static Fft {
        static FFTS: [std::sync::OnceLock<Fft>; 17] = [const { std::sync::OnceLock::new() }; 17];
        FFTS[log2 as usize].get_or_init(|| Fft::new(log2))
    }

    fn new(log2: u32) -> Self {
        let n = 1usize << log2;
        let mut tw_re = Vec::with_capacity(n);
        let mut tw_im = Vec::with_capacity(n);
        let mut h = 1;
        while h < n {
            for j in 0..h {
                let angle = -std::f64::consts::PI * j as f64 / h as f64;
                tw_re.push(angle.cos());
                tw_im.push(angle.sin());
            }
            h *= 2;
        }
        let rev = (0..n as u32)
            .map(|i| i.reverse_bits() >> (32 - log2))
            .collect();
        Self {
            n,
            tw_re,
            tw_im,
            rev,
        }
    }

    fn len(&self) -> usize {
        self.n
    }

    /// In-place DFT (`inverse`: conjugate twiddles, no 1/n scaling).
    fn transform(&self, re: &mut [f64], im: &mut [f64], inverse: bool) {
        let n = self.n;
        assert!(re.len() == n && im.len() == n);
        for i in 0..n {
            let j = self.rev[i] as usize;
            if i < j {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let sign = if inverse { -1.0 } else { 1.0 };
        let mut h = 1;
        while h < n {
            let wr = &self.tw_re[h - 1..2 * h - 1];
            let wi = &self.tw_im[h - 1..2 * h - 1];
            for (block_re, block_im) in re.chunks_exact_mut(2 * h).zip(im.chunks_exact_mut(2 * h)) {
                let (pr, qr) = block_re.split_at_mut(h);
                let (pi, qi) = block_im.split_at_mut(h);
                for j in 0..h {
                    let (cr, ci) = (wr[j], sign * wi[j]);
                    let (xr, xi) = (qr[j], qi[j]);
                    let tr = xr * cr - xi * ci;
                    let ti = xr * ci + xi * cr;
                    qr[j] = pr[j] - tr;
                    qi[j] = pi[j] - ti;
                    pr[j] += tr;
                    pi[j] += ti;
                }
            }
            h *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_convolution_matches_direct_sum() {
        let a: Vec<f64> = (0..GRID_POINTS)
            .map(|i| ((i * 7919) % 1000) as f64 / 1e3)
            .collect();
        let b: Vec<f64> = (0..GRID_POINTS)
            .map(|i| ((i * 104_729) % 997) as f64 / 1e3)
            .collect();
        for l in [0usize, 1, 37, 700, GRID_POINTS] {
            let kernel: Vec<f64> = (0..=l).map(|t| 1.0 / (1.0 + t as f64)).collect();
            let (ca, cb) = convolve_pair(&a, &b, &kernel);
            for g in [0, 1, 500, 8000, GRID_POINTS - 2, GRID_POINTS - 1] {
                let (mut da, mut db) = (0.0, 0.0);
                for t in -(l as i64)..=(l as i64) {
                    let j = g as i64 + t;
                    if (0..GRID_POINTS as i64).contains(&j) {
                        da += a[j as usize] * kernel[t.unsigned_abs() as usize];
                        db += b[j as usize] * kernel[t.unsigned_abs() as usize];
                    }
                }
                assert!((ca[g] - da).abs() <= 1e-9 * (1.0 + da.abs()), "l={l} g={g}");
                assert!((cb[g] - db).abs() <= 1e-9 * (1.0 + db.abs()), "l={l} g={g}");
            }
        }
    }

    #[test]
    fn undefined_without_spread_among_correct() {
        assert_eq!(kde_ece(&[0.9, 0.8], &[]), None);
        assert_eq!(kde_ece(&[0.9, 0.9, 0.6], &[0.9, 0.9]), None);
    }

    #[test]
    fn small_for_calibrated_large_for_overconfident() {
        // deterministic pseudo-random confidences; correct iff u < conf (calibrated)
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut u = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = 20_000;
        let conf: Vec<f64> = (0..n).map(|_| 0.3 + 0.7 * u()).collect();
        let calibrated: Vec<f64> = conf.iter().copied().filter(|&c| u() < c).collect();
        let over: Vec<f64> = conf.iter().copied().filter(|&c| u() < c - 0.2).collect();
        let a = kde_ece(&conf, &calibrated).unwrap();
        let b = kde_ece(&conf, &over).unwrap();
        assert!(a < 0.03, "{a}");
        assert!((b - 0.2).abs() < 0.05, "{b}");
    }
}
