//! Real-world robustness: torchvision and timm models from both PyTorch exporters
//! (`tests/fixtures/zoo`, see its README) must give onnx-tool's params and MACs.

use crate::common::{fixture, fixture_path};

#[test]
fn zoo_models_match_onnx_tool_exactly() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fixture("zoo/manifest.json")).unwrap();
    let files = manifest["files"].as_object().unwrap();
    assert_eq!(files.len(), 26);
    for (name, reference) in files {
        let bytes = std::fs::read(fixture_path(&format!("zoo/{name}"))).unwrap();
        let model = archdb::ingest::ingest(bytes.into(), Default::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = &model.graph.summary;
        assert_eq!(
            s.params,
            reference["params_trainable"].as_u64().unwrap(),
            "{name} params"
        );
        assert_eq!(
            s.macs,
            reference["onnx_tool_macs"].as_u64().unwrap(),
            "{name} MACs"
        );
        assert!(
            s.unknown_ops.is_empty() && s.unknown_shapes == 0,
            "{name}: {:?} / {}",
            s.unknown_ops,
            s.unknown_shapes
        );
    }
}

#[test]
fn the_two_exporters_give_the_same_op_mix_for_a_cnn() {
    let ingest = |f: &str| {
        archdb::ingest::ingest(fixture(f).into(), Default::default())
            .unwrap()
            .graph
            .summary
    };
    let legacy = ingest("zoo/resnet50.legacy.onnx");
    let dynamo = ingest("zoo/resnet50.dynamo.onnx");
    assert_eq!(legacy.op_counts, dynamo.op_counts);
    assert_eq!(legacy.op_counts["Conv"], 53);
    assert_eq!(legacy.depth, dynamo.depth);
}
