//! The committed spec is the generated one; the docs UI is served offline.

use crate::common::spawn_app;

#[tokio::test]
async fn committed_spec_matches_the_generated_one() {
    let generated = archdb::http::openapi().to_pretty_json().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/archdb.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/archdb.json is stale: regenerate it with `cargo run -- openapi > openapi/archdb.json`"
    );
    let spec: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/architectures",
        "/v1/architectures/{id}",
        "/v1/architectures/{id}/graph",
        "/v1/architectures/{id}/onnx",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the spec"
        );
    }
}

#[tokio::test]
async fn spec_and_docs_ui_are_served() {
    let app = spawn_app().await;
    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(spec["info"]["title"], "archdb");
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("cdn."),
        "the docs page must not load from a CDN"
    );
    let js = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
}
