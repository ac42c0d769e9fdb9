//! Upload, dedup, listing, graph and ONNX export on the torchvision sample models.

use prost::Message;
use serde_json::Value;

use archdb::onnx::proto::ModelProto;

use crate::common::{fixture, spawn_app};

const SAMPLES: [&str; 4] = [
    "mobilenet_v2.legacy.onnx",
    "mobilenet_v3_small.dynamo.onnx",
    "resnet18.legacy.onnx",
    "squeezenet1_0.full.onnx",
];

fn manifest() -> Value {
    serde_json::from_slice(&fixture("onnx-samples/manifest.json")).unwrap()
}

#[tokio::test]
async fn samples_have_exact_params_and_macs_within_5_percent() {
    let app = spawn_app().await;
    let manifest = manifest();
    for name in SAMPLES {
        let (status, body) = app
            .upload(
                fixture(&format!("onnx-samples/{name}")),
                "?family=torchvision",
            )
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        let reference = &manifest[name]["reference"];
        assert_eq!(
            body["params"], reference["params_trainable"],
            "{name} params"
        );
        let macs = body["macs"].as_f64().unwrap();
        let expected = reference["onnx_tool_macs_legacy_export"].as_f64().unwrap();
        let rel = (macs - expected).abs() / expected;
        assert!(
            rel <= 0.05,
            "{name}: macs {macs} vs onnx-tool {expected} ({:.2} %)",
            rel * 100.0
        );
        assert_eq!(body["input_shape"], serde_json::json!([1, 3, 224, 224]));
        assert!(body["graph_hash"].as_str().unwrap().starts_with("wl2:"));
    }
}

#[tokio::test]
async fn resnet18_graph_has_the_expected_ops_and_structure() {
    let app = spawn_app().await;
    let (_, body) = app
        .upload(fixture("onnx-samples/resnet18.legacy.onnx"), "")
        .await;
    let ops = &body["op_counts"];
    assert_eq!(ops["Conv"], 20);
    assert_eq!(ops["ReLU"], 17);
    assert_eq!(ops["Add"], 8);
    assert_eq!(ops["MaxPool"], 1);
    assert_eq!(ops["GlobalAvgPool"], 1);
    assert_eq!(ops["Linear"], 1);
    // 48 compute nodes + input + output; Identity and Flatten are bypassed.
    assert_eq!(body["num_nodes"], 50);
    let id = body["id"].as_i64().unwrap();
    let (status, graph) = app.get_json(&format!("/v1/architectures/{id}/graph")).await;
    assert_eq!(status, 200);
    let nodes = graph["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 50);
    assert_eq!(
        graph["edges"].as_array().unwrap().len() as i64,
        body["num_edges"].as_i64().unwrap()
    );
    assert_eq!(nodes[0]["label"], "Input");
    let stem = &nodes[1];
    assert_eq!(stem["label"], "Conv");
    assert_eq!(
        stem["resolution"],
        serde_json::json!([224, 112, 224, 112, 3, 64])
    );
    assert_eq!(stem["kernel"], serde_json::json!([7, 7]));
    assert_eq!(stem["strides"], serde_json::json!([2, 2]));
    // BN folded into the conv by the legacy exporter: 64·3·7·7 weights + 64 bias.
    assert_eq!(stem["params"], 64 * 3 * 7 * 7 + 64);
    assert_eq!(stem["bias"], true);
    let dot = app
        .client
        .get(app.url(&format!("/v1/architectures/{id}/graph?format=dot")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        dot.headers()["content-type"],
        "text/vnd.graphviz; charset=utf-8"
    );
    let text = dot.text().await.unwrap();
    assert!(
        text.starts_with("digraph cg {")
            && text.matches("->").count() == graph["edges"].as_array().unwrap().len()
    );
}

#[tokio::test]
async fn mobilenets_have_depthwise_convs_and_relu6() {
    let app = spawn_app().await;
    let (_, v2) = app
        .upload(fixture("onnx-samples/mobilenet_v2.legacy.onnx"), "")
        .await;
    assert_eq!(v2["op_counts"]["DepthwiseConv"], 17);
    assert_eq!(v2["op_counts"]["Conv"], 35);
    assert_eq!(v2["op_counts"]["ReLU6"], 35);
    let (_, v3) = app
        .upload(fixture("onnx-samples/mobilenet_v3_small.dynamo.onnx"), "")
        .await;
    assert_eq!(v3["op_counts"]["HardSwish"], 19);
    assert_eq!(v3["op_counts"]["DepthwiseConv"], 11);
}

#[tokio::test]
async fn same_architecture_gets_the_same_id() {
    let app = spawn_app().await;
    let bytes = fixture("onnx-samples/squeezenet1_0.full.onnx");
    let (s1, first) = app.upload(bytes.clone(), "?name=squeezenet").await;
    assert_eq!(s1, 201);
    let (s2, second) = app.upload(bytes.clone(), "?name=squeezenet-again").await;
    assert_eq!((s2, &second["id"]), (200, &first["id"]));

    // Other node and tensor names, same architecture.
    let mut model = ModelProto::decode(bytes.as_slice()).unwrap();
    rename_everything(&mut model);
    let (s3, renamed) = app.upload(model.encode_to_vec(), "").await;
    assert_eq!((s3, &renamed["id"]), (200, &first["id"]));

    // Other weights, same architecture.
    let mut model = ModelProto::decode(bytes.as_slice()).unwrap();
    for t in &mut model.graph.as_mut().unwrap().initializer {
        if let Some(raw) = t.raw_data.as_mut() {
            *raw = raw
                .iter()
                .map(|b| b.wrapping_add(1))
                .collect::<Vec<u8>>()
                .into();
        }
    }
    let (s4, reweighted) = app.upload(model.encode_to_vec(), "").await;
    assert_eq!((s4, &reweighted["id"]), (200, &first["id"]));

    // Both names became aliases.
    let id = first["id"].as_i64().unwrap();
    let (_, detail) = app.get_json(&format!("/v1/architectures/{id}")).await;
    let aliases: Vec<&str> = detail["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["value"].as_str().unwrap())
        .collect();
    assert_eq!(aliases, vec!["squeezenet", "squeezenet-again"]);

    // A different architecture gets a different id.
    let (s5, other) = app
        .upload(fixture("onnx-samples/resnet18.legacy.onnx"), "")
        .await;
    assert_eq!(s5, 201);
    assert_ne!(other["id"], first["id"]);
}

/// Renames every node, graph input/output, initializer and intermediate tensor consistently.
fn rename_everything(model: &mut ModelProto) {
    let graph = model.graph.as_mut().unwrap();
    let rename = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("renamed/{s}")
        }
    };
    for n in &mut graph.node {
        n.name = Some(rename(n.name()));
        n.input = n.input.iter().map(|s| rename(s)).collect();
        n.output = n.output.iter().map(|s| rename(s)).collect();
    }
    for v in graph
        .input
        .iter_mut()
        .chain(graph.output.iter_mut())
        .chain(graph.value_info.iter_mut())
    {
        v.name = Some(rename(v.name()));
    }
    for t in &mut graph.initializer {
        t.name = Some(rename(t.name()));
    }
}

#[tokio::test]
async fn stored_onnx_is_stripped_and_reingests_to_the_same_architecture() {
    let app = spawn_app().await;
    let original = fixture("onnx-samples/squeezenet1_0.full.onnx");
    let (_, created) = app.upload(original.clone(), "").await;
    let id = created["id"].as_i64().unwrap();
    let resp = app
        .client
        .get(app.url(&format!("/v1/architectures/{id}/onnx")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stored = resp.bytes().await.unwrap().to_vec();
    assert!(
        stored.len() < original.len() / 50,
        "weights stripped: {} vs {} bytes",
        stored.len(),
        original.len()
    );
    let (status, again) = app.upload(stored, "").await;
    assert_eq!(
        (status, &again["id"], &again["params"]),
        (200, &created["id"], &created["params"])
    );
}

#[tokio::test]
async fn listing_filters_sorts_and_paginates() {
    let app = spawn_app().await;
    for name in SAMPLES {
        let family = if name.starts_with("mobilenet") {
            "mobilenet"
        } else {
            "other"
        };
        let (status, _) = app
            .upload(
                fixture(&format!("onnx-samples/{name}")),
                &format!("?family={family}"),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (_, page) = app.get_json("/v1/architectures?family=mobilenet").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, page) = app
        .get_json("/v1/architectures?op=DepthwiseConv&op=HardSwish")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, page) = app
        .get_json("/v1/architectures?min_params=3000000&max_params=12000000")
        .await;
    let params: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["params"].as_i64().unwrap())
        .collect();
    assert_eq!(params, vec![3475008, 11680872]);

    // Walk all pages of two, largest MACs first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let (status, page) = app
            .get_json(&format!("/v1/architectures?sort=-macs&limit=2{q}"))
            .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["macs"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "{seen:?}");

    let (status, problem) = app.get_json("/v1/architectures?sort=colour").await;
    assert_eq!(status, 400);
    assert!(problem["detail"].as_str().unwrap().contains("colour"));
}

#[tokio::test]
async fn multipart_upload_and_delete() {
    let app = spawn_app().await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(fixture("onnx-samples/resnet18.legacy.onnx"))
                .file_name("r.onnx"),
        )
        .text("name", "resnet18")
        .text("family", "resnet")
        .text("source", "torchvision");
    let resp = app
        .client
        .post(app.url("/v1/architectures"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .split('/')
            .count(),
        4
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (
            body["name"].as_str(),
            body["family"].as_str(),
            body["source"].as_str()
        ),
        (Some("resnet18"), Some("resnet"), Some("torchvision"))
    );
    let id = body["id"].as_i64().unwrap();

    let del = app
        .client
        .delete(app.url(&format!("/v1/architectures/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    for path in ["", "/graph", "/onnx"] {
        let (status, problem) = app.get_json(&format!("/v1/architectures/{id}{path}")).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(problem["status"], 404);
    }
    let del = app
        .client
        .delete(app.url(&format!("/v1/architectures/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 404);
    // Graph and ONNX rows went with it.
    let left: i64 = sqlx::query_scalar("select (select count(*) from architecture_graphs) + (select count(*) from architecture_onnx) + (select count(*) from architecture_aliases)")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn concurrent_uploads_of_one_model_create_it_once() {
    let app = spawn_app().await;
    let bytes = fixture("onnx-samples/mobilenet_v2.legacy.onnx");
    let uploads = (0..8).map(|_| app.upload(bytes.clone(), ""));
    let results = futures_util::future::join_all(uploads).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let ids: std::collections::HashSet<i64> = results
        .iter()
        .map(|(_, b)| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!((created, ids.len()), (1, 1), "{results:?}");
}

/// A form field given twice, or two files in a single upload, is a 400 (the last value used to
/// win silently).
#[tokio::test]
async fn repeated_form_fields_are_400() {
    let app = spawn_app().await;
    let onnx = || {
        reqwest::multipart::Part::bytes(fixture("onnx-samples/resnet18.legacy.onnx"))
            .file_name("r.onnx")
    };
    for (form, what) in [
        (
            reqwest::multipart::Form::new()
                .part("file", onnx())
                .text("family", "resnet")
                .text("family", "vgg"),
            "`family` is given more than once",
        ),
        (
            reqwest::multipart::Form::new()
                .part("file", onnx())
                .part("file", onnx()),
            "more than one `file` part",
        ),
    ] {
        let resp = app
            .client
            .post(app.url("/v1/architectures"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{what}");
        let problem: Value = resp.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(what),
            "{problem}"
        );
    }
}
