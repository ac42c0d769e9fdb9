//! The `archdb` binary: `inspect` needs no database, `openapi` prints the committed spec.

use std::process::Command;

use crate::common::fixture_path;

/// Runs the `archdb` binary: (success, stdout, stderr).
pub fn archdb(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_archdb"))
        .args(args)
        .output()
        .expect("run archdb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_prints_the_graph_summary() {
    let path = fixture_path("onnx-samples/resnet18.legacy.onnx");
    let (ok, stdout, stderr) = archdb(&["inspect", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["params"], 11_680_872);
    assert_eq!(summary["macs"], 1_821_452_264u64);
    assert!(summary["graph_hash"].as_str().unwrap().starts_with("wl2:"));
    assert!(summary.get("graph").is_none());
    let (ok, stdout, _) = archdb(&["inspect", "--graph", path.to_str().unwrap()]);
    assert!(ok);
    let full: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(full["graph"]["nodes"].as_array().unwrap().len(), 50);
}

#[test]
fn inspect_reports_bad_files_and_fails() {
    let path = fixture_path("onnx-samples/manifest.json");
    let (ok, _, stderr) = archdb(&["inspect", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("ONNX"), "{stderr}");
}

#[test]
fn openapi_command_prints_the_committed_spec() {
    let (ok, stdout, _) = archdb(&["openapi"]);
    assert!(ok);
    let committed = std::fs::read_to_string(fixture_path("../../openapi/archdb.json")).unwrap();
    assert!(
        stdout.trim_end() == committed.trim_end(),
        "`archdb openapi` differs from openapi/archdb.json"
    );
}
