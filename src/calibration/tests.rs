//! Cross-module tests: documented test vectors, end-to-end behaviour, properties, and agreement
//! with the reference implementations (`tests/fixtures/calibration/reference.json`, written by
//! `tests/fixtures/calibration/make_reference.py`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use super::*;

fn no_ts(rule: BinRule, bins: &[usize]) -> CalibrationConfig {
    CalibrationConfig {
        bin_counts: bins.to_vec(),
        bin_rule: rule,
        temperature_scaling: None,
        ..CalibrationConfig::default()
    }
}

fn probs(rows: &[&[f64]], labels: &[usize]) -> Predictions {
    let rows: Vec<Vec<f64>> = rows.iter().map(|r| r.to_vec()).collect();
    Predictions::from_probability_rows(&rows, labels, RowSumPolicy::default()).unwrap()
}

// ------------------------------------------------------------------ documented vectors

/// torchmetrics `multiclass_calibration_error` docstring (methods.md §4.4).
#[test]
fn torchmetrics_multiclass_docstring() {
    let p = probs(
        &[
            &[0.25, 0.20, 0.55],
            &[0.55, 0.05, 0.40],
            &[0.10, 0.30, 0.60],
            &[0.90, 0.05, 0.05],
        ],
        &[0, 1, 2, 0],
    );
    let r = evaluate(&p, &no_ts(BinRule::LeftClosed, &[3])).unwrap();
    assert!((r.pre.ece[&3] - 0.2).abs() < 1e-12, "{:?}", r.pre.ece);
    assert!((r.pre.rmsce[&3] - 0.2082).abs() < 5e-5, "{:?}", r.pre.rmsce);
    assert!((r.pre.mce[&3] - 0.2333).abs() < 5e-5, "{:?}", r.pre.mce);
    assert_eq!(r.pre.accuracy, 0.5);
}

/// methods.md §4.4 boundary vectors through the full pipeline (K = 2 rows [c, 1 − c]).
#[test]
fn boundary_vectors_under_each_rule() {
    // conf [0.5, 0.5, 0.9], correct [1, 1, 0], B = 2
    let p = probs(&[&[0.5, 0.5], &[0.5, 0.5], &[0.9, 0.1]], &[0, 0, 1]);
    let expect = [
        (BinRule::LeftClosed, 0.1 / 3.0, 0.1 / 3.0),
        (BinRule::NumpyHistogram, 0.1 / 3.0, 0.1 / 3.0),
        (BinRule::RightClosed, 1.9 / 3.0, 0.9),
    ];
    for (rule, ece, mce) in expect {
        let r = evaluate(&p, &no_ts(rule, &[2])).unwrap();
        assert!(
            (r.pre.ece[&2] - ece).abs() < 1e-12,
            "{rule:?} {:?}",
            r.pre.ece
        );
        assert!(
            (r.pre.mce[&2] - mce).abs() < 1e-12,
            "{rule:?} {:?}",
            r.pre.mce
        );
    }
    // conf [1.0, 0.95], correct [1, 1], B = 10
    let p = probs(&[&[1.0, 0.0], &[0.95, 0.05]], &[0, 0]);
    for rule in [
        BinRule::RightClosed,
        BinRule::LeftClosed,
        BinRule::NumpyHistogram,
    ] {
        let r = evaluate(&p, &no_ts(rule, &[10])).unwrap();
        assert!((r.pre.ece[&10] - 0.025).abs() < 1e-12, "{rule:?}");
        let mce = if rule == BinRule::LeftClosed {
            0.05
        } else {
            0.025
        };
        assert!((r.pre.mce[&10] - mce).abs() < 1e-12, "{rule:?}");
    }
}

// ------------------------------------------------------------------ report shape

#[test]
fn report_serialises_with_numeric_bin_order() {
    let p = probs(
        &[&[0.7, 0.3], &[0.2, 0.8], &[0.6, 0.4], &[0.9, 0.1]],
        &[0, 1, 1, 0],
    );
    let r = evaluate(&p, &no_ts(BinRule::RightClosed, &[100, 5, 15, 10, 5])).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    let ece = &json[json.find("\"ece\":{").unwrap()..];
    let (i5, i10, i15, i100) = (
        ece.find("\"5\"").unwrap(),
        ece.find("\"10\"").unwrap(),
        ece.find("\"15\"").unwrap(),
        ece.find("\"100\"").unwrap(),
    );
    assert!(i5 < i10 && i10 < i15 && i15 < i100, "{json}");
    let v: Value = serde_json::from_str(&json).unwrap();
    let obj = v.as_object().unwrap();
    assert!(obj.contains_key("pre") && obj.contains_key("reliability"));
    assert!(!obj.contains_key("post") && !obj.contains_key("temperature"));
    let pre = v["pre"].as_object().unwrap();
    for key in [
        "ece", "ece_em", "cwce", "cwce_em", "mce", "rmsce", "ksce", "kdece", "mmce", "nll",
        "brier", "accuracy",
    ] {
        assert!(pre.contains_key(key), "missing {key}");
    }
    assert_eq!(pre["ece"].as_object().unwrap().len(), 4);
    // round trip (serde_json's default float parser may be 1 ulp off)
    let back: CalibrationReport = serde_json::from_str(&json).unwrap();
    assert_close(&serde_json::to_value(&back).unwrap(), &v);

    let with_ts = evaluate(&p, &CalibrationConfig::default()).unwrap();
    let v: Value = serde_json::to_value(&with_ts).unwrap();
    assert!(v["temperature"].is_number() && v["post"]["ece"]["500"].is_number());
    assert!(v["reliability"]["post"].is_array());
    assert_eq!(v["reliability"]["pre"].as_array().unwrap().len(), 15);
}

fn assert_close(a: &Value, b: &Value) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-15 * x.abs().max(1.0), "{x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).for_each(|(x, y)| assert_close(x, y));
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
            x.values()
                .zip(y.values())
                .for_each(|(x, y)| assert_close(x, y));
        }
        _ => assert_eq!(a, b),
    }
}

#[test]
fn config_errors_are_typed() {
    let p = probs(&[&[0.7, 0.3]], &[0]);
    let bad = |c: CalibrationConfig| evaluate(&p, &c).unwrap_err();
    assert_eq!(
        bad(no_ts(BinRule::RightClosed, &[10, 0])),
        CalibrationError::InvalidBinCount(0)
    );
    assert_eq!(
        bad(no_ts(BinRule::RightClosed, &[10, MAX_BIN_COUNT + 1])),
        CalibrationError::InvalidBinCount(MAX_BIN_COUNT + 1)
    );
    assert!(matches!(
        bad(no_ts(BinRule::RightClosed, &[])),
        CalibrationError::InvalidConfig(_)
    ));
    let mut c = CalibrationConfig::default();
    c.temperature_scaling.as_mut().unwrap().calibration_fraction = 0.0;
    assert!(matches!(bad(c), CalibrationError::InvalidConfig(_)));
    let c = CalibrationConfig {
        mmce_kernel_width: -1.0,
        ..CalibrationConfig::default()
    };
    assert!(matches!(bad(c), CalibrationError::InvalidConfig(_)));
}

#[test]
fn degenerate_inputs_are_handled() {
    // one sample, one class
    let one = Predictions::from_probabilities(vec![1.0], 1, vec![0], RowSumPolicy::Reject).unwrap();
    let r = evaluate(&one, &CalibrationConfig::default()).unwrap();
    assert_eq!(r.temperature, Some(1.0));
    assert_eq!(r.pre.accuracy, 1.0);
    assert_eq!(r.pre.ece[&15], 0.0);
    assert_eq!(r.pre.kdece, None);
    // one sample, several classes, wrong prediction
    let p = probs(&[&[0.2, 0.5, 0.3]], &[0]);
    let r = evaluate(&p, &CalibrationConfig::default()).unwrap();
    assert_eq!(r.pre.accuracy, 0.0);
    assert!((r.pre.ece[&5] - 0.5).abs() < 1e-15);
    // constant confidences, everything wrong: KDE-ECE undefined, the rest finite
    let rows: Vec<Vec<f64>> = (0..50).map(|_| vec![0.6, 0.4]).collect();
    let p = Predictions::from_probability_rows(&rows, &[1; 50], RowSumPolicy::Reject).unwrap();
    let r = evaluate(&p, &CalibrationConfig::default()).unwrap();
    assert_eq!(r.pre.kdece, None);
    assert!((r.pre.ece[&10] - 0.6).abs() < 1e-15 && (r.pre.ksce - 0.6).abs() < 1e-15);
    assert!(r.post.unwrap().nll <= r.pre.nll + 1e-12);
    // zero probability on the true class: NLL stays finite (clipped at f64::EPSILON)
    let p = probs(&[&[1.0, 0.0], &[0.5, 0.5]], &[1, 0]);
    let r = evaluate(&p, &no_ts(BinRule::RightClosed, &[10])).unwrap();
    assert!((r.pre.nll - (-(f64::EPSILON.ln()) + 2f64.ln()) / 2.0).abs() < 1e-12);
    // SortedScores validation
    assert_eq!(
        SortedScores::new(&[0.5, 1.5], &[true, false]).unwrap_err(),
        CalibrationError::ScoreOutOfRange { row: 1, value: 1.5 }
    );
}

// ------------------------------------------------------------------ temperature scaling end to end

fn overconfident_logits(n: usize, k: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
    let mut rng = SplitMix64::new(seed);
    let mut u = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut z = Vec::with_capacity(n * k);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..k).map(|_| 6.0 * (u() - 0.5)).collect();
        // labels follow softmax(row / 3): the logits are 3x too confident
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = row.iter().map(|&v| ((v - m) / 3.0).exp()).collect();
        let s: f64 = w.iter().sum();
        let mut t = u() * s;
        let mut label = k - 1;
        for (j, &wj) in w.iter().enumerate() {
            if t < wj {
                label = j;
                break;
            }
            t -= wj;
        }
        y.push(label);
        z.extend(row);
    }
    (z, y)
}

#[test]
fn temperature_scaling_softens_overconfident_logits() {
    let (z, y) = overconfident_logits(5000, 5, 3);
    let p = Predictions::from_logits(z, 5, y).unwrap();
    let r = evaluate(&p, &CalibrationConfig::default()).unwrap();
    let t = r.temperature.unwrap();
    assert!((t - 3.0).abs() < 0.4, "T = {t}");
    let post = r.post.as_ref().unwrap();
    assert_eq!(post.accuracy, r.pre.accuracy);
    assert!(post.nll < r.pre.nll);
    assert!(
        post.ece[&15] < r.pre.ece[&15] / 2.0,
        "{} {}",
        post.ece[&15],
        r.pre.ece[&15]
    );
    // held-out evaluation: 80 % of 5000 samples
    let total: usize = r.reliability.pre.iter().map(|b| b.count).sum();
    assert_eq!(total, 4000);
    // evaluate_on = All uses every sample
    let mut c = CalibrationConfig::default();
    c.temperature_scaling.as_mut().unwrap().evaluate_on = EvaluationSplit::All;
    let all = evaluate(&p, &c).unwrap();
    assert_eq!(all.temperature, r.temperature);
    let total: usize = all
        .reliability
        .post
        .as_ref()
        .unwrap()
        .iter()
        .map(|b| b.count)
        .sum();
    assert_eq!(total, 5000);
    // probability inputs give the same temperature (log p = z − logsumexp z)
    let q = Predictions::from_probabilities(
        p.probabilities().to_vec(),
        5,
        p.labels().to_vec(),
        RowSumPolicy::default(),
    )
    .unwrap();
    let rq = evaluate(&q, &CalibrationConfig::default()).unwrap();
    assert!((rq.temperature.unwrap() - t).abs() < 1e-6 * t);
}

#[test]
fn well_calibrated_input_keeps_temperature_near_one() {
    let (z, y) = overconfident_logits(4000, 4, 9);
    let z3: Vec<f64> = z.iter().map(|v| v / 3.0).collect();
    let p = Predictions::from_logits(z3, 4, y).unwrap();
    let r = evaluate(&p, &CalibrationConfig::default()).unwrap();
    assert!(
        (r.temperature.unwrap() - 1.0).abs() < 0.15,
        "{:?}",
        r.temperature
    );
}

// ------------------------------------------------------------------ properties

fn all_bin_values(m: &MetricSet) -> Vec<f64> {
    [&m.ece, &m.ece_em, &m.cwce, &m.cwce_em, &m.mce, &m.rmsce]
        .iter()
        .flat_map(|b| b.values().copied())
        .chain([m.ksce, m.mmce])
        .chain(m.kdece)
        .collect()
}

fn prob_rows() -> impl Strategy<Value = (Vec<Vec<f64>>, Vec<usize>)> {
    (2usize..6, 1usize..120).prop_flat_map(|(k, n)| {
        (
            prop::collection::vec(prop::collection::vec(0.0f64..1.0, k), n),
            prop::collection::vec(0..k, n),
        )
            .prop_map(|(raw, labels)| {
                let rows = raw
                    .into_iter()
                    .map(|r| {
                        let s: f64 = r.iter().sum::<f64>() + 1e-9;
                        r.iter().map(|v| (v + 1e-9 / r.len() as f64) / s).collect()
                    })
                    .collect();
                (rows, labels)
            })
    })
}

const RULES: [BinRule; 3] = [
    BinRule::RightClosed,
    BinRule::LeftClosed,
    BinRule::NumpyHistogram,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn calibration_errors_lie_in_unit_interval((rows, labels) in prob_rows(), rule_idx in 0usize..3) {
        let p = Predictions::from_probability_rows(&rows, &labels, RowSumPolicy::Renormalize).unwrap();
        let r = evaluate(&p, &no_ts(RULES[rule_idx], &DEFAULT_BIN_COUNTS)).unwrap();
        for v in all_bin_values(&r.pre) {
            prop_assert!((0.0..=1.0).contains(&v), "{v}");
        }
        prop_assert!(r.pre.nll >= 0.0 && r.pre.brier >= 0.0 && r.pre.brier <= 1.0);
    }

    #[test]
    fn perfectly_calibrated_gives_zero(
        groups in prop::collection::vec((5u32..=10, 1usize..4), 1..6),
        rule_idx in 0usize..3,
    ) {
        // K = 2, rows [v, 1 − v] with v = j/10 ≥ 0.5; in a group of 10·m rows exactly j·m have
        // label 0, so every score value is calibrated for both classes
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for &(j, m) in &groups {
            let v = f64::from(j) / 10.0;
            for r in 0..10 * m {
                rows.push(vec![v, 1.0 - v]);
                labels.push(usize::from(r >= j as usize * m));
            }
        }
        let p = Predictions::from_probability_rows(&rows, &labels, RowSumPolicy::Reject).unwrap();
        let r = evaluate(&p, &no_ts(RULES[rule_idx], &DEFAULT_BIN_COUNTS)).unwrap();
        for (name, map) in [("ece", &r.pre.ece), ("ece_em", &r.pre.ece_em), ("cwce", &r.pre.cwce),
                            ("cwce_em", &r.pre.cwce_em), ("mce", &r.pre.mce), ("rmsce", &r.pre.rmsce)] {
            for (b, v) in map {
                prop_assert!(v.abs() < 1e-12, "{name}[{b}] = {v}");
            }
        }
        prop_assert!(r.pre.ksce < 1e-12 && r.pre.mmce < 1e-9, "{} {}", r.pre.ksce, r.pre.mmce);
    }

    #[test]
    fn metrics_are_permutation_invariant((rows, labels) in prob_rows(), seed in any::<u64>()) {
        let p = Predictions::from_probability_rows(&rows, &labels, RowSumPolicy::Renormalize).unwrap();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let mut rng = SplitMix64::new(seed);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let k = p.n_classes();
        let permuted: Vec<f64> = order.iter().flat_map(|&i| p.probabilities()[i * k..(i + 1) * k].to_vec()).collect();
        let permuted_labels: Vec<usize> = order.iter().map(|&i| labels[i]).collect();
        let q = Predictions::from_probabilities(permuted, k, permuted_labels, RowSumPolicy::Reject).unwrap();
        let cfg = no_ts(BinRule::RightClosed, &DEFAULT_BIN_COUNTS);
        let (a, b) = (evaluate(&p, &cfg).unwrap().pre, evaluate(&q, &cfg).unwrap().pre);
        // everything binned is computed from sorted scores: bit-identical
        prop_assert_eq!(&a.ece, &b.ece);
        prop_assert_eq!(&a.ece_em, &b.ece_em);
        prop_assert_eq!(&a.cwce, &b.cwce);
        prop_assert_eq!(&a.cwce_em, &b.cwce_em);
        prop_assert_eq!(&a.mce, &b.mce);
        prop_assert_eq!(a.ksce, b.ksce);
        prop_assert_eq!(a.mmce, b.mmce);
        prop_assert_eq!(a.accuracy, b.accuracy);
        // sums over samples: equal up to rounding
        prop_assert!((a.nll - b.nll).abs() <= 1e-12 * (1.0 + a.nll));
        prop_assert!((a.brier - b.brier).abs() <= 1e-12);
        match (a.kdece, b.kdece) {
            (Some(x), Some(y)) => prop_assert!((x - y).abs() <= 1e-9, "{x} {y}"),
            (x, y) => prop_assert_eq!(x, y),
        }
    }

    #[test]
    fn equal_mass_bins_hold_n_over_b(
        raw in prop::collection::btree_set(0u32..1_000_000, 1..400),
        b in 1usize..60,
    ) {
        let scores: Vec<f64> = raw.iter().map(|&v| f64::from(v) / 1e6).collect();
        let outcomes = vec![false; scores.len()];
        let s = SortedScores::new(&scores, &outcomes).unwrap();
        let bins = s.equal_mass_bins(b);
        let n = scores.len();
        prop_assert_eq!(bins.len(), b.min(n));
        let target = n as f64 / b.min(n) as f64;
        for bin in &bins {
            prop_assert!((bin.count as f64 - target).abs() < 1.0, "{} vs {}", bin.count, target);
        }
        prop_assert_eq!(bins.iter().map(|x| x.count).sum::<usize>(), n);
    }

}

proptest! {
    // 16 cases: each runs the full pipeline four times (slow in debug builds)
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn temperature_scaling_keeps_accuracy_and_never_raises_calibration_nll(
        n in 2usize..300, k in 2usize..6, scale in 0.1f64..8.0, seed in any::<u64>(),
        fraction in 0.05f64..1.0, logits in any::<bool>(),
    ) {
        let (z, y) = overconfident_logits(n, k, seed);
        let z: Vec<f64> = z.iter().map(|v| v * scale).collect();
        let p = if logits {
            Predictions::from_logits(z, k, y).unwrap()
        } else {
            let q = Predictions::from_logits(z, k, y.clone()).unwrap();
            Predictions::from_probabilities(q.probabilities().to_vec(), k, y, RowSumPolicy::default()).unwrap()
        };
        let ts = TemperatureScalingConfig { calibration_fraction: fraction, seed, ..Default::default() };
        for evaluate_on in [EvaluationSplit::HeldOut, EvaluationSplit::All] {
            let cfg = CalibrationConfig {
                bin_counts: vec![10],
                temperature_scaling: Some(TemperatureScalingConfig { evaluate_on, ..ts.clone() }),
                ..CalibrationConfig::default()
            };
            let r = evaluate(&p, &cfg).unwrap();
            let t = r.temperature.unwrap();
            prop_assert!(t > 0.0);
            prop_assert_eq!(r.post.as_ref().unwrap().accuracy, r.pre.accuracy);
            // NLL on the calibration split, as reported, before and after scaling
            let (cal, _) = split_indices(n, fraction, seed);
            let cal_rows: Vec<f64> = cal.iter().flat_map(|&i| p.probabilities()[i * k..(i + 1) * k].to_vec()).collect();
            let cal_y: Vec<usize> = cal.iter().map(|&i| p.labels()[i]).collect();
            let z_cal: Vec<f64> = cal.iter().flat_map(|&i| p.log_scores()[i * k..(i + 1) * k].to_vec()).collect();
            let post_rows = if t == 1.0 { cal_rows.clone() } else { apply_temperature(&z_cal, k, t) };
            let nll = |rows: &[f64]| -> f64 {
                rows.chunks_exact(k).zip(&cal_y).map(|(r, &y)| metrics::nll_term(r[y])).sum::<f64>()
                    / cal_y.len() as f64
            };
            let (before, after) = (nll(&cal_rows), nll(&post_rows));
            prop_assert!(after <= before + 1e-12, "T={t}: {after} > {before}");
        }
    }
}

// ------------------------------------------------------------------ reference agreement

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/calibration/reference.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run make_reference.py next to it)"));
    serde_json::from_str(&text).unwrap()
}

fn f64s_from_bits(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| f64::from_bits(u64::from_str_radix(s.as_str().unwrap(), 16).unwrap()))
        .collect()
}

/// Largest |difference| seen per (library, metric), plus the number of values compared.
#[derive(Default)]
struct Agreement(BTreeMap<String, (f64, usize)>);

impl Agreement {
    fn check(&mut self, what: &str, case: &str, ours: f64, reference: f64, tol: f64) {
        let d = (ours - reference).abs();
        assert!(
            d <= tol,
            "{case}: {what}: engine {ours:.17} vs reference {reference:.17} (|diff| {d:e} > {tol:e})"
        );
        let e = self.0.entry(what.to_string()).or_insert((0.0, 0));
        e.0 = e.0.max(d);
        e.1 += 1;
    }

    fn check_bins(
        &mut self,
        what: &str,
        case: &str,
        ours: &BinMap,
        reference: &Value,
        tol: f64,
        only: Option<&Value>,
    ) {
        for (b, v) in ours {
            let key = b.to_string();
            if only.is_some_and(|flags| !flags[&key].as_bool().unwrap()) {
                continue;
            }
            self.check(what, case, *v, reference[&key].as_f64().unwrap(), tol);
        }
    }
}

#[test]
fn agrees_with_reference_implementations() {
    let fx = fixture();
    let bins: Vec<usize> = fx["bin_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(bins, DEFAULT_BIN_COUNTS);
    let mut agree = Agreement::default();
    let mut skipped_tm = 0;
    let mut skipped_bm_cwce = 0;
    let mut skipped_bm_gap = 0;
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let k = case["k"].as_u64().unwrap() as usize;
        let labels: Vec<usize> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let p = if case.get("logits_bits").is_some() {
            Predictions::from_logits(f64s_from_bits(&case["logits_bits"]), k, labels.clone())
                .unwrap()
        } else {
            Predictions::from_probabilities(
                f64s_from_bits(&case["probs_bits"]),
                k,
                labels.clone(),
                RowSumPolicy::default(),
            )
            .unwrap()
        };
        let rf = &case["reference"];
        let eval = |rule| evaluate(&p, &no_ts(rule, &bins)).unwrap().pre;

        // torchmetrics: left-closed, computed in float32
        let tm = &rf["torchmetrics"];
        let left = eval(BinRule::LeftClosed);
        let flags = &tm["comparable"];
        skipped_tm += flags
            .as_object()
            .unwrap()
            .values()
            .filter(|v| !v.as_bool().unwrap())
            .count();
        agree.check_bins(
            "torchmetrics ece (l1)",
            name,
            &left.ece,
            &tm["ece"],
            1e-6,
            Some(flags),
        );
        agree.check_bins(
            "torchmetrics rmsce (l2)",
            name,
            &left.rmsce,
            &tm["rmsce"],
            1e-6,
            Some(flags),
        );
        agree.check_bins(
            "torchmetrics mce (max)",
            name,
            &left.mce,
            &tm["mce"],
            1e-6,
            Some(flags),
        );

        // netcal: numpy histogram
        let nc = &rf["netcal"];
        let hist = eval(BinRule::NumpyHistogram);
        agree.check_bins("netcal ece", name, &hist.ece, &nc["ece"], 1e-9, None);
        agree.check_bins("netcal mce", name, &hist.mce, &nc["mce"], 1e-9, None);
        agree.check_bins(
            "netcal classwise ece",
            name,
            &hist.cwce,
            &nc["cwce"],
            1e-9,
            None,
        );
        agree.check(
            "netcal mmce",
            name,
            hist.mmce,
            nc["mmce"].as_f64().unwrap(),
            1e-9,
        );

        // uncertainty-calibration: right-closed (the default rule)
        let uc = &rf["uncertainty_calibration"];
        let right = eval(BinRule::RightClosed);
        agree.check_bins(
            "uncertainty-calibration ece",
            name,
            &right.ece,
            &uc["ece"],
            1e-9,
            None,
        );
        agree.check_bins(
            "uncertainty-calibration ece_em",
            name,
            &right.ece_em,
            &uc["ece_em"],
            1e-9,
            None,
        );
        agree.check_bins(
            "uncertainty-calibration cwce",
            name,
            &right.cwce,
            &uc["cwce"],
            1e-9,
            None,
        );
        agree.check_bins(
            "uncertainty-calibration cwce_em",
            name,
            &right.cwce_em,
            &uc["cwce_em"],
            1e-9,
            None,
        );
        agree.check_bins(
            "uncertainty-calibration rmsce",
            name,
            &right.rmsce,
            &uc["rmsce"],
            1e-9,
            None,
        );
        agree.check_bins(
            "uncertainty-calibration mce",
            name,
            &right.mce,
            &uc["mce"],
            1e-9,
            None,
        );
        // equal-mass metrics do not depend on the equal-width rule
        assert_eq!(left.ece_em, right.ece_em);
        assert_eq!(hist.cwce_em, right.cwce_em);

        // re-implementation of the benchmark module's binned metrics: np.linspace edges
        // i·(1/B), which for some i lie one ulp above i/B; bin counts where a score falls in
        // such a gap (i/B < s <= i·(1/B)) are binned differently (documented difference)
        let bm = &rf["reimpl_benchmark"];
        let top_conf: Vec<f64> = (0..labels.len())
            .map(|i| {
                p.probabilities()[i * k..(i + 1) * k]
                    .iter()
                    .copied()
                    .fold(0.0, f64::max)
            })
            .collect();
        let mut gap_free = |scores: &[f64]| -> Value {
            let mut flags = serde_json::Map::new();
            for &b in &bins {
                let lin = BinRule::NumpyHistogram.edges(b);
                let quo = BinRule::RightClosed.edges(b);
                let in_gap = scores
                    .iter()
                    .any(|&s| (0..=b).any(|i| quo[i] < s && s <= lin[i]));
                skipped_bm_gap += usize::from(in_gap);
                flags.insert(b.to_string(), Value::Bool(!in_gap));
            }
            Value::Object(flags)
        };
        let top_flags = gap_free(&top_conf);
        agree.check_bins(
            "reimpl benchmark ece",
            name,
            &right.ece,
            &bm["ece"],
            1e-9,
            Some(&top_flags),
        );
        agree.check_bins(
            "reimpl benchmark mce",
            name,
            &right.mce,
            &bm["mce"],
            1e-9,
            Some(&top_flags),
        );
        let all_flags = gap_free(p.probabilities());
        // the benchmark module leaves scores of exactly 0 out of every bin; that changes cwce
        // only when a sample's true class has probability exactly 0 (documented difference)
        let zero_positive = (0..labels.len()).any(|i| p.probabilities()[i * k + labels[i]] == 0.0);
        if zero_positive {
            skipped_bm_cwce += 1;
        } else {
            agree.check_bins(
                "reimpl benchmark cwce",
                name,
                &right.cwce,
                &bm["cwce"],
                1e-9,
                Some(&all_flags),
            );
        }

        // KS-CE, KDE-ECE
        let ks = &rf["reimpl_ksce"];
        agree.check(
            "reimpl ksce (tie groups)",
            name,
            right.ksce,
            ks["tie_groups"].as_f64().unwrap(),
            1e-12,
        );
        if !ks["has_ties"].as_bool().unwrap() {
            agree.check(
                "reimpl ksce (Gupta)",
                name,
                right.ksce,
                ks["gupta"].as_f64().unwrap(),
                1e-12,
            );
        }
        match (right.kdece, rf["reimpl_kdece"].as_f64()) {
            (Some(ours), Some(theirs)) => {
                agree.check("reimpl kdece (KDEpy)", name, ours, theirs, 1e-9)
            }
            (ours, theirs) => assert_eq!(ours, theirs, "{name}: kdece"),
        }

        // proper scores
        let sk = &rf["sklearn"];
        agree.check(
            "sklearn log_loss",
            name,
            right.nll,
            sk["nll"].as_f64().unwrap(),
            1e-12,
        );
        agree.check(
            "sklearn brier (mse)",
            name,
            right.brier,
            sk["brier"].as_f64().unwrap(),
            1e-12,
        );
        agree.check(
            "accuracy",
            name,
            right.accuracy,
            rf["accuracy"].as_f64().unwrap(),
            0.0,
        );

        // temperature: scipy bounded minimisation of the same NLL on all samples
        if let Some(ts) = rf.get("scipy_temperature") {
            let fit = fit_temperature(p.logits().unwrap(), k, &labels, 0.01, 100.0);
            let t_ref = ts["temperature"].as_f64().unwrap();
            agree.check(
                "scipy temperature (relative)",
                name,
                fit.temperature / t_ref,
                1.0,
                1e-6,
            );
            assert!(fit.nll_at_fit <= ts["nll"].as_f64().unwrap() + 1e-12);
        }
    }
    println!("max |engine − reference| over all cases and bin counts:");
    for (what, (d, count)) in &agree.0 {
        println!("  {what:<38} {d:.3e}  ({count} values)");
    }
    println!("  torchmetrics (case, bin count) pairs skipped for float32 binning: {skipped_tm}");
    println!(
        "  cases skipped for benchmark cwce (a true class with probability 0): {skipped_bm_cwce}"
    );
    println!(
        "  benchmark (case, bin count, top-label|classwise) skipped for linspace-gap scores: {skipped_bm_gap}"
    );
}
