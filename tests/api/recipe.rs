//! Recipe-conditioned predictions (`POST /v1/predictions` with `epoch` and `hyperparameters`)
//! from the bundled recipe predictor, on real LEMUR rows of the repository's sample: the
//! contract (one result per target, in order, echoed), typical-recipe defaults, warnings,
//! bounds and domain verdicts for adversarial graphs and recipes, and 422 for uncovered targets.

use std::io::Read;

use archdb::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use prost::Message;
use serde_json::{Value, json};

use crate::common::{TestApp, fixture, spawn_app};

fn sample_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lemur-sample")
}

/// A graph of the sample's tarball.
fn sample_onnx(stem: &str) -> Vec<u8> {
    let file = std::fs::File::open(sample_dir().join("onnx/lemur_onnx.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == format!("{stem}.onnx") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("{stem}.onnx is not in the sample");
}

/// The sample's measured trials of one model on one dataset: (epoch, prm, accuracy).
fn trials(nn: &str, dataset: &str) -> Vec<(f64, Value, f64)> {
    let file = std::fs::File::open(sample_dir().join("lemur_stat.jsonl.gz")).unwrap();
    let text = {
        let mut s = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["nn"] == nn && r["dataset"] == dataset && r["task"] == "img-classification")
        .map(|r| {
            (
                r["epoch"].as_f64().unwrap(),
                r["prm"].clone(),
                r["accuracy"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn predict(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url("/v1/predictions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn assert_bounded(p: &Value) {
    let accuracy = p["accuracy"].as_f64().unwrap();
    let [lo, hi] = [
        p["interval"][0].as_f64().unwrap(),
        p["interval"][1].as_f64().unwrap(),
    ];
    assert!(
        (0.0..=1.0).contains(&lo) && lo <= accuracy && accuracy <= hi && hi <= 1.0,
        "{p}"
    );
    assert!(p["std"].as_f64().unwrap() >= 0.0, "{p}");
    assert!(
        ["in", "edge", "out"].contains(&p["domain"].as_str().unwrap()),
        "{p}"
    );
}

#[tokio::test]
async fn lemur_trials_are_predicted_under_their_own_recipes() {
    let app = spawn_app().await;
    let measured = trials("AlexNet", "cifar-10");
    assert!(
        measured.len() >= 200,
        "{} AlexNet CIFAR-10 trials",
        measured.len()
    );
    // 200 targets for one ONNX, in one call: each trial's epoch and hyperparameters.
    let chosen = &measured[..200];
    let targets: Vec<Value> = chosen
        .iter()
        .map(|(epoch, prm, _)| {
            json!({"dataset": "cifar-10", "metric": "acc", "epoch": epoch, "hyperparameters": prm})
        })
        .collect();
    let (status, body) = predict(
        &app,
        json!({"onnx_base64": [b64(&sample_onnx("AlexNet"))], "targets": targets}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 200);
    let mut predicted = Vec::new();
    for (i, (result, (epoch, prm, _))) in results.iter().zip(chosen).enumerate() {
        assert_eq!(
            result["requested"], targets[i],
            "result {i} echoes its target"
        );
        assert_eq!(result["predictor_kind"], "recipe");
        assert_eq!(result["unit"], "fraction");
        assert_eq!(result["target"]["dataset"], "cifar-10");
        assert_eq!(result["recipe"]["epoch"].as_f64().unwrap(), *epoch);
        assert_eq!(result["recipe"]["transform"], prm["transform"]);
        assert_eq!(result["recipe"]["lr"], prm["lr"]);
        let p = &result["predictions"][0];
        assert_bounded(p);
        // AlexNet is one of the training graphs: in the domain, its own nearest neighbour.
        assert_eq!(p["domain"], "in", "{p}");
        assert_eq!(p["nearest"][0]["name"], "AlexNet", "{p}");
        assert!(p["nearest"][0]["distance"].as_f64().unwrap() < 1e-6);
        predicted.push(p["accuracy"].as_f64().unwrap());
    }
    // Once the LEMUR graphs are stored, the neighbours name their architectures.
    archdb::import::run(
        &app.pool,
        archdb::import::ImportKind::LemurOnnx,
        &sample_dir().join("onnx"),
        std::sync::Arc::new(archdb::import::NoProgress),
    )
    .await
    .unwrap();
    let (_, stored) = app
        .get_json("/v1/architectures?family=lemur&limit=100")
        .await;
    let alexnet = stored["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "AlexNet")
        .unwrap_or_else(|| panic!("{stored}"))["id"]
        .clone();
    let (status, body) = predict(
        &app,
        json!({"onnx_base64": [b64(&sample_onnx("AlexNet"))], "targets": [targets[0]]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let first = &body["results"][0]["predictions"][0];
    assert_eq!(first["architecture_id"], alexnet, "{first}");
    assert_eq!(first["nearest"][0]["architecture_id"], alexnet, "{first}");
    // By id: the stored graph is described once (then from the registry's cache), with the
    // same answer as the upload's.
    for _ in 0..2 {
        let (status, by_id) = predict(
            &app,
            json!({"architecture_ids": [alexnet], "targets": [targets[0]]}),
        )
        .await;
        assert_eq!(status, 200, "{by_id}");
        let p = &by_id["results"][0]["predictions"][0];
        assert_eq!(p["accuracy"], first["accuracy"], "{p}");
        assert_eq!(p["interval"], first["interval"], "{p}");
    }
    // The recipe decides the accuracy: the predictions follow the measured trials.
    let truth: Vec<f64> = chosen.iter().map(|t| t.2).collect();
    let rho = archdb::stats::spearman(&predicted, &truth);
    assert!(rho > 0.5, "Spearman {rho} over AlexNet's trials");
    let mae = archdb::stats::mae(&predicted, &truth);
    assert!(mae < 0.15, "MAE {mae}");
}

/// A recipe predictor trained as a queued job from the LEMUR rows and graphs the database holds
/// (the sample: 8 graphs of 2 families), on the same training set as `archdb train-recipe`
/// reads from the files; registered beside the bundled one and serving once activated.
#[tokio::test]
async fn a_recipe_predictor_trains_from_the_database_and_serves_once_activated() {
    use crate::predictions::{once, post, work};
    let app = spawn_app().await;
    let (status, problem) = post(&app, "/v1/predictors/recipe", json!({})).await;
    assert_eq!(status, 422, "nothing to train on yet: {problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("lemur-onnx"),
        "{problem}"
    );
    for kind in [
        archdb::import::ImportKind::Lemur,
        archdb::import::ImportKind::LemurOnnx,
    ] {
        let dir = match kind {
            archdb::import::ImportKind::Lemur => sample_dir(),
            _ => sample_dir().join("onnx"),
        };
        archdb::import::run(
            &app.pool,
            kind,
            &dir,
            std::sync::Arc::new(archdb::import::NoProgress),
        )
        .await
        .unwrap();
    }
    for bad in [
        json!({"folds": 1}),
        json!({"budget": 9.0}),
        json!({"epochs": 3}),
    ] {
        let (status, problem) = post(&app, "/v1/predictors/recipe", bad.clone()).await;
        assert!([400, 422].contains(&status), "{bad}: {status} {problem}");
    }

    let (status, queued) = post(
        &app,
        "/v1/predictors/recipe",
        json!({"seed": 1, "folds": 2, "budget": 0.3, "name": "sample-recipe"}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let job = work(&app, &queued, &once()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = job["predictor_id"].as_i64().unwrap();
    let (_, info) = app.get_json(&format!("/v1/predictors/{id}")).await;
    assert_eq!(
        (&info["kind"], &info["name"], &info["active"]),
        (&json!("recipe"), &json!("sample-recipe"), &json!(false)),
        "{info}"
    );
    // The same rows and graphs as training from the sample's files.
    let files = archdb::predict::recipe::lemur::load(&sample_dir()).unwrap();
    let evaluation = &info["evaluation"];
    assert_eq!(evaluation["rows"], files.rows.len(), "{evaluation}");
    assert_eq!(evaluation["graphs"], files.graphs.len(), "{evaluation}");
    assert_eq!(
        (
            evaluation["graphs"].as_u64(),
            evaluation["families"].as_u64()
        ),
        (Some(8), Some(2))
    );
    assert_eq!(evaluation["seed"], 1);
    assert!(
        evaluation["calibration"]["coverage"].as_f64().is_some(),
        "{evaluation}"
    );

    // Not active yet: the bundled predictor answers.
    let target = json!({"dataset": "cifar-10", "epoch": 5, "hyperparameters": {"lr": 0.01}});
    let body = json!({"onnx_base64": [b64(&sample_onnx("AlexNet"))], "targets": [target]});
    let (status, answer) = predict(&app, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["results"][0]["predictor_id"],
        Value::Null,
        "{answer}"
    );
    let (_, list) = app.get_json("/v1/predictors").await;
    assert_eq!(list["recipe"]["id"], Value::Null, "{list}");
    let bundled = answer["results"][0]["predictions"][0]["accuracy"].clone();

    let (status, activated) = post(&app, &format!("/v1/predictors/{id}/activate"), json!({})).await;
    assert_eq!(status, 200, "{activated}");
    assert_eq!(activated["active"], true);
    let (status, answer) = predict(&app, body).await;
    assert_eq!(status, 200, "{answer}");
    let result = &answer["results"][0];
    assert_eq!(result["predictor_id"], id, "{answer}");
    assert_eq!(result["predictor_kind"], "recipe");
    assert_bounded(&result["predictions"][0]);
    assert_ne!(
        result["predictions"][0]["accuracy"], bundled,
        "another model answers"
    );
    let (_, list) = app.get_json("/v1/predictors").await;
    assert_eq!(list["recipe"]["id"], id, "{list}");
    assert_eq!(list["recipe"]["evaluation"]["rows"], files.rows.len());
    // Trained on AlexNet's CIFAR-10 trials, it follows them.
    let measured = trials("AlexNet", "cifar-10");
    let targets: Vec<Value> = measured[..100]
        .iter()
        .map(|(epoch, prm, _)| json!({"dataset": "cifar-10", "epoch": epoch, "hyperparameters": prm}))
        .collect();
    let (status, answer) = predict(
        &app,
        json!({"onnx_base64": [b64(&sample_onnx("AlexNet"))], "targets": targets}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let predicted: Vec<f64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["predictions"][0]["accuracy"].as_f64().unwrap())
        .collect();
    let truth: Vec<f64> = measured[..100].iter().map(|t| t.2).collect();
    let rho = archdb::stats::spearman(&predicted, &truth);
    assert!(rho > 0.5, "Spearman {rho} over AlexNet's trials");
}

#[tokio::test]
async fn missing_recipes_take_the_typical_one_and_unknown_names_warn() {
    let app = spawn_app().await;
    let onnx = b64(&sample_onnx("rag-02160af16bcb2882273b7ce15a7de6f9"));
    let (status, body) = predict(
        &app,
        json!({"onnx_base64": [onnx], "targets": [
            {"dataset": "cifar-10"},
            {"dataset": "cifar-10", "epoch": 1, "hyperparameters": {"lr": 0.01, "warmup": 3}},
            {"dataset": "mnist", "metric": "acc", "epoch": 5}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let defaulted: Vec<&str> = results[0]["defaulted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        defaulted,
        ["epoch", "lr", "momentum", "batch", "dropout", "transform"]
    );
    assert!(results[0]["recipe"]["epoch"].as_f64().unwrap() >= 1.0);
    assert!(results[0].get("warnings").is_none(), "{}", results[0]);
    let warnings = results[1]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("'warmup'")),
        "{warnings:?}"
    );
    assert_eq!(results[1]["recipe"]["lr"], 0.01);
    assert_eq!(results[2]["target"]["dataset"], "mnist");
    for r in results {
        assert_bounded(&r["predictions"][0]);
    }
    // Listed beside the registry, with what it covers and its held-out evaluation.
    let (_, list) = app.get_json("/v1/predictors").await;
    let datasets = list["recipe"]["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 6);
    assert_eq!(datasets[0]["name"], "cifar-10");
    assert!(datasets[0]["rows"].as_u64().unwrap() > 40_000);
    let coverage = list["recipe"]["evaluation"]["calibration"]["coverage"]
        .as_f64()
        .unwrap();
    assert!((0.85..=0.95).contains(&coverage), "{coverage}");
    // Without targets: every active benchmark predictor (none here), then LEMUR CIFAR-10 under
    // its typical recipe.
    let (status, body) =
        predict(&app, json!({"onnx_base64": [b64(&sample_onnx("AlexNet"))]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    assert_eq!(body["results"][0]["target"]["dataset"], "cifar-10");
}

#[tokio::test]
async fn uncovered_targets_are_422_naming_the_covered_ones() {
    let app = spawn_app().await;
    let onnx = b64(&sample_onnx("AlexNet"));
    for target in [
        json!({"dataset": "imagenet-21k"}),
        json!({"dataset": "cifar-10", "metric": "bleu"}),
        json!({"benchmark": "nb201", "dataset": "cifar10"}),
    ] {
        let resp = app
            .client
            .post(app.url("/v1/predictions"))
            .json(&json!({"onnx_base64": [onnx], "targets": [target]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("covered targets") && detail.contains("lemur/cifar-10/acc"),
            "{detail}"
        );
    }
    let (status, body) = predict(
        &app,
        json!({"onnx_base64": [onnx], "targets": [{"dataset": "cifar-10", "epoch": -1}]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
}

/// A tiny ONNX model: `[1, features]` → `op` (an unknown custom op unless a known one) → out.
fn tiny_model(op: &str, domain: &str, features: i64) -> Vec<u8> {
    let value = |name: &str, dims: &[i64]| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(*d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let weight = TensorProto {
        name: Some("w".into()),
        dims: vec![features, 7],
        data_type: Some(1),
        float_data: vec![0.5; (features * 7) as usize],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("tiny".into()),
            node: vec![
                NodeProto {
                    op_type: Some("MatMul".into()),
                    input: vec!["x".into(), "w".into()],
                    output: vec!["h".into()],
                    ..Default::default()
                },
                NodeProto {
                    op_type: Some(op.into()),
                    domain: Some(domain.into()),
                    input: vec!["h".into()],
                    output: vec!["y".into()],
                    attribute: vec![AttributeProto {
                        name: Some("alpha".into()),
                        f: Some(0.1),
                        r#type: Some(1),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
            initializer: vec![weight],
            input: vec![value("x", &[1, features])],
            output: vec![value("y", &[1, 7])],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

#[tokio::test]
async fn answers_stay_bounded_for_adversarial_graphs_and_recipes() {
    let app = spawn_app().await;
    let graphs = [
        fixture("zoo/vit_b_16.legacy.onnx"),
        fixture("onnx-samples/squeezenet1_0.full.onnx"),
        tiny_model("LeakyRelu", "", 3),
        tiny_model("NoSuchOp", "com.example", 100_000),
    ];
    let recipes = [
        json!({"dataset": "cifar-10", "epoch": 1}),
        json!({"dataset": "cifar-100", "epoch": 1_000_000, "hyperparameters": {"lr": 1e9, "batch": 1, "momentum": 50, "dropout": 2}}),
        json!({"dataset": "celeba-gender", "epoch": 0.001, "hyperparameters": {"lr": 1e-12, "transform": "no-such-transform"}}),
        json!({"dataset": "svhn", "hyperparameters": {"transform": "norm_4096_flip"}}),
    ];
    let (status, body) = predict(
        &app,
        json!({"onnx_base64": graphs.iter().map(|g| b64(g)).collect::<Vec<_>>(), "targets": recipes}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), recipes.len());
    for (r, result) in results.iter().enumerate() {
        let predictions = result["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), graphs.len());
        for p in predictions {
            assert_bounded(p);
            if r == 1 || r == 2 {
                // Recipes far outside anything measured are out of the domain, and say so.
                assert_eq!(p["domain"], "out", "{p}");
            }
        }
        if r == 1 {
            assert!(
                result["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w.as_str().unwrap().contains("outside the range")),
                "{result}"
            );
        }
    }
    // An unusual graph under a typical recipe: wider than AlexNet's in-domain interval.
    let width = |p: &Value| p["interval"][1].as_f64().unwrap() - p["interval"][0].as_f64().unwrap();
    let (_, body) = predict(
        &app,
        json!({"onnx_base64": [b64(&graphs[3]), b64(&sample_onnx("AlexNet"))], "targets": [{"dataset": "cifar-10", "epoch": 1}]}),
    )
    .await;
    let ps = &body["results"][0]["predictions"];
    assert_ne!(ps[0]["domain"], "in", "{ps}");
    assert_eq!(ps[1]["domain"], "in", "{ps}");
    assert!(width(&ps[0]) > width(&ps[1]), "{ps}");
}
