//! archdb ↔ PyTorch parity (docs/gpu-trainer.md): the PyTorch forward pass of
//! `python/archdb_torch` on an exported training set gives archdb's predictions for an
//! archdb-trained artifact, and an artifact written by the PyTorch trainer loads in archdb with
//! the predictions PyTorch computes. Needs `ARCHDB_TORCH_PYTHON` (an interpreter with torch,
//! numpy and safetensors, e.g. a venv made by `.ci/torch-venv.sh`); skipped, saying so, without,
//! except in CI (`CI` set), where a missing torch fails the test.
//!
//! ```sh
//! ARCHDB_TORCH_PYTHON=/path/to/venv/bin/python cargo test --test torch_parity -- --nocapture
//! ```

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use archdb::db::architectures::StoredGraph;
use archdb::generate::{nb201_arch_strings, nb201_model};
use archdb::graph::BuildOptions;
use archdb::predict::contrastive::ContrastiveConfig;
use archdb::predict::encoder::EncoderConfig;
use archdb::predict::export::{SetGraph, training_set};
use archdb::predict::model::TargetScores;
use archdb::predict::{Backend, CgGraphRef, Prediction, Predictor, TrainConfig, TrainSample};

/// Every output must agree within `TOLERANCE · max(1, |archdb's value|)` (the same rule as
/// `python -m archdb_torch parity`): accuracy in points, std, OOD score, membership entropy and
/// every embedding component.
const TOLERANCE: f64 = 1e-4;

/// NB201 cells spread over the space with their CIFAR-10 200-epoch test accuracy.
fn cells(count: usize) -> Vec<(StoredGraph, f64)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nasbench201/nb201_tss_200ep_test.csv.gz");
    let file = std::fs::File::open(&path).expect("the NB201 accuracy table");
    let accuracies: Vec<f64> = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file))
        .lines()
        .skip(1)
        .map(|line| line.unwrap().split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    let archs: Vec<String> = nb201_arch_strings().collect();
    let step = archs.len() / count;
    (0..count)
        .map(|k| {
            let i = k * step + 7;
            let model = nb201_model(&archs[i], 10).unwrap();
            let ingested = archdb::ingest::ingest_model(model, BuildOptions::default()).unwrap();
            (StoredGraph::from(&ingested.graph), accuracies[i])
        })
        .collect()
}

fn tiny_config() -> TrainConfig {
    TrainConfig {
        seed: 5,
        ensemble: 2,
        encoder: EncoderConfig {
            hidden: 8,
            layers: 3,
            embedding: 8,
            graph_features: true,
            residual: false,
        },
        head_hidden: 8,
        contrastive: ContrastiveConfig {
            epochs: 1,
            batch_size: 16,
            ..ContrastiveConfig::default()
        },
        epochs: 3,
        batch_size: 16,
        clusters: 3,
        head_epochs: 2,
        // The most involved inverse of the target transform (the default is uniform).
        target_scores: TargetScores::Logistic,
        ..TrainConfig::default()
    }
}

fn python() -> Option<String> {
    let python = std::env::var("ARCHDB_TORCH_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    if python.is_none() {
        // A skip in CI would leave the PyTorch trainer untested behind a green run.
        assert!(
            !in_ci(),
            "torch parity cannot run: ARCHDB_TORCH_PYTHON is not set (in CI, .ci/torch-venv.sh \
             could not install torch); a skipped parity test fails CI (CI={:?})",
            std::env::var("CI").unwrap_or_default()
        );
        // Written past the test harness's capture, so that the skip shows in every run.
        std::io::stderr()
            .write_all(concat!("SKIPPED torch parity: set ARCHDB_TORCH_PYTHON to a Python with torch, numpy and \
             safetensors (e.g. made by .ci/torch-venv.sh) to run it", "\n").as_bytes())
            .unwrap();
    }
    python
}

/// Whether this is a CI run (`CI` set and not `false`/`0`, as CI services set it).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Runs `python -m archdb_torch ARGS` and returns its stdout.
fn archdb_torch(python: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .args(["-m", "archdb_torch"])
        .args(args)
        .env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("python"),
        )
        .output()
        .expect("starting the Python interpreter");
    assert!(
        out.status.success(),
        "archdb_torch {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The predictions `python -m archdb_torch predict` writes.
fn torch_predictions(
    python: &str,
    artifact: &Path,
    set: &Path,
    dir: &Path,
) -> Vec<serde_json::Value> {
    let out = dir.join("torch-predictions.json");
    archdb_torch(
        python,
        &[
            "predict",
            "--artifact",
            artifact.to_str().unwrap(),
            "--set",
            set.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    json["predictions"].as_array().unwrap().clone()
}

/// Largest scaled error of every output, asserted within [`TOLERANCE`].
fn assert_agree(what: &str, archdb: &[Prediction], torch: &[serde_json::Value]) {
    assert_eq!(archdb.len(), torch.len());
    let mut worst = [0f64; 5];
    let mut check = |k: usize, ours: f64, theirs: &serde_json::Value| {
        let theirs = theirs.as_f64().expect("a number");
        let error = (ours - theirs).abs() / ours.abs().max(1.0);
        worst[k] = worst[k].max(error);
    };
    for (a, b) in archdb.iter().zip(torch) {
        check(0, a.accuracy, &b["accuracy"]);
        check(1, a.std, &b["std"]);
        check(2, a.ood_score, &b["ood_score"]);
        check(3, a.membership_entropy, &b["membership_entropy"]);
        let embedding = b["embedding"].as_array().unwrap();
        assert_eq!(embedding.len(), a.embedding.len());
        for (x, y) in a.embedding.iter().zip(embedding) {
            check(4, *x as f64, y);
        }
    }
    let names = [
        "accuracy",
        "std",
        "ood_score",
        "membership_entropy",
        "embedding",
    ];
    eprintln!(
        "{what}: max scaled error {:?}",
        names.iter().zip(worst).collect::<Vec<_>>()
    );
    for (name, error) in names.iter().zip(worst) {
        assert!(
            error <= TOLERANCE,
            "{what}: {name} differs by {error:e} (scaled)"
        );
    }
}

/// Graphs of the batch the gradient check uses (the set's first ones).
const GRADIENT_BATCH: usize = 16;

/// The regression loss (MSE + 0.5 × pairwise logistic, on targets each side transforms itself)
/// plus the contrastive loss of the unit-norm embeddings of two identical views (soft positives
/// from the spectral signatures): archdb's value and gradient of every parameter it reaches
/// (encoder and head 0) against PyTorch's, within 1e-4 of the largest gradient of the tensor.
fn gradients_agree(
    python: &str,
    predictor: &Predictor,
    samples: &[TrainSample],
    set: &Path,
    dir: &Path,
) {
    use archdb::predict::batch::Batch;
    use archdb::predict::contrastive::{contrastive_loss, soft_positive_weights};
    use archdb::predict::spectral::spectral_signature;
    use archdb::predict::train::regression_loss;
    use candle_core::{Device, Tensor};

    let config = &predictor.config;
    let member = &predictor.members[0];
    let chosen = &samples[..GRADIENT_BATCH];
    let graphs: Vec<_> = chosen.iter().map(|s| &*s.graph).collect();
    let batch = Batch::new(&graphs, &predictor.vocabulary, &Device::Cpu).unwrap();
    let embeddings = member.encoder.forward(&batch, None).unwrap();
    let predicted = member.heads[0]
        .forward(&embeddings)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let targets: Vec<f32> = chosen
        .iter()
        .map(|s| config.target.forward(s.accuracy.unwrap(), s.graph.flops) as f32)
        .collect();
    let views = Tensor::cat(&[&embeddings, &embeddings], 0).unwrap();
    let norm = views.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
    let z = views
        .broadcast_div(&norm.affine(1.0, 1e-8).unwrap())
        .unwrap();
    let signatures: Vec<Vec<f32>> = chosen
        .iter()
        .map(|s| spectral_signature(s.graph.spectrum(), 21))
        .collect();
    let alpha = soft_positive_weights(&signatures, 0.05);
    let loss = regression_loss(&predicted, &targets, 0.5, &Device::Cpu)
        .unwrap()
        .add(&contrastive_loss(&z, &alpha, 0.1).unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();

    let out = dir.join("torch-gradients.safetensors");
    let script = format!(
        r#"
import numpy as np, torch
from safetensors.torch import save_file
from archdb_torch.data import Batcher, TrainingSet
from archdb_torch.model import Predictor
from archdb_torch.train import contrastive_loss, regression_loss, soft_positive_weights
data, p, n = TrainingSet({set:?}), Predictor.load({artifact:?}), {GRADIENT_BATCH}
m = p.members[0]
e = m.encoder(Batcher(data, "cpu").batch(np.arange(n)))
y = torch.tensor(p.target.forward(data.accuracy[:n], data.flops[:n]), dtype=torch.float32)
views = torch.cat([e, e])
z = views / (views.norm(dim=1, keepdim=True) + 1e-8)
alpha = soft_positive_weights(torch.as_tensor(data.spectral[:n], dtype=torch.float64), 0.05)
loss = regression_loss(m.head[0](e).squeeze(1), y, 0.5) + contrastive_loss(z, alpha, 0.1)
loss.backward()
grads = {{k: v.grad for k, v in m.named_tensors().items() if v.grad is not None}}
save_file({{**grads, "loss": loss.detach().reshape(1)}}, {out:?})
"#,
        set = set.to_str().unwrap(),
        artifact = dir.join("archdb.safetensors").to_str().unwrap(),
        out = out.to_str().unwrap(),
    );
    let status = Command::new(python)
        .args(["-c", &script])
        .env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("python"),
        )
        .status()
        .unwrap();
    assert!(status.success(), "the PyTorch gradient script failed");
    let torch = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let (ours, theirs) = (
        loss.to_scalar::<f32>().unwrap(),
        torch["loss"].to_vec1::<f32>().unwrap()[0],
    );
    assert!(
        (ours - theirs).abs() <= 1e-5 * ours.abs().max(1.0),
        "loss {ours} vs {theirs}"
    );
    let mut worst = 0f32;
    let mut compared = 0;
    for (name, var) in &member.vars {
        let Some(grad) = grads.get(var.as_tensor()) else {
            continue;
        };
        let ours: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
        let theirs: Vec<f32> = torch
            .get(name)
            .unwrap_or_else(|| panic!("PyTorch has no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let scale = theirs.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
        for (a, b) in ours.iter().zip(&theirs) {
            worst = worst.max((a - b).abs() / scale);
        }
        compared += 1;
    }
    eprintln!(
        "loss {ours} vs {theirs}; {compared} gradients, max error / max |gradient| {worst:e}"
    );
    assert!(compared > 10, "only {compared} gradients compared");
    assert!(
        worst <= 1e-4,
        "gradients differ by {worst:e} of their scale"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("archdb-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn pytorch_and_archdb_agree_on_artifacts_both_ways() {
    let Some(python) = python() else {
        return;
    };
    let dir = scratch("torch-parity");
    let config = tiny_config();
    let graphs = cells(64);
    let refs: Vec<CgGraphRef> = graphs.iter().map(|(g, _)| g.as_cg()).collect();

    // archdb trains; PyTorch predicts the exported set with its artifact.
    let samples: Vec<TrainSample> = graphs
        .iter()
        .map(|(g, a)| TrainSample {
            graph: Arc::new(config.prepare(g.as_cg()).unwrap()),
            accuracy: Some(*a),
        })
        .collect();
    let trained = archdb::predict::train(&samples, &config, &mut |_| true).unwrap();
    assert!(!trained.config.target.quantiles.is_empty());
    let artifact = dir.join("archdb.safetensors");
    trained.save(&artifact).unwrap();
    let set: Vec<SetGraph> = graphs
        .iter()
        .enumerate()
        .map(|(i, (g, a))| SetGraph {
            id: i as i64,
            graph: g.as_cg(),
            accuracy: Some(*a),
        })
        .collect();
    let set_path = dir.join("set.safetensors");
    std::fs::write(
        &set_path,
        training_set(&set, &config, &"NB201 CIFAR-10 test").unwrap(),
    )
    .unwrap();
    let loaded = Predictor::load(&artifact, Backend::Cpu).unwrap();
    let archdb_predictions = loaded.predict(&refs).unwrap();
    assert_agree(
        "archdb-trained artifact",
        &archdb_predictions,
        &torch_predictions(&python, &artifact, &set_path, &dir),
    );

    // One training step's loss and gradients from the same weights on the same batch.
    gradients_agree(&python, &loaded, &samples, &set_path, &dir);

    // PyTorch trains (residual layers, to cover them too); archdb loads and predicts.
    let torch_artifact = dir.join("torch.safetensors");
    let log = archdb_torch(
        &python,
        &[
            "train",
            "--set",
            set_path.to_str().unwrap(),
            "--out",
            torch_artifact.to_str().unwrap(),
            "--device",
            "cpu",
            "--config",
            r#"{"encoder": {"residual": true}}"#,
        ],
    );
    let reports: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON progress lines"))
        .collect();
    for stage in ["Pretrain", "Regression", "Heads"] {
        assert!(
            reports.iter().any(|r| r["stage"] == stage),
            "no {stage} epoch in {log}"
        );
    }
    let from_torch = Predictor::load(&torch_artifact, Backend::Cpu).unwrap();
    assert!(from_torch.config.encoder.residual);
    assert_eq!(from_torch.config.provenance["trainer"], "pytorch");
    assert_eq!(from_torch.members.len(), config.ensemble);
    let predictions = from_torch.predict(&refs).unwrap();
    assert!(
        predictions
            .iter()
            .all(|p| p.accuracy.is_finite() && p.std > 0.0)
    );
    assert_agree(
        "PyTorch-trained artifact",
        &predictions,
        &torch_predictions(&python, &torch_artifact, &set_path, &dir),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
