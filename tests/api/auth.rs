//! Tokens with scopes, the cross-site-request guard, the safe bind, reserved alias namespaces
//! and the dump cap.

use archdb::http::ServeConfig;
use reqwest::Method;
use serde_json::Value;

use crate::common::{TestApp, fixture, spawn_app, spawn_app_with};

const ADMIN: &str = "admin-token-for-tests";
const READER: &str = "read-token-for-tests";

async fn app_with_tokens() -> TestApp {
    spawn_app_with(ServeConfig {
        api_token: Some(ADMIN.into()),
        read_token: Some(READER.into()),
        ..Default::default()
    })
    .await
}

/// Every non-GET operation of the served document, with its path parameters filled in.
async fn writes(app: &TestApp) -> Vec<(Method, String)> {
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        let concrete = path.replace("{dataset}", "cifar10");
        let concrete = fill_params(&concrete);
        for method in item.as_object().unwrap().keys() {
            if method != "get" && method != "parameters" {
                ops.push((method.to_uppercase().parse().unwrap(), concrete.clone()));
            }
        }
    }
    ops
}

/// Replaces every remaining `{param}` with 1.
fn fill_params(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(&rest[..open]);
        out.push('1');
        rest = &rest[close + 1..];
    }
    out + rest
}

async fn call(app: &TestApp, method: &Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = app
        .client
        .request(method.clone(), app.url(path))
        .header("content-type", "application/json")
        .body("{}");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_write_in_the_served_document_needs_its_scope() {
    let app = app_with_tokens().await;
    let ops = writes(&app).await;
    assert!(ops.len() >= 9, "only {} write operations served", ops.len());
    let compute_only = [
        (Method::POST, "/v1/predictions"),
        (Method::POST, "/v1/calibration/compute"),
    ];
    for (method, path) in &ops {
        let what = format!("{method} {path}");
        let (status, problem) = call(&app, method, path, None).await;
        assert_eq!(status, 401, "{what} without a token: {problem}");
        assert_eq!(problem["type"], "urn:archdb:problem:unauthorized", "{what}");
        let (status, _) = call(&app, method, path, Some("not-a-token")).await;
        assert_eq!(status, 401, "{what} with a wrong token");
        let (status, problem) = call(&app, method, path, Some(READER)).await;
        if compute_only.contains(&(method.clone(), path.as_str())) {
            assert!(
                status != 401 && status != 403,
                "{what} is compute-only but answered {status} to the read token: {problem}"
            );
        } else {
            assert_eq!(status, 403, "{what} with the read token: {problem}");
            assert_eq!(problem["type"], "urn:archdb:problem:forbidden", "{what}");
        }
    }
    for (method, path) in &ops {
        let (status, problem) = call(&app, method, path, Some(ADMIN)).await;
        assert!(
            status != 401 && status != 403,
            "{method} {path} answered {status} to the admin token: {problem}"
        );
    }
}

#[tokio::test]
async fn reads_need_the_read_token_when_one_is_set() {
    let app = app_with_tokens().await;
    let get = |path: &'static str, token: Option<&'static str>| {
        let mut request = app.client.get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/v1/architectures", None).await, 401);
    assert_eq!(get("/v1/architectures", Some("nope")).await, 401);
    assert_eq!(get("/v1/architectures", Some(READER)).await, 200);
    assert_eq!(get("/v1/architectures", Some(ADMIN)).await, 200);
    // Probes and the documents stay open.
    assert_eq!(get("/healthz", None).await, 200);
    assert_eq!(get("/openapi.json", None).await, 200);

    // The read token can predict (compute-only) but not upload.
    let onnx = fixture("onnx-samples/resnet18.legacy.onnx");
    let upload = app
        .client
        .post(app.url("/v1/architectures"))
        .header("content-type", "application/octet-stream")
        .bearer_auth(READER)
        .body(onnx.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 403);
    let predict = app
        .client
        .post(app.url("/v1/predictions"))
        .header("content-type", "application/octet-stream")
        .bearer_auth(READER)
        .body(onnx)
        .send()
        .await
        .unwrap();
    let status = predict.status().as_u16();
    assert!(
        status != 401 && status != 403,
        "prediction answered {status}"
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from architectures")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn cross_site_simple_requests_cannot_write() {
    let app = spawn_app().await;
    // A fresh client: the harness's sends X-Requested-With.
    let browser = reqwest::Client::new();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = browser
            .post(app.url("/v1/predictors/1/activate"))
            .header("origin", "http://evil.example")
            .body("{}");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 415, "{content_type:?}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    let upload = browser
        .post(app.url("/v1/architectures"))
        .header("content-type", "text/plain")
        .body(fixture("onnx-samples/resnet18.legacy.onnx"))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 415);
    let stored: i64 = sqlx::query_scalar("select count(*) from architectures")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    // A script says who it is; the request then reaches the handler (no predictor 1: 404).
    let resp = browser
        .post(app.url("/v1/predictors/1/activate"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn uploads_cannot_claim_the_importers_alias_namespaces() {
    let app = spawn_app().await;
    let onnx = fixture("onnx-samples/resnet18.legacy.onnx");
    for source in [
        "nb201",
        "nb201-arch",
        "NB201",
        "nb-macro",
        "lemur",
        "naslib:nasbench201",
    ] {
        let (status, problem) = app.upload(onnx.clone(), &format!("?source={source}")).await;
        assert_eq!(status, 422, "{source}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("reserved"));
    }
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(onnx.clone()))
        .text("source", "nb201");
    let resp = app
        .client
        .post(app.url("/v1/architectures"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let aliases: i64 = sqlx::query_scalar("select count(*) from architecture_aliases")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(aliases, 0);
    let (status, _) = app.upload(onnx, "?source=my-lab&name=resnet18").await;
    assert_eq!(status, 201);
}

/// Adds `n` LEMUR-like result rows.
async fn add_results(app: &TestApp, n: i64) {
    sqlx::query(
        "insert into results (benchmark, source_key, task, dataset, metric, nn, epoch, value, import_id)
         select 'lemur', 'k' || i, 'img-classification', 'cifar-10', 'acc', 'net-' || (i % 50), i % 5, random(), 0
         from generate_series(1, $1) as i",
    )
    .bind(n)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn dumps_are_capped_and_more_needs_a_token() {
    let app = spawn_app_with(ServeConfig {
        api_token: Some(ADMIN.into()),
        dump_rows: 5,
        ..Default::default()
    })
    .await;
    add_results(&app, 12).await;
    let rows = |query: &'static str, token: Option<&'static str>| {
        let mut request = app.client.get(app.url(&format!("/v1/results{query}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            let cap = resp
                .headers()
                .get("x-archdb-row-cap")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = resp.json().await.unwrap();
            (status, body.as_array().map(Vec::len), cap)
        }
    };
    assert_eq!(rows("", None).await, (200, Some(5), Some("5".into())));
    assert_eq!(rows("?max_rows=3", None).await, (200, Some(3), None));
    assert_eq!(rows("?max_rows=7", None).await.0, 401);
    assert_eq!(rows("?max_rows=0", None).await.0, 401);
    assert_eq!(rows("?max_rows=7", Some(ADMIN)).await, (200, Some(7), None));
    assert_eq!(
        rows("?max_rows=0", Some(ADMIN)).await,
        (200, Some(12), None)
    );
}

#[test]
fn serve_refuses_an_open_non_loopback_address() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_archdb"))
        .args(["serve", "--addr", "0.0.0.0:0", "--no-seed"])
        .env_remove("ARCHDB_API_TOKEN")
        .env_remove("ARCHDB_READ_TOKEN")
        // One line even when a backtrace is asked for.
        .env("RUST_BACKTRACE", "1")
        .env(
            "DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/never-reached",
        )
        .output()
        .expect("run archdb");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without a token"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let config =
        |addr: &str, admin: Option<&str>, read: Option<&str>, insecure: bool| ServeConfig {
            addr: addr.parse().unwrap(),
            api_token: admin.map(Into::into),
            read_token: read.map(Into::into),
            insecure_no_token: insecure,
            ..Default::default()
        };
    assert!(config("127.0.0.1:8080", None, None, false).check().is_ok());
    assert!(config("[::1]:8080", None, None, false).check().is_ok());
    assert!(config("0.0.0.0:8080", None, None, false).check().is_err());
    assert!(
        config("0.0.0.0:8080", Some(""), None, false)
            .check()
            .is_err()
    );
    assert!(config("0.0.0.0:8080", None, None, true).check().is_ok());
    assert!(
        config("0.0.0.0:8080", Some("t"), None, false)
            .check()
            .is_ok()
    );
    assert!(
        config("127.0.0.1:8080", None, Some("r"), false)
            .check()
            .is_err()
    );
}
