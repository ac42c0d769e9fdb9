//! Hostile clients (issue #14, part 1): small requests built to cost memory or time, or to hit a
//! panic, replayed against the real application on loopback. Each must be answered with a 4xx
//! problem within a second, with the process's peak memory growing by less than 300 MB, and
//! leave nothing stored. The hostile files are generated here, not committed.

use std::time::{Duration, Instant};

use archdb::http::ServeConfig;
use archdb::onnx::proto::{GraphProto, ModelProto, NodeProto, TensorProto};
use npyz::WriterBuilder;
use prost::Message;
use serde_json::json;

use crate::common::{TestApp, spawn_app, spawn_app_with};
use crate::models::{self, graph_attr, int, int64s, node, value, weight};

/// Peak resident growth allowed per request.
const MAX_GROWTH_BYTES: u64 = 300 * 1024 * 1024;

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    kb * 1024
}

/// Sends a request and checks the answer: `status`, a problem document whose detail contains
/// `needle`, within a second, and peak RSS growth (the server runs in this process) under
/// [`MAX_GROWTH_BYTES`].
async fn assert_refused(request: reqwest::RequestBuilder, status: u16, needle: &str) {
    assert_refused_within(request, status, needle, Duration::from_secs(1)).await;
}

/// [`assert_refused`] with another time limit.
async fn assert_refused_within(
    request: reqwest::RequestBuilder,
    status: u16,
    needle: &str,
    within: Duration,
) {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let before = proc_status("VmRSS");
    let started = Instant::now();
    let resp = request.send().await.expect("request");
    let answered = started.elapsed();
    let code = resp.status().as_u16();
    let content_type = resp.headers()["content-type"].clone();
    let problem: serde_json::Value = resp.json().await.expect("a JSON problem");
    let growth = proc_status("VmHWM").saturating_sub(before);
    eprintln!(
        "{code} in {answered:?}, peak RSS +{:.1} MB: {needle}",
        growth as f64 / 1048576.0
    );
    assert_eq!(code, status, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(needle),
        "detail `{detail}` lacks `{needle}`"
    );
    assert!(answered < within, "answered after {answered:?}: {detail}");
    assert!(
        growth < MAX_GROWTH_BYTES,
        "peak RSS grew by {} MB: {detail}",
        growth >> 20
    );
}

fn upload(app: &TestApp, bytes: Vec<u8>) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/v1/architectures"))
        .header("content-type", "application/octet-stream")
        .body(bytes)
}

async fn assert_nothing_stored(app: &TestApp) {
    let rows: i64 = sqlx::query_scalar("select count(*) from architectures")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A protobuf length-delimited field: key, varint length, payload.
fn field(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    for mut v in [number << 3 | 2, payload.len() as u64] {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out.extend_from_slice(payload);
    out
}

/// A model whose graph (ModelProto field 7) is the given encoded GraphProto, at IR version 8.
fn model_with_graph(graph: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x08, 0x08];
    bytes.extend(field(7, graph));
    bytes
}

#[tokio::test]
async fn oversized_onnx_files_are_refused_before_decoding() {
    let app = spawn_app().await;

    // One million empty NodeProtos (graph field 1): 2 MB, +229 MB when decoded whole.
    let nodes = field(1, &[]).repeat(1_000_000);
    let bytes = model_with_graph(&nodes);
    assert!(bytes.len() < 2_100_000);
    assert_refused(
        upload(&app, bytes),
        413,
        "1000000 nodes (in all graphs and functions); the limit is 200000",
    )
    .await;

    // 300,000 empty initializers (graph field 5).
    let mut graph = field(1, &node("Relu", &["x"], &["y"]).encode_to_vec());
    graph.extend(field(5, &[]).repeat(300_000));
    assert_refused(
        upload(&app, model_with_graph(&graph)),
        413,
        "300000 initializers",
    )
    .await;

    // One tensor with four million packed dims (TensorProto field 1): 4 MB.
    let mut graph = field(1, &node("Relu", &["x"], &["y"]).encode_to_vec());
    graph.extend(field(5, &field(1, &vec![1u8; 4_000_000])));
    assert_refused(
        upload(&app, model_with_graph(&graph)),
        413,
        "4000000 tensor and shape dims",
    )
    .await;

    // If nodes nested 20 deep.
    let mut inner = GraphProto {
        node: vec![node("Relu", &["x"], &["y"])],
        ..Default::default()
    };
    for _ in 0..20 {
        let mut wrapper = node("If", &["x"], &["y"]);
        wrapper.attribute.push(graph_attr("then_branch", inner));
        inner = GraphProto {
            node: vec![wrapper],
            ..Default::default()
        };
    }
    let nested = models::model(17, inner.node, &[1, 3, 8, 8], &[1, 3, 8, 8], vec![]);
    assert_refused(
        upload(&app, models::encode(&nested)),
        413,
        "21 levels of nested subgraphs; the limit is 16",
    )
    .await;
    assert_nothing_stored(&app).await;
}

/// `n` links of Relu → Expand → Sigmoid where each Expand also reads the previous Expand: every
/// bypassed Expand merges all upstream producers, so edges grow as n²/2.
fn merging_chain(n: usize) -> ModelProto {
    let mut nodes = Vec::new();
    let (mut prev, mut expanded) = ("x".to_string(), "x".to_string());
    for i in 0..n {
        let (r, e) = (format!("r{i}"), format!("e{i}"));
        let s = if i + 1 == n {
            "y".to_string()
        } else {
            format!("s{i}")
        };
        nodes.push(node("Relu", &[&prev], &[&r]));
        nodes.push(node("Expand", &[&r, &expanded], &[&e]));
        nodes.push(node("Sigmoid", &[&e], &[&s]));
        prev = s;
        expanded = e;
    }
    models::model(17, nodes, &[1, 3, 8, 8], &[1, 3, 8, 8], vec![])
}

#[tokio::test]
async fn merged_bypass_producers_cannot_blow_up_the_edges() {
    let app = spawn_app().await;
    // Two thousand links: 250 KB (141 KB with shorter names), once 2,005,001 edges.
    let bytes = models::encode(&merging_chain(2_000));
    assert!(bytes.len() < 300_000, "{} bytes", bytes.len());
    assert_refused(upload(&app, bytes), 413, "computation-graph edges").await;
    assert_nothing_stored(&app).await;
    // A short chain is within the budget (4 per node) and stored with its n(n+1)/2-ish edges.
    let (status, body) = app.upload(models::encode(&merging_chain(10)), "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["num_nodes"], 22, "{body}");
    assert_eq!(body["num_edges"], 76, "{body}");
}

/// A model `x[1,3,8,8] → nodes → y` at opset 17 with `initializer`.
fn small_model(nodes: Vec<NodeProto>, initializer: Vec<TensorProto>) -> Vec<u8> {
    models::encode(&models::model(
        17,
        nodes,
        &[1, 3, 8, 8],
        &[1, 3, 8, 8],
        initializer,
    ))
}

#[tokio::test]
async fn implausible_shapes_and_attributes_are_422() {
    let app = spawn_app().await;
    let huge = 1i64 << 40;
    // A declared input dim of 2^40 (7 KB once stored with params = MACs = i64::MAX).
    let mut m = models::model(
        17,
        vec![node("Relu", &["x"], &["y"])],
        &[1, 3, 8, 8],
        &[1, 3, 8, 8],
        vec![],
    );
    m.graph.as_mut().unwrap().input = vec![value("x", &[1, huge, huge, 1])];
    assert_refused(upload(&app, models::encode(&m)), 422, "implausible shape").await;

    // An initializer of 2^40 × 2^40 elements (params past i64).
    let mut conv = node("Conv", &["x", "w"], &["y"]);
    conv.attribute.push(models::ints("kernel_shape", &[1, 1]));
    let bytes = small_model(vec![conv], vec![weight("w", &[huge, huge, 1, 1])]);
    assert_refused(upload(&app, bytes), 422, "initializer 'w'").await;

    // A negative dim.
    let bytes = small_model(
        vec![node("Add", &["x", "b"], &["y"])],
        vec![weight("b", &[-3])],
    );
    assert_refused(upload(&app, bytes), 422, "implausible shape [-3]").await;

    // Shape arithmetic that overflows into 2^60 elements: ConstantOfShape([2^30, 2^30]).
    let bytes = small_model(
        vec![
            node("ConstantOfShape", &["shape"], &["big"]),
            node("Add", &["x", "big"], &["y"]),
        ],
        vec![int64s("shape", &[1 << 30, 1 << 30])],
    );
    assert_refused(upload(&app, bytes), 422, "implausible shape").await;

    // DepthToSpace with blocksize 0 (a division by zero: 500 before).
    let mut d2s = node("DepthToSpace", &["x"], &["y"]);
    d2s.attribute.push(int("blocksize", 0));
    assert_refused(
        upload(&app, small_model(vec![d2s], vec![])),
        422,
        "`blocksize` of node 'DepthToSpace_y' (DepthToSpace) must be positive, got 0",
    )
    .await;
    // Conv with stride 0.
    let mut conv = node("Conv", &["x", "w"], &["y"]);
    conv.attribute.push(models::ints("strides", &[1, 0]));
    let bytes = small_model(vec![conv], vec![weight("w", &[3, 3, 3, 3])]);
    assert_refused(upload(&app, bytes), 422, "`strides`").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn shape_arithmetic_on_empty_constants_does_not_panic() {
    let app = spawn_app().await;
    // Slice with a negative step over an empty constant, and Range over empty constants: both
    // panicked (500). They are legal graphs whose shapes resolve to empty or unknown.
    let empty = int64s("empty", &[]);
    let slice = node(
        "Slice",
        &["empty", "starts", "ends", "axes", "steps"],
        &["sliced"],
    );
    let range = node("Range", &["empty", "empty", "empty"], &["ranged"]);
    let bytes = small_model(
        vec![slice, range, node("Relu", &["x"], &["y"])],
        vec![
            empty,
            int64s("starts", &[-1]),
            int64s("ends", &[i64::MIN]),
            int64s("axes", &[0]),
            int64s("steps", &[-1]),
        ],
    );
    let (status, body) = app.upload(bytes, "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["num_nodes"], 3, "{body}");
}

/// A deflated `.npz` with a one-hot `probs` of N×K float32 and N labels.
fn one_hot_npz(n: u64, k: u64) -> Vec<u8> {
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut npz = npyz::npz::NpzWriter::new(&mut buffer);
        let mut probs = npz
            .array::<f32>("probs", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[n, k])
            .begin_nd()
            .unwrap();
        let mut row = vec![0f32; k as usize];
        row[0] = 1.0;
        for _ in 0..n {
            probs.extend(row.iter().copied()).unwrap();
        }
        probs.finish().unwrap();
        npz.array::<i64>("labels", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[n])
            .begin_nd()
            .unwrap()
            .extend(std::iter::repeat_n(0i64, n as usize))
            .unwrap();
    }
    buffer.into_inner()
}

#[tokio::test]
async fn calibration_requests_are_capped_before_the_work() {
    let app = spawn_app().await;
    let compute = || app.client.post(app.url("/v1/calibration/compute"));
    // 1,000 bin counts from 99,001 to 100,000: 26 KB, +666 MB before.
    let bins: Vec<u64> = (99_001..=100_000).collect();
    let body = json!({"probs": [[0.3, 0.7], [0.6, 0.4]], "labels": [1, 0], "bins": bins});
    assert_refused(compute().json(&body), 422, "at most 64 bin counts").await;
    // Few bin counts but too many bins in all.
    let body = json!({"probs": [[0.3, 0.7]], "labels": [1], "bins": [100000, 100000, 100]});
    assert_refused(compute().json(&body), 422, "200100 bins in all").await;

    // A deflated one-hot npz of 200,000 × 100: 20 million scores from a few hundred KB.
    let npz = one_hot_npz(200_000, 100);
    assert!(npz.len() < 1 << 20, "{} bytes", npz.len());
    let request = compute()
        .header("content-type", "application/octet-stream")
        .body(npz);
    assert_refused(request, 413, "200000×100 scores; at most 5000000").await;

    // JSON rows past N·K = 5,000,000 are refused while parsing, not after: 5,000,001 zeros in
    // 2,500,001 rows of two (one Vec per row would cost ~150 MB more). Parsing 15 MB of JSON
    // takes seconds in a debug build (milliseconds in release): the time limit is 30 s here.
    let mut text = String::from("{\"labels\": [0], \"probs\": [");
    text.push_str(&"[0,0],".repeat(2_500_000));
    text.push_str("[0,0]]}");
    let request = compute()
        .header("content-type", "application/json")
        .body(text);
    let limit = Duration::from_secs(30);
    assert_refused_within(request, 422, "more than 5000000 scores", limit).await;

    // Bodies over the endpoint's 16 MiB.
    let request = compute()
        .header("content-type", "application/json")
        .body(vec![b' '; 17 << 20]);
    assert_refused(request, 413, "length limit").await;
    // The endpoint still works.
    let resp = compute()
        .json(&json!({"probs": [[0.3, 0.7], [0.6, 0.4]], "labels": [1, 0], "bins": [2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_default_body_limit_is_64_mib() {
    let app = spawn_app().await;
    let request = upload(&app, vec![0u8; (64 << 20) + 1]);
    assert_refused(request, 413, "length limit").await;
}

#[tokio::test]
async fn endpoint_limits_never_raise_the_server_limit() {
    let app = spawn_app_with(ServeConfig {
        max_upload_bytes: 64 * 1024,
        ..Default::default()
    })
    .await;
    // Calibration allows 16 MiB, but not more than the server's 64 KiB.
    let request = app
        .client
        .post(app.url("/v1/calibration/compute"))
        .header("content-type", "application/json")
        .body(vec![b' '; 100 * 1024]);
    assert_refused(request, 413, "length limit").await;
}
