//! NB101, NB301 and TransNAS-Bench-101 samples of `import naslib-zc` as generated networks,
//! checked through the REST API: every linked sample's architecture has NASLib's parameter
//! count, and the spaces show in `/v1/benchmarks`, `/v1/results` and `/v1/stats/*`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use archdb::import::{ImportKind, NoProgress, Summary, run};

use crate::common::{TestApp, fixture_path, spawn_app};

async fn import(app: &TestApp, dir: &Path) -> Summary {
    run(&app.pool, ImportKind::NaslibZc, dir, Arc::new(NoProgress))
        .await
        .unwrap_or_else(|e| panic!("naslib-zc import of {}: {e:#}", dir.display()))
}

/// Per `space/task`: (rows of NASLib's `params` proxy, of them linked to an architecture whose
/// `params` (from `GET /v1/architectures/{id}`) equals NASLib's count).
async fn params_through_api(app: &TestApp) -> BTreeMap<String, (usize, usize)> {
    let (status, rows) = app
        .get_json("/v1/results?benchmark=naslib-zc&metric=params")
        .await;
    assert_eq!(status, 200, "{rows}");
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut cache: BTreeMap<i64, u64> = BTreeMap::new();
    for row in rows.as_array().unwrap() {
        let space = row["prm"]["search_space"].as_str().unwrap();
        let key = format!("{space}/{}", row["task"].as_str().unwrap());
        let entry = out.entry(key).or_default();
        entry.0 += 1;
        let Some(id) = row["architecture_id"].as_i64() else {
            continue;
        };
        let params = match cache.get(&id) {
            Some(&p) => p,
            None => {
                let (status, arch) = app.get_json(&format!("/v1/architectures/{id}")).await;
                assert_eq!(status, 200, "{arch}");
                let p = arch["params"].as_u64().unwrap();
                cache.insert(id, p);
                p
            }
        };
        let naslib = (row["accuracy"].as_f64().unwrap() * 1e6).round() as u64;
        if space == "nasbench201" {
            // NB201 samples link to `import nb201`'s CIFAR-10 cells (none here).
            continue;
        }
        assert_eq!(params, naslib, "{row}");
        entry.1 += 1;
    }
    out
}

#[tokio::test]
async fn naslib_samples_become_networks_with_naslib_params() {
    let app = spawn_app().await;
    let first = import(&app, &fixture_path("naslib-zc")).await;
    // 3 NB101 + 3 NB301 + 5 TransNAS samples with a linear head (micro class_scene,
    // class_object, room_layout; macro class_object, room_layout).
    assert_eq!(
        first.details["architectures"],
        serde_json::json!({"generated": 11, "added": 11}),
        "{first:?}"
    );
    // Their rows: 12 per NB101 and TransNAS sample (11 proxies + val_accuracy), 13 per NB301.
    assert_eq!(first.details["rows_linked"], 3 * 12 + 3 * 13 + 5 * 12);

    let by_space = params_through_api(&app).await;
    let linked = |key: &str| by_space.get(key).copied().unwrap_or_default();
    assert_eq!(linked("nasbench101/img-classification"), (3, 3));
    assert_eq!(linked("nasbench301/img-classification"), (3, 3));
    assert_eq!(linked("transbench101_micro/class_scene"), (1, 1));
    assert_eq!(linked("transbench101_macro/room_layout"), (1, 1));
    // Tasks without a linear head stay unlinked.
    assert_eq!(linked("transbench101_micro/jigsaw"), (1, 0));
    assert_eq!(linked("transbench101_macro/segmentsemantic"), (1, 0));

    // The stored graphs: NASLib's NB301 build (BatchNorms without affine parameters after the
    // pools) and the TransNAS 256×256 input.
    let (_, archs) = app
        .get_json("/v1/architectures?family=nb301&limit=10")
        .await;
    let archs = archs["items"].as_array().expect("a page of architectures");
    assert_eq!(archs.len(), 3);
    assert!(
        archs
            .iter()
            .all(|a| a["input_shape"] == serde_json::json!([1, 3, 32, 32]))
    );
    let (_, archs) = app
        .get_json("/v1/architectures?family=tnb101-macro&limit=10")
        .await;
    let archs = archs["items"].as_array().unwrap();
    assert_eq!(archs.len(), 2);
    assert!(
        archs
            .iter()
            .all(|a| a["input_shape"] == serde_json::json!([1, 3, 256, 256]))
    );

    // A re-run adds nothing.
    let again = import(&app, &fixture_path("naslib-zc")).await;
    assert_eq!(again.rows_added, 0, "{again:?}");
    assert_eq!(again.details["architectures"]["added"], 0);

    // /v1/benchmarks counts the linked rows; /v1/stats/pareto plots the generated graphs'
    // parameters against NASLib's validation accuracy.
    let (status, benchmarks) = app.get_json("/v1/benchmarks").await;
    assert_eq!(status, 200);
    let zc = benchmarks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["benchmark"] == "naslib-zc")
        .unwrap();
    assert_eq!(zc["rows_with_graph"], 3 * 12 + 3 * 13 + 5 * 12);
    let (status, pareto) = app
        .get_json("/v1/stats/pareto?benchmark=naslib-zc&dataset=cifar10&x=params&split=valid")
        .await;
    assert_eq!(status, 200, "{pareto}");
    assert_eq!(pareto["points"], 6, "{pareto}");
    assert!(!pareto["front"].as_array().unwrap().is_empty());
}

/// Every NB101 and NB301 sample of the whole file (the starter set's copy in `data/`), imported
/// into a fresh database: params through the REST API equal NASLib's (`NB_SUITE_ZERO_DIR`
/// overrides the folder). About 1.5 min in a debug build.
#[tokio::test]
async fn every_nb101_and_nb301_sample_has_naslib_params() {
    let dir = std::env::var("NB_SUITE_ZERO_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/nas_bench_suite_zero").into()
    });
    let app = spawn_app().await;
    let start = std::time::Instant::now();
    let summary = import(&app, Path::new(&dir)).await;
    println!("import: {:.1?}, {}", start.elapsed(), summary.details);
    let by_space = params_through_api(&app).await;
    println!("{by_space:?}");
    assert_eq!(by_space["nasbench101/img-classification"], (500, 500));
    assert_eq!(by_space["nasbench301/img-classification"], (725, 725));
    for task in ["class_scene", "class_object", "room_layout"] {
        let (micro_rows, micro_linked) = by_space[&format!("transbench101_micro/{task}")];
        assert_eq!(micro_rows, micro_linked, "micro {task}");
        let (macro_rows, macro_linked) = by_space[&format!("transbench101_macro/{task}")];
        assert_eq!(macro_rows, macro_linked, "macro {task}");
    }
}
