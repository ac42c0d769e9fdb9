//! Calibration through HTTP: compute (JSON and .npz), SVG, store/get, listing and analyses.

use serde_json::{Value, json};

use crate::common::{TestApp, fixture, spawn_app};

/// torchmetrics' docstring example: ECE 0.2 with 3 left-closed bins.
fn docstring_case() -> Value {
    json!({
        "probs": [[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]],
        "labels": [0, 1, 2, 0],
        "bins": [3],
    })
}

async fn post_json(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn put_json(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let resp = app
        .client
        .put(app.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

#[tokio::test]
async fn compute_follows_each_binning_convention() {
    let app = spawn_app().await;
    let mut body = docstring_case();
    body["binning"] = json!("left_closed");
    let (status, report) = post_json(&app, "/v1/calibration/compute", &body).await;
    assert_eq!(status, 200, "{report}");
    assert!(close(&report["pre"]["ece"]["3"], 0.2), "{report}");
    assert!(close(&report["pre"]["mce"]["3"], 0.233_333_333_333_333_3));
    assert!(close(&report["pre"]["accuracy"], 0.5));
    assert!(report.get("post").is_none());

    // The boundary case where the conventions disagree: confidences 0.5, 0.5, 0.9, 2 bins.
    let boundary = |rule: &str| json!({"probs": [[0.5, 0.5], [0.5, 0.5], [0.1, 0.9]], "labels": [0, 0, 0], "bins": [2], "binning": rule});
    let (_, right) = post_json(&app, "/v1/calibration/compute", &boundary("right_closed")).await;
    let (_, left) = post_json(&app, "/v1/calibration/compute", &boundary("left_closed")).await;
    assert!(
        close(&right["pre"]["ece"]["2"], 0.633_333_333_333_333_3),
        "{right}"
    );
    assert!(
        close(&left["pre"]["ece"]["2"], 0.033_333_333_333_333_3),
        "{left}"
    );
}

#[tokio::test]
async fn temperature_scaling_reports_post_figures_and_keeps_accuracy() {
    let app = spawn_app().await;
    // Over-confident logits: 200 samples, 4 classes, correct 60 % of the time.
    let mut logits = Vec::new();
    let mut labels = Vec::new();
    for i in 0..200usize {
        let predicted = i % 4;
        let label = if i % 5 < 3 {
            predicted
        } else {
            (predicted + 1) % 4
        };
        let mut row = vec![0.0; 4];
        row[predicted] = 8.0;
        logits.push(row);
        labels.push(label);
    }
    let body = json!({"logits": logits, "labels": labels, "temperature_scaling": {"calibration_fraction": 0.3, "seed": 7}});
    let (status, report) = post_json(&app, "/v1/calibration/compute", &body).await;
    assert_eq!(status, 200, "{report}");
    let t = report["temperature"].as_f64().unwrap();
    assert!(t > 1.0, "over-confident logits need T > 1, got {t}");
    assert_eq!(report["pre"]["accuracy"], report["post"]["accuracy"]);
    assert!(
        report["post"]["ece"]["15"].as_f64().unwrap()
            < report["pre"]["ece"]["15"].as_f64().unwrap()
    );
    assert_eq!(
        report["pre"]["ece"].as_object().unwrap().len(),
        9,
        "default bin counts"
    );

    let svg = app
        .client
        .post(app.url("/v1/calibration/compute?format=svg"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let text = svg.text().await.unwrap();
    assert!(text.starts_with("<svg") && text.contains("after temperature scaling"));
}

#[tokio::test]
async fn npz_uploads_are_accepted() {
    let app = spawn_app().await;
    use npyz::WriterBuilder;
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut npz = npyz::npz::NpzWriter::new(&mut buffer);
        let probs: Vec<f32> = vec![
            0.25, 0.20, 0.55, 0.55, 0.05, 0.40, 0.10, 0.30, 0.60, 0.90, 0.05, 0.05,
        ];
        npz.array::<f32>("probs", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[4, 3])
            .begin_nd()
            .unwrap()
            .extend(probs)
            .unwrap();
        npz.array::<i64>("labels", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[4])
            .begin_nd()
            .unwrap()
            .extend(vec![0i64, 1, 2, 0])
            .unwrap();
    }
    let resp = app
        .client
        .post(app.url("/v1/calibration/compute?bins=3&binning=left_closed"))
        .header("content-type", "application/octet-stream")
        .body(buffer.into_inner())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    // float32 inputs: equal to the float64 answer to float32 precision.
    assert!(
        (report["pre"]["ece"]["3"].as_f64().unwrap() - 0.2).abs() < 1e-6,
        "{report}"
    );
}

#[tokio::test]
async fn invalid_predictions_are_422_problems() {
    let app = spawn_app().await;
    for (body, needle) in [
        (
            json!({"probs": [[0.5, 0.5]], "labels": [2]}),
            "out of range",
        ),
        (
            json!({"probs": [[0.5, 0.5], [0.2, 0.8]], "labels": [0]}),
            "labels",
        ),
        (json!({"probs": [[0.9, 0.9]], "labels": [0]}), "sum"),
        (json!({"labels": [0]}), "exactly one"),
        (
            json!({"probs": [[0.5, 0.5]], "logits": [[1.0, 2.0]], "labels": [0]}),
            "exactly one",
        ),
        (
            json!({"probs": [[0.5, 0.5], [0.1]], "labels": [0, 1]}),
            "row 1",
        ),
        (
            json!({"probs": [[0.5, 0.5]], "labels": [0], "bins": [0]}),
            "bin",
        ),
    ] {
        let resp = app
            .client
            .post(app.url("/v1/calibration/compute"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{problem} lacks {needle}"
        );
    }
    let resp = app
        .client
        .post(app.url("/v1/calibration/compute"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = app
        .client
        .post(app.url("/v1/calibration/compute"))
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "garbage .npz");
}

/// Uploads the four sample models; returns their ids.
async fn architectures(app: &TestApp) -> Vec<i64> {
    let mut ids = Vec::new();
    for name in [
        "resnet18.legacy.onnx",
        "mobilenet_v2.legacy.onnx",
        "squeezenet1_0.full.onnx",
        "mobilenet_v3_small.dynamo.onnx",
    ] {
        let family = if name.starts_with("mobilenet") {
            "mobilenet"
        } else {
            "other"
        };
        let (_, body) = app
            .upload(
                fixture(&format!("onnx-samples/{name}")),
                &format!("?family={family}"),
            )
            .await;
        ids.push(body["id"].as_i64().unwrap());
    }
    ids
}

#[tokio::test]
async fn stored_calibration_round_trips() {
    let app = spawn_app().await;
    let ids = architectures(&app).await;
    let mut body = docstring_case();
    body["temperature_scaling"] = json!({"calibration_fraction": 0.5});
    let (status, stored) = put_json(
        &app,
        &format!("/v1/architectures/{}/calibration/cifar10", ids[0]),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["source"], "computed");
    let (status, got) = app
        .get_json(&format!("/v1/architectures/{}/calibration/cifar10", ids[0]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["pre"], stored["pre"]);
    assert_eq!(got["post"], stored["post"]);
    assert_eq!(got["temperature"], stored["temperature"]);
    assert!(got["reliability"]["pre"].is_array());

    let given = json!({"pre": {"ece": {"15": 0.05, "100": 0.07}, "nll": 0.3}, "post": {"ece": {"15": 0.02}}, "temperature": 1.4, "accuracy": 0.93});
    let (status, stored) = put_json(
        &app,
        &format!("/v1/architectures/{}/calibration/cifar100", ids[0]),
        &given,
    )
    .await;
    assert_eq!((status, &stored["source"]), (200, &json!("given")));
    let (_, got) = app
        .get_json(&format!(
            "/v1/architectures/{}/calibration/cifar100",
            ids[0]
        ))
        .await;
    assert_eq!(got["pre"]["ece"], json!({"15": 0.05, "100": 0.07}));
    assert_eq!(
        (got["accuracy"].as_f64(), got["temperature"].as_f64()),
        (Some(0.93), Some(1.4))
    );
    let (_, datasets) = app
        .get_json(&format!("/v1/architectures/{}/calibration", ids[0]))
        .await;
    assert_eq!(datasets, json!(["cifar10", "cifar100"]));

    let (status, _) = app
        .get_json(&format!(
            "/v1/architectures/{}/calibration/imagenet",
            ids[0]
        ))
        .await;
    assert_eq!(status, 404);
    let (status, _) = put_json(&app, "/v1/architectures/987654/calibration/cifar10", &given).await;
    assert_eq!(status, 404);
    let (status, _) = put_json(
        &app,
        &format!("/v1/architectures/{}/calibration/x", ids[0]),
        &json!({"pre": {"ece": {"0": 0.1}}}),
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn listing_and_analyses_answer_the_benchmark_questions() {
    let app = spawn_app().await;
    let ids = architectures(&app).await;
    // ECE@15 per architecture on two datasets (same ranking), and accuracy in reverse order.
    for (rank, id) in ids.iter().enumerate() {
        let r = rank as f64;
        for (dataset, scale) in [("cifar10", 1.0), ("cifar100", 2.0)] {
            let figures = json!({
                "pre": {"ece": {"15": 0.01 * (r + 1.0) * scale, "100": 0.02 * (4.0 - r)}, "nll": 0.1 * (r + 1.0)},
                "post": {"ece": {"15": 0.005 * (r + 1.0) * scale}},
                "accuracy": 0.9 - 0.1 * r,
            });
            let (status, _) = put_json(
                &app,
                &format!("/v1/architectures/{id}/calibration/{dataset}"),
                &figures,
            )
            .await;
            assert_eq!(status, 200);
        }
    }
    let (status, rows) = app
        .get_json("/v1/calibration?dataset=cifar10&metric=ece&bins=15")
        .await;
    assert_eq!(status, 200);
    let listed: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["architecture_id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, ids, "best calibrated first");
    let (_, rows) = app
        .get_json("/v1/calibration?dataset=cifar10&family=mobilenet&sort=-value")
        .await;
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let (_, rows) = app
        .get_json("/v1/calibration?metric=nll&min_accuracy=0.75")
        .await;
    assert_eq!(
        rows.as_array().unwrap().len(),
        4,
        "2 architectures × 2 datasets"
    );

    let (_, a) = app
        .get_json("/v1/calibration/analysis?kind=datasets&metric=ece&bins=15")
        .await;
    let c = &a["correlations"][0];
    assert_eq!(
        (c["a"].as_str(), c["b"].as_str(), c["n"].as_i64()),
        (Some("cifar10"), Some("cifar100"), Some(4))
    );
    assert_eq!(
        (c["kendall_tau_b"].as_f64(), c["spearman"].as_f64()),
        (Some(1.0), Some(1.0))
    );

    let (_, a) = app
        .get_json("/v1/calibration/analysis?kind=bins&metric=ece&dataset=cifar10")
        .await;
    let c = &a["correlations"][0];
    assert_eq!(
        (
            c["a"].as_str(),
            c["b"].as_str(),
            c["kendall_tau_b"].as_f64()
        ),
        (Some("ece@15"), Some("ece@100"), Some(-1.0))
    );

    let (_, a) = app
        .get_json("/v1/calibration/analysis?kind=accuracy&dataset=cifar10&bins=15")
        .await;
    let ece = a["correlations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["a"] == "ece@15")
        .unwrap();
    assert_eq!(
        ece["kendall_tau_b"].as_f64(),
        Some(-1.0),
        "higher ECE, lower accuracy here"
    );

    let (_, a) = app
        .get_json("/v1/calibration/analysis?kind=metrics&dataset=cifar10&bins=15")
        .await;
    assert_eq!(
        a["correlations"].as_array().unwrap().len(),
        1,
        "ece@15 vs nll"
    );

    let (_, a) = app
        .get_json("/v1/calibration/analysis?kind=temperature&metric=ece&bins=15&dataset=cifar10")
        .await;
    let groups = a["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert!(
        groups
            .iter()
            .all(|g| g["improved_fraction"] == 1.0 && g["mean_change"].as_f64().unwrap() < 0.0)
    );
    let (_, a) = app
        .get_json("/v1/calibration/analysis?kind=temperature&group_by=op&op=DepthwiseConv")
        .await;
    assert!(
        a["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "0")
    );

    let (_, a) = app
        .get_json("/v1/calibration/analysis?kind=best&dataset=cifar100&limit=2")
        .await;
    let best = a["best"].as_array().unwrap();
    assert_eq!(best.len(), 2);
    assert_eq!(best[0]["architecture_id"].as_i64(), Some(ids[0]));
    assert_eq!(best[0]["op_counts"]["Conv"], 20);

    for bad in [
        "/v1/calibration/analysis?kind=vibes",
        "/v1/calibration/analysis?kind=bins",
        "/v1/calibration?metric=nope",
        "/v1/calibration?stage=during",
    ] {
        let (status, _) = app.get_json(bad).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn benchmark_csv_import_maps_rows_to_nb201_cells() {
    let app = spawn_app().await;
    let path = crate::common::fixture_path("calibration/tss_cifar10.csv");
    let progress = std::sync::Arc::new(archdb::import::NoProgress);
    let summary = archdb::import::run(
        &app.pool,
        archdb::import::ImportKind::CalibrationCsv,
        &path,
        progress.clone(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows_added, 6);
    assert_eq!(
        summary.details["architectures_added"], 6,
        "cells generated when the NB201 import has not run"
    );
    // 6 cells × (2 stages × 5 metrics × 9 bins + 2 × 5 scalar metrics) figures.
    let figures: i64 = sqlx::query_scalar("select count(*) from calibration_metrics")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(figures, 6 * (2 * 5 * 9 + 2 * 5));
    let (_, rows) = app
        .get_json("/v1/calibration?dataset=cifar10&metric=ece&bins=15")
        .await;
    let values: Vec<f64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values.len(), 6);
    assert!((values[0] - 0.02 * 1.015).abs() < 1e-9, "{values:?}");
    assert!(
        rows[0]["accuracy"].as_f64().unwrap() < 1.0,
        "percent accuracy stored as a fraction"
    );
    let (_, a) = app
        .get_json("/v1/calibration/analysis?kind=temperature&metric=ece&bins=15&dataset=cifar10")
        .await;
    assert_eq!(a["groups"][0]["improved_fraction"], 1.0);
    // A re-import replaces the figures instead of adding.
    archdb::import::run(
        &app.pool,
        archdb::import::ImportKind::CalibrationCsv,
        &path,
        progress,
    )
    .await
    .unwrap();
    let again: i64 = sqlx::query_scalar("select count(*) from calibration_metrics")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(again, figures);
}
