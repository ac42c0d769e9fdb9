//! Bad input gets a clear 4xx problem+json, leaves nothing behind, and the server keeps serving.

use archdb::http::ServeConfig;
use archdb::onnx::proto::NodeProto;

use crate::common::{TestApp, fixture, spawn_app, spawn_app_with};
use crate::models::{self, node};

/// A model `x → nodes → y` at opset 17.
fn model(nodes: Vec<NodeProto>) -> Vec<u8> {
    models::encode(&models::model(
        17,
        nodes,
        &[1, 3, 8, 8],
        &[1, 3, 8, 8],
        vec![],
    ))
}

async fn assert_problem(app: &TestApp, bytes: Vec<u8>, status: u16, detail_contains: &str) {
    let resp = app
        .client
        .post(app.url("/v1/architectures"))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(problem["status"], status);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_contains),
        "detail `{detail}` lacks `{detail_contains}`"
    );
}

async fn assert_nothing_stored(app: &TestApp) {
    let rows: i64 = sqlx::query_scalar("select (select count(*) from architectures) + (select count(*) from architecture_graphs) + (select count(*) from architecture_onnx)")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn garbage_truncated_and_empty_bodies_are_400() {
    let app = spawn_app().await;
    assert_problem(&app, vec![], 400, "empty").await;
    assert_problem(
        &app,
        b"definitely not a protobuf \xff\xff\xff".to_vec(),
        400,
        "not a valid ONNX model",
    )
    .await;
    assert_problem(&app, b"{\"json\": true}".to_vec(), 400, "ONNX").await;
    let full = fixture("onnx-samples/resnet18.legacy.onnx");
    for cut in [1, 10, full.len() / 3, full.len() / 2, full.len() - 1] {
        assert_problem(&app, full[..cut].to_vec(), 400, "").await;
    }
    // A valid protobuf that is not a model.
    assert_problem(&app, vec![0x08, 0x01], 400, "").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn cycles_and_dangling_inputs_are_422() {
    let app = spawn_app().await;
    let cyclic = model(vec![
        node("Add", &["x", "b"], &["a"]),
        node("Relu", &["a"], &["b"]),
        node("Relu", &["a"], &["y"]),
    ]);
    assert_problem(&app, cyclic, 422, "cycle").await;
    let dangling = model(vec![node("Add", &["x", "ghost"], &["y"])]);
    assert_problem(&app, dangling, 422, "ghost").await;
    let twice = model(vec![
        node("Relu", &["x"], &["y"]),
        node("Sigmoid", &["x"], &["y"]),
    ]);
    assert_problem(&app, twice, 422, "more than one node").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn node_and_body_limits_are_413() {
    let app = spawn_app_with(ServeConfig {
        max_nodes: 10,
        max_upload_bytes: 64 * 1024,
        ..Default::default()
    })
    .await;
    let mut nodes = Vec::new();
    let mut prev = "x".to_string();
    for i in 0..11 {
        let out = if i == 10 {
            "y".to_string()
        } else {
            format!("t{i}")
        };
        nodes.push(node("Relu", &[&prev], &[&out]));
        prev = out;
    }
    assert_problem(&app, model(nodes), 413, "limit is 10").await;
    let resp = app
        .client
        .post(app.url("/v1/architectures"))
        .body(vec![0u8; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn writes_need_the_token_when_one_is_set() {
    let app = spawn_app_with(ServeConfig {
        api_token: Some("s3cret".into()),
        ..Default::default()
    })
    .await;
    let bytes = fixture("onnx-samples/resnet18.legacy.onnx");
    let resp = app
        .client
        .post(app.url("/v1/architectures"))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let resp = app
        .client
        .post(app.url("/v1/architectures"))
        .bearer_auth("wrong")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_nothing_stored(&app).await;
    let resp = app
        .client
        .post(app.url("/v1/architectures"))
        .bearer_auth("s3cret")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = app
        .client
        .get(app.url("/v1/architectures"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .client
        .delete(app.url("/v1/architectures/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn unknown_ids_routes_and_bad_parameters_are_4xx_problems() {
    let app = spawn_app().await;
    for (path, status) in [
        ("/v1/architectures/999999", 404),
        ("/v1/architectures/abc", 400),
        ("/v1/architectures?limit=0", 400),
        ("/v1/architectures?min_params=lots", 400),
        ("/v1/architectures?cursor=nonsense", 400),
        ("/v1/nothing-here", 404),
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
