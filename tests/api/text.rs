//! Architectures as text: ONNX-Net's chain_slim family equals ONNX-Net's own code on real
//! exports (torchvision, timm, LEMUR), `GET /v1/architectures/{id}/text` and `inspect --text`.

use std::io::Read;

use archdb::onnx::{decode_model, proto::ModelProto};
use archdb::text::{TextOptions, Variant, render, render_text};

use crate::cli::archdb;
use crate::common::{fixture, fixture_path, spawn_app};

const CHAIN_VARIANTS: [Variant; 5] = [
    Variant::ChainSlim,
    Variant::ChainSlimBase,
    Variant::ChainSlimInput,
    Variant::ChainSlimParam,
    Variant::ChainSlimOutshape,
];

/// A model of the bundled LEMUR sample (`data/lemur-sample/onnx/lemur_onnx.tar.gz`).
fn lemur_model(stem: &str) -> Vec<u8> {
    let path = fixture_path("../../data/lemur-sample/onnx/lemur_onnx.tar.gz");
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry
            .path()
            .unwrap()
            .to_string_lossy()
            .ends_with(&format!("{stem}.onnx"))
        {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("{stem} is not in the LEMUR sample");
}

fn model(bytes: Vec<u8>) -> ModelProto {
    decode_model(bytes.into()).unwrap()
}

fn reference(stem: &str, variant: Variant) -> String {
    std::fs::read_to_string(fixture_path(&format!("text/{stem}.{variant}.txt"))).unwrap()
}

/// The models of `tests/fixtures/text/` (made by its `make_reference.py` from ONNX-Net's code).
fn reference_models() -> Vec<(&'static str, Vec<u8>)> {
    let mut models: Vec<(&str, Vec<u8>)> = [
        "resnet18.legacy",
        "mobilenet_v2.legacy",
        "mobilenet_v3_small.dynamo",
        "squeezenet1_0.full",
    ]
    .into_iter()
    .map(|s| (s, fixture(&format!("onnx-samples/{s}.onnx"))))
    .collect();
    models.push((
        "timm_efficientvit_b0.dynamo",
        fixture("zoo/timm_efficientvit_b0.dynamo.onnx"),
    ));
    for stem in ["AlexNet", "rag-0325ae3f51d778ccd4a83c8125f68d8d"] {
        models.push((stem, lemur_model(stem)));
    }
    models
}

#[test]
fn chain_slim_variants_equal_onnx_nets_own_output() {
    for (stem, bytes) in reference_models() {
        let model = model(bytes);
        for variant in CHAIN_VARIANTS {
            let ours = render_text(&model, variant).unwrap();
            let theirs = reference(stem, variant);
            if ours != theirs {
                let line = ours
                    .lines()
                    .zip(theirs.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(ours.lines().count().min(theirs.lines().count()));
                panic!(
                    "{stem} {variant} differs from ONNX-Net at line {}:\n ours:   {:?}\n theirs: {:?}",
                    line + 1,
                    ours.lines().nth(line),
                    theirs.lines().nth(line)
                );
            }
        }
    }
}

#[test]
fn chain_slim_follows_the_rules_on_torchvision_and_timm() {
    let resnet = render_text(
        &model(fixture("onnx-samples/resnet18.legacy.onnx")),
        Variant::ChainSlim,
    )
    .unwrap();
    let lines: Vec<&str> = resnet.lines().collect();
    // Graph input named by its shape, weights `Param[dims]`, equal int lists collapsed, scalar
    // attributes (`group`) dropped, output shapes `AxBxC`.
    assert!(lines.contains(&"Conv(1x3x224x224, Param[64,3,7,7], Param[64])(dilations=1,kernel_shape=7,pads=3,strides=2) --> Value17:1x64x112x112"), "{resnet}");
    assert!(!resnet.contains("group="));
    // A chain of single-input single-output ops on one line.
    assert!(lines.contains(&"Relu(Value17) --> MaxPool(prev)(dilations=1,kernel_shape=3,pads=1,strides=2) --> Value18:1x64x56x56"));
    // A merge: the residual Add reads two named values.
    assert!(lines.contains(&"Add(Value21, Value18) --> Value22:1x64x56x56"));
    assert!(resnet.ends_with("--> Out"), "{resnet}");
    assert_eq!(resnet.matches("Conv(").count(), 20);

    // With scalars, the attributes ONNX-Net drops appear.
    let with_scalars = render(
        &model(fixture("onnx-samples/mobilenet_v2.legacy.onnx")),
        TextOptions {
            variant: Variant::ChainSlim,
            scalars: true,
        },
    )
    .unwrap();
    assert!(with_scalars.contains("group=32,"), "depthwise conv groups");
    assert!(
        with_scalars.contains("alpha=1.0,beta=1.0,transB=1"),
        "Gemm scalars"
    );

    // A multi-output node names all of its outputs, with the first one's shape.
    let vit = render_text(
        &model(fixture("zoo/timm_efficientvit_b0.dynamo.onnx")),
        Variant::ChainSlim,
    )
    .unwrap();
    assert!(vit.contains("\nSplit(Value10) --> Value11, Value12, Value13:1x8x196x16\n"));
}

#[test]
fn the_cg_variant_is_one_line_per_node_with_macs() {
    let bytes = fixture("onnx-samples/resnet18.legacy.onnx");
    let text = render_text(&model(bytes), Variant::Cg).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 50, "the CG has 50 nodes");
    assert_eq!(lines[0], "v0 = Input 1x3x224x224");
    assert_eq!(
        lines[1],
        "v1 = Conv(v0) 1x64x112x112 k=7x7 s=2x2 params=9472 macs=118816768"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("v") && l.contains("= Add(v"))
    );
    assert_eq!(lines[49], "v49 = Output(v48) 1x1000");
    let macs: u64 = lines
        .iter()
        .filter_map(|l| l.split(" macs=").nth(1))
        .map(|m| m.parse::<u64>().unwrap())
        .sum();
    assert_eq!(macs, 1_821_452_264, "the lines' MACs add up to the model's");
    // Shorter than chain_slim.
    let chain = render_text(
        &model(fixture("onnx-samples/resnet18.legacy.onnx")),
        Variant::ChainSlim,
    )
    .unwrap();
    assert!(text.len() < chain.len());
}

#[tokio::test]
async fn the_text_endpoint_renders_the_stored_onnx() {
    let app = spawn_app().await;
    let (status, arch) = app
        .upload(
            fixture("onnx-samples/resnet18.legacy.onnx"),
            "?name=resnet18",
        )
        .await;
    assert_eq!(status, 201);
    let id = arch["id"].as_i64().unwrap();
    let get = |query: String| {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/architectures/{id}/text{query}"));
        async move { client.get(url).send().await.unwrap() }
    };

    let resp = get(String::new()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let chars: usize = resp.headers()["x-text-chars"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let tokens: usize = resp.headers()["x-text-whitespace-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = resp.text().await.unwrap();
    // The stored model is stripped of weights; its text is ONNX-Net's text of the original.
    assert_eq!(text, reference("resnet18.legacy", Variant::ChainSlim));
    assert_eq!(chars, text.chars().count());
    assert_eq!(tokens, text.split_whitespace().count());

    for variant in CHAIN_VARIANTS {
        let text = get(format!("?variant={variant}"))
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(text, reference("resnet18.legacy", variant), "{variant}");
    }
    let cg = get("?variant=cg".into()).await.text().await.unwrap();
    assert_eq!(cg.lines().count(), 50);
    assert!(cg.contains("macs=118816768"));
    let scalars = get("?scalars=true".into()).await.text().await.unwrap();
    assert!(scalars.contains("group=1,") && !text.contains("group="));

    for (query, status, detail) in [
        ("?variant=chain", 400, "variant"),
        ("?scalars=maybe", 400, "scalars"),
        ("?format=json", 400, "format"),
    ] {
        let resp = get(query.into()).await;
        assert_eq!(resp.status(), status, "{query}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: serde_json::Value = resp.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{query}: {problem}"
        );
    }
    let (status, problem) = app
        .get_json(&format!("/v1/architectures/{}/text", id + 1000))
        .await;
    assert_eq!(status, 404);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no architecture")
    );
}

#[test]
fn inspect_text_prints_the_encoding() {
    let path = fixture_path("onnx-samples/mobilenet_v2.legacy.onnx");
    let path = path.to_str().unwrap();
    let (ok, stdout, stderr) = archdb(&["inspect", path, "--text"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        reference("mobilenet_v2.legacy", Variant::ChainSlim) + "\n"
    );
    let (ok, stdout, _) = archdb(&["inspect", path, "--text", "--variant", "cg"]);
    assert!(ok);
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .starts_with("v0 = Input 1x3x224x224")
    );
    let (ok, _, stderr) = archdb(&["inspect", path, "--text", "--variant", "chain"]);
    assert!(!ok);
    assert!(stderr.contains("unknown text variant `chain`"), "{stderr}");
}
