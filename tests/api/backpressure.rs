//! Backpressure: the per-caller rate limit on heavy requests, the checks and the per-caller cap
//! when training jobs are queued, the write scope of cancel and activate, and heavy work that
//! stops when its request times out.

use archdb::http::ServeConfig;
use serde_json::{Value, json};

use crate::common::spawn_app_with;

const ADMIN: &str = "admin-token-for-backpressure";
const READER: &str = "read-token-for-backpressure";

/// Status, `Retry-After` and JSON body.
async fn send(request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let resp = request.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn heavy_requests_are_rate_limited_per_caller() {
    let app = spawn_app_with(ServeConfig {
        api_token: Some(ADMIN.into()),
        rate_per_sec: 0.01,
        rate_burst: 2,
        ..Default::default()
    })
    .await;
    // A heavy request the aggregate cache cannot answer (its hits skip the gate): a prediction.
    let heavy = || {
        app.client
            .post(app.url("/v1/predictions"))
            .json(&json!({"nb201": [0]}))
    };
    for _ in 0..2 {
        let (status, _, body) = send(heavy()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, retry, problem) = send(heavy()).await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["type"], "urn:archdb:problem:too-many-requests");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("address:127.0.0.1"),
        "{problem}"
    );
    // One request every 100 s: the next is up to 100 s away (less the time the first two took).
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((90..=100).contains(&retry), "Retry-After: {retry}");
    // Light requests are not counted.
    let (status, _, _) = send(app.client.get(app.url("/v1/architectures"))).await;
    assert_eq!(status, 200);
    // The admin token has a bucket of its own.
    for _ in 0..2 {
        let (status, _, body) = send(heavy().bearer_auth(ADMIN)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, _) = send(heavy().bearer_auth(ADMIN)).await;
    assert_eq!(status, 429);
}

fn nb201_target() -> Value {
    json!({"benchmark": "nb201", "dataset": "cifar10", "metric": "acc", "epoch": 200, "split": "test"})
}

fn train_request(target: Value) -> Value {
    json!({"target": target, "train_size": 10, "config": {"epochs": 1}})
}

#[tokio::test]
async fn jobs_are_checked_capped_per_caller_and_cancelled_only_by_writers() {
    let app = spawn_app_with(ServeConfig {
        api_token: Some(ADMIN.into()),
        read_token: Some(READER.into()),
        max_queued_jobs: 2,
        ..Default::default()
    })
    .await;
    crate::benchmarks::import_nb201(&app).await;
    let queue = |body: Value, token: &str| {
        app.client
            .post(app.url("/v1/predictors"))
            .bearer_auth(token)
            .json(&body)
    };

    // A target without measured architectures: 422 naming the covered ones.
    let missing = json!({"benchmark": "nb201", "dataset": "imagenet-1k", "metric": "acc"});
    let (status, _, problem) = send(queue(train_request(missing), ADMIN)).await;
    assert_eq!(status, 422, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("nb201/imagenet-1k/acc"), "{detail}");
    assert!(detail.contains("nb201/cifar10/acc epochs"), "{detail}");
    let wrong_epoch =
        json!({"benchmark": "nb201", "dataset": "cifar10", "metric": "acc", "epoch": 7});
    let (status, _, problem) = send(queue(train_request(wrong_epoch), ADMIN)).await;
    assert_eq!(status, 422, "{problem}");

    // The read token cannot queue.
    let (status, _, _) = send(queue(train_request(nb201_target()), READER)).await;
    assert_eq!(status, 403);

    // Two pending jobs per caller, then 429.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, _, body) = send(queue(train_request(nb201_target()), ADMIN)).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["job_id"].as_i64().unwrap());
    }
    let (status, _, problem) = send(queue(train_request(nb201_target()), ADMIN)).await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["type"], "urn:archdb:problem:too-many-requests");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("token:admin has 2"),
        "{problem}"
    );
    let owners: Vec<Option<String>> = sqlx::query_scalar("select owner from jobs order by id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        owners,
        [Some("token:admin".into()), Some("token:admin".into())]
    );

    // Cancel and activate need the write scope.
    let cancel = |id: i64, token: &str| {
        app.client
            .post(app.url(&format!("/v1/jobs/{id}/cancel")))
            .bearer_auth(token)
    };
    let (status, _, _) = send(cancel(ids[0], READER)).await;
    assert_eq!(status, 403);
    let (status, _, job) = send(
        app.client
            .get(app.url(&format!("/v1/jobs/{}", ids[0])))
            .bearer_auth(READER),
    )
    .await;
    assert_eq!((status, job["state"].as_str()), (200, Some("queued")));
    let (status, _, problem) = send(
        app.client
            .post(app.url("/v1/predictors/1/activate"))
            .bearer_auth(READER),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    let (status, _, job) = send(cancel(ids[0], ADMIN)).await;
    assert_eq!((status, job["state"].as_str()), (200, Some("cancelled")));
    // A cancelled job no longer counts.
    let (status, _, body) = send(queue(train_request(nb201_target()), ADMIN)).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn without_a_token_the_job_cap_is_per_client_address() {
    let app = spawn_app_with(ServeConfig {
        max_queued_jobs: 1,
        ..Default::default()
    })
    .await;
    crate::benchmarks::import_nb201(&app).await;
    let queue = || {
        app.client
            .post(app.url("/v1/predictors"))
            .json(&train_request(nb201_target()))
    };
    let (status, _, body) = send(queue()).await;
    assert_eq!(status, 202, "{body}");
    let (status, _, problem) = send(queue()).await;
    assert_eq!(status, 429, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("address:127.0.0.1 has 1"),
        "{problem}"
    );
}

/// A batch that would keep the one CPU thread busy long after its request timed out is stopped
/// when the timeout drops the request: the next request on the same thread is answered.
#[tokio::test]
async fn cpu_work_stops_when_its_request_times_out() {
    let app = spawn_app_with(ServeConfig {
        request_timeout_secs: 2,
        cpu_threads: 1,
        heavy_limit: 1,
        ..Default::default()
    })
    .await;
    let predict = |cells: Vec<u32>| {
        app.client
            .post(app.url("/v1/predictions"))
            .json(&json!({"nb201": cells}))
    };
    // The bundled recipe predictor answers once it is parsed (at start, in the background).
    let started = std::time::Instant::now();
    loop {
        let (status, _, body) = send(predict(vec![0])).await;
        if status == 200 {
            assert_eq!(body["results"][0]["predictor_kind"], "recipe", "{body}");
            break;
        }
        assert!(started.elapsed().as_secs() < 60, "{status}: {body}");
    }
    // Generating and predicting 10,000 cells takes far longer than 2 s on one thread.
    let (status, _, problem) = send(predict((0..10_000).collect())).await;
    assert_eq!(status, 408, "{problem}");
    // Had the batch gone on, this would wait behind it on the one thread, and time out too.
    let (status, _, body) = send(predict(vec![1, 2, 3])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0]["predictions"].as_array().unwrap().len(),
        3
    );
}
