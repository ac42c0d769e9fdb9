//! `GET /metrics`: Prometheus text that a Prometheus parser reads, with the families operators
//! need, whose values follow the requests made; guarded like every read.

use archdb::http::ServeConfig;
use serde_json::Value;

use crate::common::{TestApp, fixture, spawn_app, spawn_app_with};

/// A scrape as prometheus-client's parser read it: one object per sample with its family,
/// the family's type, the sample name, labels and value.
struct Scrape(Vec<Value>);

impl Scrape {
    /// The value of the sample `name` whose labels include `labels` (0 when there is none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .map_or(0.0, |s| s["value"].as_f64().unwrap())
    }

    /// The type of the family `name`, if it has samples.
    fn family_type(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|s| s["family"] == name)
            .map(|s| s["type"].as_str().unwrap())
    }
}

/// Parses the text format with prometheus-client (PyPI) through `ARCHDB_METRICS_PYTHON`
/// (`.ci/metrics-venv.sh` makes one); `None`, reported skipped, without it outside CI.
fn parse(text: &str) -> Option<Scrape> {
    let python = std::env::var("ARCHDB_METRICS_PYTHON").unwrap_or_default();
    let python = python.trim();
    if python.is_empty() {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !in_ci,
            "CI: ARCHDB_METRICS_PYTHON is unset (export ARCHDB_METRICS_PYTHON=$(.ci/metrics-venv.sh))"
        );
        eprintln!("SKIPPED /metrics parsing: set ARCHDB_METRICS_PYTHON=$(.ci/metrics-venv.sh)");
        return None;
    }
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        print(json.dumps([{'family': f.name, 'type': f.type, 'name': s.name, 'labels': s.labels,\n\
                           'value': s.value}\n\
                          for f in text_string_to_metric_families(sys.stdin.read())\n\
                          for s in f.samples]))\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "prometheus-client: {stderr}\n{text}");
    Some(Scrape(serde_json::from_slice(&out.stdout).unwrap()))
}

async fn scrape(app: &TestApp) -> Option<Scrape> {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    parse(&resp.text().await.unwrap())
}

#[tokio::test]
async fn metrics_parse_and_follow_the_requests() {
    let app = spawn_app().await;
    let Some(empty) = scrape(&app).await else {
        return;
    };
    let version = empty.value("archdb_data_version", &[]);
    assert!(version >= 1.0);
    assert_eq!(empty.value("archdb_jobs", &[("state", "queued")]), 0.0);

    for _ in 0..3 {
        assert_eq!(app.get_json("/v1/benchmarks").await.0, 200);
    }
    assert_eq!(app.get_json("/no/such/path").await.0, 404);
    assert_eq!(app.get_json("/v1/architectures/999999").await.0, 404);
    let (status, uploaded) = app
        .upload(fixture("onnx-samples/squeezenet1_0.full.onnx"), "")
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let predicted = app
        .client
        .post(app.url("/v1/predictions"))
        .json(&serde_json::json!({"architecture_ids": [uploaded["id"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(predicted.status().as_u16(), 200);
    sqlx::query("insert into jobs (kind, params) values ('train', '{}')")
        .execute(&app.pool)
        .await
        .unwrap();

    let after = scrape(&app).await.unwrap();
    // Label vectors appear with their first value (the import phases only during an import;
    // src/http/metrics.rs tests them).
    for (family, kind) in [
        ("archdb_http_requests", "counter"),
        ("archdb_http_request_duration_seconds", "histogram"),
        ("archdb_cache_hits", "counter"),
        ("archdb_cache_misses", "counter"),
        ("archdb_cache_entries", "gauge"),
        ("archdb_cache_size_bytes", "gauge"),
        ("archdb_data_version", "gauge"),
        ("archdb_predictor_inference_seconds", "histogram"),
        ("archdb_db_pool_connections", "gauge"),
        ("archdb_db_pool_max_connections", "gauge"),
        ("archdb_jobs", "gauge"),
        ("archdb_import_running", "gauge"),
    ] {
        assert_eq!(after.family_type(family), Some(kind), "{family}");
    }
    let benchmarks = [
        ("method", "GET"),
        ("route", "/v1/benchmarks"),
        ("status", "200"),
    ];
    assert_eq!(after.value("archdb_http_requests_total", &benchmarks), 3.0);
    assert_eq!(
        after.value("archdb_http_request_duration_seconds_count", &benchmarks),
        3.0
    );
    let requests = |labels: &[(&str, &str)]| after.value("archdb_http_requests_total", labels);
    // Routes are templates; unknown paths share one label value.
    let lookup = [("route", "/v1/architectures/{id}"), ("status", "404")];
    assert_eq!(requests(&lookup), 1.0);
    assert_eq!(requests(&[("route", "unmatched"), ("status", "404")]), 1.0);
    assert_eq!(requests(&[("route", "/metrics"), ("status", "200")]), 1.0);
    let on_benchmarks = [("route", "/v1/benchmarks")];
    assert_eq!(
        after.value("archdb_cache_misses_total", &on_benchmarks),
        1.0
    );
    assert_eq!(after.value("archdb_cache_hits_total", &on_benchmarks), 2.0);
    assert_eq!(after.value("archdb_cache_entries", &[]), 1.0);
    assert!(after.value("archdb_cache_size_bytes", &[]) > 0.0);
    assert_eq!(
        after.value("archdb_predictor_inference_seconds_count", &[]),
        1.0
    );
    assert!(after.value("archdb_predictor_inference_seconds_sum", &[]) > 0.0);
    assert_eq!(after.value("archdb_jobs", &[("state", "queued")]), 1.0);
    assert!(
        after.value("archdb_data_version", &[]) > version,
        "the upload raised it"
    );
    let pool = |state| {
        after.value(
            "archdb_db_pool_connections",
            &[("pool", "request"), ("state", state)],
        )
    };
    let max = after.value("archdb_db_pool_max_connections", &[("pool", "request")]);
    assert!(pool("idle") >= 1.0 && pool("in_use") + pool("idle") <= max);
    assert_eq!(after.value("archdb_import_running", &[]), 0.0);
}

#[tokio::test]
async fn metrics_need_the_read_token_when_there_is_one() {
    let app = spawn_app_with(ServeConfig {
        api_token: Some("admin-secret".into()),
        read_token: Some("read-secret".into()),
        ..Default::default()
    })
    .await;
    let status = |token: Option<&'static str>| {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(None).await, 401);
    assert_eq!(status(Some("read-secret")).await, 200);
    assert_eq!(status(Some("admin-secret")).await, 200);
    // Open when only writes are guarded.
    let open = spawn_app_with(ServeConfig {
        api_token: Some("admin-secret".into()),
        ..Default::default()
    })
    .await;
    let resp = open.client.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}
