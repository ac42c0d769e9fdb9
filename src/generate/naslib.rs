//! The networks of NASLib's NAS-Bench-Suite-Zero samples (`zc_*.json`, one JSON object per
//! sample as in `shared/data/nas_bench_suite_zero`): NB101 from `nb101_spec`, NB301 from
//! `darts_genotype` (NASLib's build, [`Nb301Variant::Naslib`], on which the proxies were
//! measured) and TransNAS-Bench-101 micro and macro from `arch_str` for the tasks with a linear
//! head. NB201 samples are NB201 cells (`generate::nb201`, `import nb201`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    DartsGenotype, GenerateError, Nb101Spec, Nb301Variant, TransNasArch, TransNasTask,
    Verification, nb101_model, nb301_model, transnas_model,
};
use crate::onnx::proto::ModelProto;

/// The network of one sample of `search_space` (NASLib's name) on `task`, or `None` for the
/// spaces and tasks archdb does not generate here (NB201, and the TransNAS tasks without a
/// linear head: jigsaw, autoencoder, normal, segmentsemantic).
pub fn sample_model(
    search_space: &str,
    task: &str,
    sample: &Value,
) -> Result<Option<ModelProto>, GenerateError> {
    if !has_model(search_space, task) {
        return Ok(None);
    }
    Ok(Some(match search_space {
        "nasbench101" => nb101_model(&Nb101Spec::from_value(&sample["nb101_spec"])?),
        "nasbench301" => nb301_model(
            &DartsGenotype::from_value(&sample["darts_genotype"])?,
            Nb301Variant::Naslib,
        ),
        "transbench101_micro" | "transbench101_macro" => {
            let Some(task) = TransNasTask::from_name(task) else {
                return Ok(None);
            };
            let arch = sample["arch_str"].as_str().unwrap_or_default();
            transnas_model(&TransNasArch::parse(arch)?, task)
        }
        _ => return Ok(None),
    }))
}

/// Whether [`sample_model`] builds a network for samples of this space and task (NB101, NB301,
/// and the TransNAS-Bench-101 tasks with a linear head).
pub fn has_model(search_space: &str, task: &str) -> bool {
    match search_space {
        "nasbench101" | "nasbench301" => true,
        "transbench101_micro" | "transbench101_macro" => TransNasTask::from_name(task).is_some(),
        _ => false,
    }
}

/// One line of a samples file as JSON. Python's `json` writes `NaN` and `±Infinity` for some
/// proxies; they become `null` (the counts, params and flops, are always finite).
pub fn parse_sample(line: &str) -> serde_json::Result<Value> {
    let line = line
        .replace("-Infinity", "null")
        .replace("Infinity", "null")
        .replace("NaN", "null");
    serde_json::from_str(&line)
}

/// Checks every generated sample of a samples file (JSON lines) against NASLib's counts: the
/// ingested graph's `summary.params` against `zero_cost.params` (millions, equal after
/// rounding to a parameter) and [`super::naslib_counted_flops`] against `zero_cost.flops`
/// (MFLOPs, equal within 1e-6 MFLOPs). Returns `(params, FLOPs)` per `space/task`.
pub fn verify_samples(
    jsonl: &str,
) -> Result<BTreeMap<String, (Verification, Verification)>, String> {
    use prost::Message;
    let mut out: BTreeMap<String, (Verification, Verification)> = BTreeMap::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v = parse_sample(line).map_err(|e| e.to_string())?;
        let (space, task) = (
            v["search_space"].as_str().unwrap_or_default(),
            v["task"].as_str().unwrap_or_default(),
        );
        let Some(model) = sample_model(space, task, &v).map_err(|e| e.to_string())? else {
            continue;
        };
        let g = crate::ingest::analyse(model.encode_to_vec().into(), Default::default())
            .map_err(|e| e.to_string())?
            .graph;
        let key = v["naslib_encoding"].as_str().unwrap_or_default();
        let (params, flops) = out.entry(format!("{space}/{task}")).or_default();
        let naslib_params = v["zero_cost"]["params"].as_f64().ok_or("no params")? * 1e6;
        let ours = g.summary.params as f64;
        params.record(
            key,
            "params",
            ours,
            naslib_params,
            (ours - naslib_params).abs() < 0.5,
        );
        let naslib_flops = v["zero_cost"]["flops"].as_f64().ok_or("no flops")?;
        let ours = super::naslib_counted_flops(&g) as f64 / 1e6;
        flops.record(
            key,
            "flops",
            ours,
            naslib_flops,
            (ours - naslib_flops).abs() < 1e-6,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every NB101, NB301 and TransNAS (class_scene, class_object, room_layout) sample of
    /// `/work/shared/data/nas_bench_suite_zero` (run with `--ignored --nocapture`; set
    /// `NB_SUITE_ZERO_JSONL` to another copy).
    #[test]
    #[ignore = "needs the shared NAS-Bench-Suite-Zero samples and takes minutes"]
    fn all_samples_match_naslib_params_and_flops() {
        let path = std::env::var("NB_SUITE_ZERO_JSONL").unwrap_or_else(|_| {
            "/work/shared/data/nas_bench_suite_zero/nas_bench_suite_zero_samples.jsonl.gz".into()
        });
        let text = crate::generate::tests_support::gunzip(&path);
        let start = std::time::Instant::now();
        let report = verify_samples(&text).unwrap();
        let mut total = 0;
        for (space, (params, flops)) in &report {
            println!(
                "{space}: params {}/{} (max |diff| {}), FLOPs {}/{} (max |diff| {:.2e} M)",
                params.matched,
                params.compared,
                params.max_abs_diff,
                flops.matched,
                flops.compared,
                flops.max_abs_diff
            );
            assert_eq!(
                params.matched, params.compared,
                "{space}: {:?}",
                params.mismatches
            );
            assert_eq!(
                flops.matched, flops.compared,
                "{space}: {:?}",
                flops.mismatches
            );
            total += params.compared;
        }
        println!("{total} samples in {:.1?}", start.elapsed());
        // 500 NB101 + 725 NB301 + 3 × 711 micro + 3 × 662 macro (class_scene, class_object,
        // room_layout) … see docs/search-spaces.md for the exact counts.
        assert_eq!(report.len(), 2 + 2 * 3);
        assert_eq!(report["nasbench101/cifar10"].0.compared, 500);
        assert_eq!(report["nasbench301/cifar10"].0.compared, 725);
    }
}
