//! Accuracy prediction end to end on real NB201 cells: training as a queued job run by the
//! worker, the registry and its evaluation, predictions for ONNX uploads / stored architectures /
//! NB201 cells, similarity search, hot-swapping the active predictor under load, a job that
//! survives a killed worker, cancellation, and malformed requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use archdb::worker::WorkerOptions;
use prost::Message;
use serde_json::{Value, json};

use crate::common::{TestApp, spawn_app};

/// Small settings: the test is about the plumbing; convergence is `predict`'s unit test and
/// `training_on_real_cells_generalises` below.
pub(crate) fn tiny() -> Value {
    json!({"ensemble": 2, "epochs": 12, "head_epochs": 4, "clusters": 2,
           "contrastive": {"epochs": 1}, "encoder": {"hidden": 16, "layers": 3, "embedding": 16}})
}

pub(crate) fn target() -> Value {
    json!({"benchmark": "nb201", "dataset": "cifar10", "metric": "acc", "epoch": 200, "split": "test"})
}

pub(crate) async fn with_nb201() -> TestApp {
    let app = spawn_app().await;
    crate::benchmarks::import_nb201(&app).await;
    app
}

pub(crate) fn once() -> WorkerOptions {
    WorkerOptions {
        lease_secs: 30.0,
        poll_secs: 0.1,
        once: true,
        name: Some("test-worker".into()),
        trainer: Default::default(),
    }
}

pub(crate) async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Queues a training job, runs the worker until the queue is empty, returns the predictor id.
async fn train(app: &TestApp, seed: u64) -> i64 {
    let (status, queued) = post(
        app,
        "/v1/predictors",
        json!({"target": target(), "train_size": 30, "seed": seed, "config": tiny()}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let job = work(app, &queued, &once()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    job["predictor_id"].as_i64().unwrap()
}

/// Runs the queue with `options` until it is empty; the queued job as `GET /v1/jobs/{id}` shows it.
pub(crate) async fn work(app: &TestApp, queued: &Value, options: &WorkerOptions) -> Value {
    archdb::worker::run(&app.pool, options)
        .await
        .expect("worker");
    app.get_json(&format!("/v1/jobs/{}", queued["job_id"]))
        .await
        .1
}

async fn predictions(app: &TestApp, body: Value) -> (u16, Value) {
    post(app, "/v1/predictions", body).await
}

/// Predictions once `predicate` holds and a graph predictor answers: a worker's activation
/// reaches the server through NOTIFY, a moment after the job ended (the bundled recipe
/// predictor answers at once).
async fn served(app: &TestApp, body: Value, predicate: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, answer) = predictions(app, body.clone()).await;
        if status == 200 && answer["results"][0]["predictor_kind"] == "graph" && predicate(&answer)
        {
            return answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{status}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The NB201 network of a cell as ONNX bytes.
fn nb201_onnx(arch: &str) -> Vec<u8> {
    archdb::generate::nb201_model(arch, 10)
        .unwrap()
        .encode_to_vec()
}

#[tokio::test]
async fn trains_registers_and_predicts() {
    let app = with_nb201().await;
    // No NB201 predictor yet: the target is not covered (the bundled recipe predictor is).
    let (status, body) = predictions(
        &app,
        json!({"nb201": [0], "targets": [{"benchmark": "nb201"}]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("lemur/cifar-10/acc"),
        "{body}"
    );

    let id = train(&app, 1).await;
    let (_, list) = app.get_json("/v1/predictors").await;
    let p = &list["predictors"][0];
    assert_eq!(p["id"], id);
    assert_eq!(
        p["active"], true,
        "the first predictor of a target is activated"
    );
    let e = &p["evaluation"];
    assert_eq!(e["split"]["train_size"], 30);
    // 43 cells → 35 distinct graphs here (isomorphic cells share one); 30 train, 5 test.
    let measured: i64 =
        sqlx::query_scalar("select count(*) from predictor_index where predictor_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(e["split"]["test_size"].as_i64().unwrap(), measured - 30);
    for key in ["kendall_tau_b", "spearman", "mae", "train_seconds"] {
        assert!(e[key].as_f64().is_some_and(f64::is_finite), "{key}: {e}");
    }
    assert_eq!(e["device"], "cpu");
    assert_eq!(e["seed"], 1);

    served(&app, json!({"nb201": [0]}), |_| true).await;
    // A raw ONNX upload of a cell that is not stored.
    let arch = "|nor_conv_1x1~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|";
    let bytes = nb201_onnx(arch);
    let ingested = archdb::ingest::ingest(bytes.clone().into(), Default::default()).unwrap();
    let resp = app
        .client
        .post(app.url("/v1/predictions?nearest=3"))
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let result = &body["results"][0];
    assert_eq!(result["predictor_id"], id);
    assert_eq!(result["target"], target());
    let one = &result["predictions"][0];
    let accuracy = one["accuracy"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&accuracy), "{one}");
    assert!(
        one["std"].as_f64().unwrap() > 0.0,
        "two members disagree a little: {one}"
    );
    assert!(one["ood_score"].as_f64().unwrap() >= 0.0);
    // Inside the metric's range, with a 90 % interval around it and a domain verdict.
    assert_eq!(result["unit"], "percent");
    assert_eq!(result["predictor_kind"], "graph");
    let [lo, hi] = [
        one["interval"][0].as_f64().unwrap(),
        one["interval"][1].as_f64().unwrap(),
    ];
    assert!(
        (0.0..=accuracy).contains(&lo) && (accuracy..=100.0).contains(&hi) && lo < hi,
        "{one}"
    );
    assert!(["in", "edge", "out"].contains(&one["domain"].as_str().unwrap()));
    // The default targets end with the recipe predictor's LEMUR CIFAR-10 answer, in fractions.
    let last = body["results"].as_array().unwrap().last().unwrap();
    assert_eq!(last["predictor_kind"], "recipe");
    assert_eq!(last["unit"], "fraction");
    assert_eq!(one["params"], ingested.graph.summary.params);
    assert_eq!(one["macs"], ingested.graph.summary.macs);
    let nearest = one["nearest"].as_array().unwrap();
    assert_eq!(nearest.len(), 3);
    let distances: Vec<f64> = nearest
        .iter()
        .map(|n| n["distance"].as_f64().unwrap())
        .collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]), "{distances:?}");

    // A deleted architecture is never named again: not as a neighbour, not as similar.
    let (_, cell) = app.get_json("/v1/benchmarks/nb201/0").await;
    let neighbour = nearest
        .iter()
        .map(|n| n["architecture_id"].as_i64().unwrap())
        .find(|&id| Some(id) != cell["architecture_id"].as_i64())
        .unwrap();
    let deleted = app
        .client
        .delete(app.url(&format!("/v1/architectures/{neighbour}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (_, again) = predictions(
        &app,
        json!({"onnx_base64": [base64_encode(&bytes)], "targets": [{"benchmark": "nb201"}]}),
    )
    .await;
    let ids: Vec<i64> = again["results"][0]["predictions"][0]["nearest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["architecture_id"].as_i64().unwrap())
        .collect();
    assert!(!ids.is_empty() && !ids.contains(&neighbour), "{ids:?}");
    let (status, similar) = app
        .get_json(&format!(
            "/v1/architectures/{}/similar?k=100",
            cell["architecture_id"]
        ))
        .await;
    assert_eq!(status, 200, "{similar}");
    assert!(
        similar["similar"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["architecture_id"] != neighbour),
        "{similar}"
    );

    // Stored cells by index and arch string, and by id: answered from the index.
    let (_, cell) = app.get_json("/v1/benchmarks/nb201/0").await;
    let stored_id = cell["architecture_id"].as_i64().unwrap();
    let (status, body) = predictions(
        &app,
        json!({"architecture_ids": [stored_id], "nb201": [0, cell["arch_str"]], "onnx_base64": [
            base64_encode(&nb201_onnx(cell["arch_str"].as_str().unwrap()))]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let all = body["results"][0]["predictions"].as_array().unwrap();
    assert_eq!(all.len(), 4);
    for (i, p) in all.iter().enumerate() {
        assert_eq!(p["input"], i);
        assert_eq!(
            p["architecture_id"], stored_id,
            "an upload of a stored graph is recognised"
        );
        assert_eq!(p["accuracy"], all[0]["accuracy"]);
        // Its own architecture is not its neighbour.
        assert!(
            p["nearest"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["architecture_id"] != stored_id)
        );
    }
    let cached: f64 = sqlx::query_scalar(
        "select accuracy from predictor_index where predictor_id = $1 and architecture_id = $2",
    )
    .bind(id)
    .bind(stored_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(all[0]["accuracy"].as_f64().unwrap(), cached);

    // Similar architectures by embedding.
    let (status, similar) = app
        .get_json(&format!("/v1/architectures/{stored_id}/similar?k=4"))
        .await;
    assert_eq!(status, 200, "{similar}");
    let near = similar["similar"].as_array().unwrap();
    assert_eq!(near.len(), 4);
    assert!(
        near.iter()
            .all(|n| n["architecture_id"] != stored_id && n["measured_accuracy"].is_number())
    );
    let (status, _) = app.get_json("/v1/architectures/999999/similar").await;
    assert_eq!(status, 404);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `archdb worker --trainer torch`: the job trains through python/archdb_torch and registers
/// like any other (skipped, saying so, without `ARCHDB_TORCH_PYTHON`; see tests/torch_parity.rs).
#[tokio::test]
async fn a_torch_worker_trains_and_registers() {
    use archdb::training::{Trainer, TrainerOptions};
    use std::io::Write;
    let Some(python) = std::env::var("ARCHDB_TORCH_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        std::io::stderr()
            .write_all(
                concat!(
                    "SKIPPED torch worker test: set ARCHDB_TORCH_PYTHON to run it",
                    "\n"
                )
                .as_bytes(),
            )
            .unwrap();
        return;
    };
    let app = with_nb201().await;
    let (status, queued) = post(
        &app,
        "/v1/predictors",
        json!({"target": target(), "train_size": 30, "seed": 2, "config": tiny()}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let options = WorkerOptions {
        trainer: TrainerOptions {
            trainer: Trainer::Torch,
            python: python.into(),
            torch_package: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python"),
        },
        ..once()
    };
    let job = work(&app, &queued, &options).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let (_, list) = app.get_json("/v1/predictors").await;
    let p = &list["predictors"][0];
    assert_eq!(p["id"], job["predictor_id"]);
    let e = &p["evaluation"];
    assert_eq!(e["trainer"], "torch", "{e}");
    assert_eq!(e["device"], "cpu", "{e}");
    assert_eq!(e["split"]["train_size"], 30);
    for key in ["kendall_tau_b", "spearman", "mae"] {
        assert!(e[key].as_f64().is_some_and(f64::is_finite), "{key}: {e}");
    }
    // Served like a predictor archdb trained.
    let body = served(&app, json!({"nb201": [0]}), |_| true).await;
    assert!(body.to_string().contains("accuracy"), "{body}");
}

#[tokio::test]
async fn malformed_prediction_requests_get_problem_details() {
    let app = with_nb201().await;
    train(&app, 2).await;
    let cases: Vec<(Value, u16)> = vec![
        (json!({}), 422),
        (json!({"nb201": [15625]}), 422),
        (
            json!({"nb201": ["|not_an_op~0|+|none~0|none~1|+|none~0|none~1|none~2|"]}),
            422,
        ),
        (json!({"architecture_ids": [987654321]}), 404),
        (json!({"onnx_base64": ["%%% not base64"]}), 400),
        (json!({"onnx_base64": [base64_encode(b"not a model")]}), 400),
        (json!({"architecture_ids": vec![1; 10_001]}), 422),
        (json!({"onnx_base64": vec!["AA=="; 1_001]}), 422),
        (json!({"nb201": [0], "surprise": true}), 422),
        (
            json!({"nb201": [0], "targets": [{"dataset": "imagenet"}]}),
            422,
        ),
        (json!({"architecture_ids": "1"}), 422),
    ];
    for (body, expected) in cases {
        let resp = app
            .client
            .post(app.url("/v1/predictions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(status, expected, "{body}: {}", resp.text().await.unwrap());
        assert_eq!(content_type, "application/problem+json");
    }
    for (body, content_type) in [
        (b"garbage".to_vec(), "application/octet-stream"),
        (b"{\"nb201\": [0".to_vec(), "application/json"),
    ] {
        let resp = app
            .client
            .post(app.url("/v1/predictions"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }
    served(&app, json!({"nb201": [0]}), |_| true).await; // the server still answers
    let resp = app
        .client
        .post(app.url("/v1/predictions?nearest=51"))
        .json(&json!({"nb201": [0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Training and registry requests.
    for (body, expected) in [
        (
            json!({"target": target(), "config": {"epochs": "many"}}),
            422,
        ),
        (
            json!({"target": target(), "config": {"no_such_setting": 1}}),
            422,
        ),
        (json!({"target": target(), "train_size": 1}), 422),
        (json!({"target": {"benchmark": "nb201"}}), 422),
    ] {
        let (status, problem) = post(&app, "/v1/predictors", body.clone()).await;
        assert_eq!(status, expected, "{body}: {problem}");
    }
    let jobs: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1, "rejected requests queue nothing");
    assert_eq!(app.get_json("/v1/jobs/424242").await.0, 404);
    assert_eq!(app.get_json("/v1/predictors/424242").await.0, 404);
    assert_eq!(
        post(&app, "/v1/predictors/424242/activate", json!({}))
            .await
            .0,
        404
    );
    assert_eq!(post(&app, "/v1/jobs/424242/cancel", json!({})).await.0, 404);
}

#[tokio::test]
async fn activation_hot_swaps_without_dropping_requests() {
    // Four clients as fast as they can: no per-caller rate limit here.
    let app = crate::common::spawn_app_with(archdb::http::ServeConfig {
        rate_per_sec: 0.0,
        ..Default::default()
    })
    .await;
    crate::benchmarks::import_nb201(&app).await;
    let first = train(&app, 3).await;
    let second = train(&app, 4).await;
    assert_ne!(first, second);
    served(&app, json!({"nb201": [1]}), |b| {
        b["results"][0]["predictor_id"] == first
    })
    .await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url, stop) = (app.client.clone(), app.url("/v1/predictions"), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = client
                    .post(&url)
                    .json(&json!({"nb201": [1, 2, 3], "targets": [{"dataset": "cifar10"}]}))
                    .send()
                    .await
                    .expect("no dropped connection");
                assert_eq!(resp.status(), 200);
                let body: Value = resp.json().await.unwrap();
                seen.push(body["results"][0]["predictor_id"].as_i64().unwrap());
            }
            seen
        }));
    }
    for id in [second, first, second] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (status, body) = post(&app, &format!("/v1/predictors/{id}/activate"), json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["active"], true);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = Vec::new();
    for c in clients {
        seen.extend(c.await.expect("client task"));
    }
    assert!(seen.len() > 8, "{} requests", seen.len());
    assert!(
        seen.contains(&first) && seen.contains(&second),
        "both predictors served"
    );
    assert_eq!(*seen.last().unwrap(), second);
    let active: Vec<i64> = sqlx::query_scalar("select id from predictors where active")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(active, [second], "one active predictor per target");
}

pub(crate) async fn wait_for(app: &TestApp, job: i64, what: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (_, body) = app.get_json(&format!("/v1/jobs/{job}")).await;
        if what(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "job {job}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn worker_process(url: &str, name: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_archdb"))
        .args([
            "worker",
            "--lease-secs",
            "1.5",
            "--poll-secs",
            "0.2",
            "--name",
            name,
        ])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("archdb worker")
}

#[tokio::test]
async fn a_job_survives_a_killed_worker_and_can_be_cancelled() {
    let app = with_nb201().await;
    let url = app.database_url();
    let mut config = tiny();
    config["epochs"] = json!(400);
    let (_, queued) = post(
        &app,
        "/v1/predictors",
        json!({"target": target(), "train_size": 30, "config": config}),
    )
    .await;
    let job = queued["job_id"].as_i64().unwrap();

    let mut doomed = worker_process(&url, "doomed");
    wait_for(&app, job, |j| {
        j["state"] == "running" && j["progress"]["stage"] == "Regression"
    })
    .await;
    doomed.kill().unwrap();
    doomed.wait().unwrap();

    let mut second = worker_process(&url, "second");
    let running = wait_for(&app, job, |j| j["worker"] == "second").await;
    assert_eq!(running["state"], "running");
    assert_eq!(
        running["attempts"], 2,
        "claimed again after the lease ran out"
    );

    // Cancelling the running job stops it at its next epoch.
    let (status, _) = post(&app, &format!("/v1/jobs/{job}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    let ended = wait_for(&app, job, |j| j["state"] != "running").await;
    assert_eq!(ended["state"], "cancelled", "{ended}");
    assert!(ended["predictor_id"].is_null());

    // The same worker then finishes a small job.
    let (_, queued) = post(
        &app,
        "/v1/predictors",
        json!({"target": target(), "train_size": 30, "config": tiny()}),
    )
    .await;
    let done = wait_for(&app, queued["job_id"].as_i64().unwrap(), |j| {
        j["state"] != "queued" && j["state"] != "running"
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["worker"], "second");
    let predictors: i64 = sqlx::query_scalar("select count(*) from predictors")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(predictors, 1, "the cancelled job registered nothing");
}

/// `(arch string, CIFAR-10 200-epoch test accuracy)` of every NB201 cell, official order, from
/// the table shipped in `data/`.
fn nb201_accuracies() -> Vec<(String, f64)> {
    use std::io::BufRead;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/nasbench201/nb201_tss_200ep_test.csv.gz");
    let file = std::fs::File::open(path).expect("data/nasbench201");
    std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file))
        .lines()
        .skip(1)
        .map(|line| {
            let line = line.unwrap();
            let fields: Vec<&str> = line.split(',').collect();
            (fields[1].to_string(), fields[2].parse().unwrap())
        })
        .collect()
}

/// Training converges on real data: 150 random NB201 cells (seed 0), tested on 500 others.
/// The floor is well under what this configuration reaches (τ 0.0 would be chance) and the
/// training-set fit must be clearly better than the test fit's floor.
#[test]
fn training_on_real_cells_generalises() {
    use archdb::db::architectures::StoredGraph;
    use archdb::predict::{TrainConfig, TrainSample};
    use rand::SeedableRng;
    use rand::seq::SliceRandom;

    let table = nb201_accuracies();
    assert_eq!(table.len(), 15_625);
    let mut order: Vec<usize> = (0..table.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0));
    let config: TrainConfig = archdb::training::with_overrides(
        &TrainConfig::default(),
        &json!({"ensemble": 1, "epochs": 40, "head_epochs": 10, "clusters": 2,
                "contrastive": {"epochs": 2}}),
    )
    .unwrap();
    let sample = |i: usize, labelled: bool| {
        let model = archdb::generate::nb201_model(&table[i].0, 10).unwrap();
        let ingested = archdb::ingest::ingest_model(model, Default::default()).unwrap();
        let graph = StoredGraph::from(&ingested.graph);
        TrainSample {
            graph: Arc::new(config.prepare(graph.as_cg()).unwrap()),
            accuracy: labelled.then_some(table[i].1),
        }
    };
    let train: Vec<TrainSample> = order[..150].iter().map(|&i| sample(i, true)).collect();
    let test: Vec<TrainSample> = order[150..650].iter().map(|&i| sample(i, false)).collect();
    let predictor = archdb::predict::train(&train, &config, &mut |_| true).unwrap();
    let predict = |set: &[TrainSample]| -> Vec<f64> {
        let graphs: Vec<_> = set.iter().map(|s| &*s.graph).collect();
        predictor
            .predict_prepared(&graphs)
            .unwrap()
            .iter()
            .map(|p| p.accuracy)
            .collect()
    };
    let truth: Vec<f64> = order[150..650].iter().map(|&i| table[i].1).collect();
    let scores = archdb::stats::Scores::compute(&predict(&test), &truth);
    eprintln!("held-out: {scores:?}");
    assert!(scores.kendall_tau > 0.45, "held-out τ {scores:?}");
    assert!(scores.spearman > 0.6, "held-out ρ {scores:?}");
    assert!(scores.mae < 6.0, "held-out MAE {scores:?}");
}

#[tokio::test]
async fn the_bundled_predictor_is_registered_once_and_answers() {
    let app = with_nb201().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/predictor");
    let registered = archdb::training::register_bundled(&app.pool, &dir)
        .await
        .unwrap();
    let artifacts = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "safetensors")
        })
        .count();
    assert_eq!(registered.len(), artifacts);
    let again = archdb::training::register_bundled(&app.pool, &dir)
        .await
        .unwrap();
    assert!(again.is_empty(), "only into a registry without predictors");
    let (_, list) = app.get_json("/v1/predictors").await;
    let mut names: Vec<&str> = list["predictors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "nb-macro-cifar10-bundled",
            "nb201-cifar10-bundled",
            "nb201-cifar10-e12-bundled",
            "nb201-cifar100-bundled",
            "nb201-imagenet16-120-bundled"
        ]
    );
    let p = list["predictors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "nb201-cifar10-bundled")
        .unwrap()
        .clone();
    let ids = [p["id"].as_i64().unwrap()];
    assert_eq!(p["active"], true);
    assert_eq!(p["target"], target());
    // The evaluation travels in the artifact's header.
    assert_eq!(p["evaluation"]["split"]["train_size"], 1563);
    assert!(p["evaluation"]["kendall_tau_b"].as_f64().unwrap() > 0.7);
    // Indexed: every measured cell graph of the fixture.
    let indexed: i64 =
        sqlx::query_scalar("select count(*) from predictor_index where predictor_id = $1")
            .bind(ids[0])
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let measured =
        archdb::db::predictors::measured(&app.pool, &serde_json::from_value(target()).unwrap())
            .await
            .unwrap();
    assert_eq!(indexed as usize, measured.len());
    // Served once the NOTIFY has reached the server's registry; the best cell of the fixture
    // is predicted above the worst.
    let body = served(
        &app,
        json!({"architecture_ids": [
            measured.iter().max_by(|a, b| a.value.total_cmp(&b.value)).unwrap().architecture_id,
            measured.iter().min_by(|a, b| a.value.total_cmp(&b.value)).unwrap().architecture_id],
            "targets": [{"benchmark": "nb201", "dataset": "cifar10"}]}),
        |_| true,
    )
    .await;
    let p = &body["results"][0]["predictions"];
    assert!(
        p[0]["accuracy"].as_f64().unwrap() > p[1]["accuracy"].as_f64().unwrap(),
        "{p}"
    );
}

/// NB201 has 12- and 200-epoch figures: with a predictor for each, the target's epoch picks
/// one (the longest-trained by default; the nearest, with a warning, for an epoch neither is
/// trained for).
#[tokio::test]
async fn the_epoch_asked_picks_the_benchmark_predictor() {
    let app = with_nb201().await;
    let mut ids = Vec::new();
    for epoch in [12, 200] {
        let mut t = target();
        t["epoch"] = json!(epoch);
        let (status, queued) = post(
            &app,
            "/v1/predictors",
            json!({"target": t, "train_size": 30, "seed": 0, "config": tiny()}),
        )
        .await;
        assert_eq!(status, 202, "{queued}");
        let job = work(&app, &queued, &once()).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        ids.push(job["predictor_id"].as_i64().unwrap());
    }
    let asked = |epoch: Option<u32>| {
        let mut t = json!({"benchmark": "nb201", "dataset": "cifar10"});
        if let Some(e) = epoch {
            t["epoch"] = json!(e);
        }
        t
    };
    let body = served(
        &app,
        json!({"nb201": [0],
               "targets": [asked(Some(12)), asked(Some(200)), asked(None), asked(Some(40))]}),
        // Both activations have reached this server (each arrives on its own NOTIFY).
        |answer| {
            answer["results"][0]["predictor_id"] == ids[0]
                && answer["results"][1]["predictor_id"] == ids[1]
        },
    )
    .await;
    let results = body["results"].as_array().unwrap();
    let served: Vec<(i64, i64)> = results
        .iter()
        .map(|r| {
            (
                r["predictor_id"].as_i64().unwrap(),
                r["target"]["epoch"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        served,
        [(ids[0], 12), (ids[1], 200), (ids[1], 200), (ids[0], 12)],
        "{body}"
    );
    assert!(
        results[0]["warnings"]
            .as_array()
            .is_none_or(|w| w.is_empty()),
        "{body}"
    );
    assert!(
        results[3]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("epoch 40"),
        "{body}"
    );
}

#[tokio::test]
async fn finetuning_adapts_a_predictor_to_a_new_target() {
    let app = with_nb201().await;
    let parent = train(&app, 5).await;
    let cifar100 = json!({"benchmark": "nb201", "dataset": "cifar100", "metric": "acc",
                          "epoch": 200, "split": "xtest"});
    let (status, queued) = post(
        &app,
        &format!("/v1/predictors/{parent}/finetune"),
        json!({"target": cifar100, "samples": 20, "seed": 3, "config": {"epochs": 30}}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let job = work(&app, &queued, &once()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "finetune");
    let (_, child) = app
        .get_json(&format!("/v1/predictors/{}", job["predictor_id"]))
        .await;
    assert_eq!(child["parent_id"], parent);
    assert_eq!(child["target"], cifar100);
    assert_eq!(child["active"], true, "first predictor of its target");
    let e = &child["evaluation"];
    assert_eq!(e["split"]["train_size"], 20);
    assert_eq!(e["finetuned_from"], parent);
    // CIFAR-100 accuracies are ~20 points below CIFAR-10's: the recalibrated heads must land
    // much closer than the parent did.
    let before = e["before_finetune"]["mae"].as_f64().unwrap();
    let after = e["mae"].as_f64().unwrap();
    assert!(after < before / 2.0, "MAE {before} → {after}");
    // Both targets are served side by side; `targets` picks one.
    let body = served(
        &app,
        json!({"nb201": [0], "targets": [{"dataset": "cifar100"}]}),
        |_| true,
    )
    .await;
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    assert_eq!(body["results"][0]["predictor_id"], job["predictor_id"]);
    let (_, both) = predictions(&app, json!({"nb201": [0]})).await;
    // Both benchmark predictors, then the recipe predictor's LEMUR CIFAR-10 default.
    assert_eq!(both["results"].as_array().unwrap().len(), 3);
    assert_eq!(both["results"][2]["predictor_kind"], "recipe");
    // Fine-tuning a missing predictor, or with too few samples, is refused up front.
    assert_eq!(
        post(
            &app,
            "/v1/predictors/999/finetune",
            json!({"target": cifar100})
        )
        .await
        .0,
        404
    );
    let (status, _) = post(
        &app,
        &format!("/v1/predictors/{parent}/finetune"),
        json!({"target": cifar100, "samples": 1}),
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn a_job_that_cannot_train_fails_with_its_reason() {
    let app = with_nb201().await;
    // A target without measured architectures is refused at enqueue, naming the covered ones.
    let (status, refused) = post(
        &app,
        "/v1/predictors",
        json!({"target": {"benchmark": "nb201", "dataset": "no-such-dataset", "metric": "acc"}}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("cifar10"),
        "{refused}"
    );
    // One whose measurements are gone by the time a worker takes it fails with the reason.
    let (status, queued) = post(
        &app,
        "/v1/predictors",
        json!({"target": target(), "train_size": 30, "config": tiny()}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    sqlx::query("delete from results where benchmark = 'nb201'")
        .execute(&app.pool)
        .await
        .unwrap();
    let job = work(&app, &queued, &once()).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "a deterministic failure is not retried");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("0 measured architectures"),
        "{job}"
    );
    assert!(job["predictor_id"].is_null());
    // Cancelling a finished job changes nothing.
    let (status, again) = post(
        &app,
        &format!("/v1/jobs/{}/cancel", queued["job_id"]),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["state"], "failed");
}
