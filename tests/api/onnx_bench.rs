//! The ONNX-Bench file format: `export onnx-bench` of NB201 re-imports into a fresh database with
//! the same graphs and figures; both directions are idempotent, a bad file leaves nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use archdb::export::onnx_bench::{ExportOptions, export};
use archdb::import::{ImportKind, NoProgress, run};
use archdb::onnx::decode_model;

use crate::benchmarks::import_nb201;
use crate::common::{TestApp, spawn_app};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("archdb-onnx-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `archdb import onnx-bench DIR`.
async fn import(app: &TestApp, dir: &Path) -> anyhow::Result<archdb::import::Summary> {
    run(&app.pool, ImportKind::OnnxBench, dir, Arc::new(NoProgress)).await
}

fn nb201_options(out: &Path, limit: i64) -> ExportOptions {
    ExportOptions {
        benchmark: "nb201".into(),
        dataset: "cifar10".into(),
        metric: "acc".into(),
        epoch: None,
        split: None,
        limit: Some(limit),
        out: out.to_path_buf(),
    }
}

/// (graph hash, nn, value, epoch, split) of the rows of `benchmark`, sorted.
async fn figures(
    app: &TestApp,
    benchmark: &str,
) -> Vec<(String, String, f64, Option<i32>, Option<String>)> {
    sqlx::query_as(
        "select a.graph_hash, r.nn, r.value, r.epoch, r.split
         from results r join architectures a on a.id = r.architecture_id
         where r.benchmark = $1 and r.dataset = 'cifar10' and r.metric = 'acc'
           and r.epoch = 200 and r.split = 'test'
         order by 1",
    )
    .bind(benchmark)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_nb201_export_reimports_with_the_same_graphs_and_figures() {
    let source = spawn_app().await;
    import_nb201(&source).await;
    let out = scratch("roundtrip").join("export");
    let summary = export(&source.pool, &nb201_options(&out, 12))
        .await
        .unwrap();
    assert_eq!(
        (summary.files, summary.epoch, summary.split.as_deref()),
        (12, Some(200), Some("test"))
    );
    let folder = out.join("nasbench201_simplify/cifar10");
    let first = std::fs::read(folder.join("nb201-0.onnx")).unwrap();
    let model = decode_model(first.clone().into()).unwrap();
    // ONNX-Bench reads the accuracy as metadata_props[0]; cell 0's CIFAR-10 test accuracy.
    assert_eq!(model.metadata_props[0].key(), "accuracy");
    let cell0: f64 = sqlx::query_scalar(
        "select value from results where benchmark = 'nb201' and source_key = '0:c10_test_acc_200ep:mean'",
    )
    .fetch_one(&source.pool)
    .await
    .unwrap();
    assert_eq!(
        model.metadata_props[0].value().parse::<f64>().unwrap(),
        cell0
    );
    let csv = std::fs::read_to_string(out.join("metadata.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13);
    assert!(csv.starts_with("file_path,accuracy,dataset\n"));

    // Into a fresh database: the same 12 graphs (hashes) with the same figures.
    let target = spawn_app().await;
    let imported = import(&target, &out).await.unwrap();
    assert_eq!(imported.details["architectures_added"], 12, "{imported:?}");
    assert_eq!(imported.details["results"]["added"], 12);
    let want: Vec<_> = {
        let mut all = figures(&source, "nb201").await;
        let exported: Vec<String> =
            sqlx::query_scalar("select a.graph_hash from architectures a order by a.id limit 12")
                .fetch_all(&source.pool)
                .await
                .unwrap();
        all.retain(|f| exported.contains(&f.0));
        all
    };
    assert_eq!(want.len(), 12);
    assert_eq!(figures(&target, "onnx-bench").await, want);
    let aliases: Vec<String> = sqlx::query_scalar(
        "select value from architecture_aliases where namespace = 'onnx-bench' order by value limit 2",
    )
    .fetch_all(&target.pool)
    .await
    .unwrap();
    assert_eq!(aliases, ["nb201/cifar10/nb201-0", "nb201/cifar10/nb201-1"]);

    // Idempotent: a re-import adds nothing; a re-export writes the same bytes.
    let again = import(&target, &out).await.unwrap();
    assert_eq!(
        (
            again.rows_added,
            again.details["files_already_imported"].as_u64()
        ),
        (0, Some(12))
    );
    export(&source.pool, &nb201_options(&out, 12))
        .await
        .unwrap();
    assert_eq!(std::fs::read(folder.join("nb201-0.onnx")).unwrap(), first);
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["export"], "no staging folders left");
}

#[tokio::test]
async fn a_bad_file_fails_the_import_and_leaves_nothing() {
    let source = spawn_app().await;
    import_nb201(&source).await;
    let out = scratch("broken").join("export");
    export(&source.pool, &nb201_options(&out, 3)).await.unwrap();
    let broken = out.join("nasbench201_simplify/cifar10/zz-broken.onnx");
    std::fs::write(&broken, b"not an onnx model").unwrap();

    let target = spawn_app().await;
    let err = import(&target, &out).await.unwrap_err();
    assert!(format!("{err:#}").contains("zz-broken.onnx"), "{err:#}");
    for table in ["architectures", "results", "imports"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                .fetch_one(&target.pool)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table}");
    }

    // Without an accuracy the file is refused too, naming the problem.
    let model = decode_model(
        std::fs::read(out.join("nasbench201_simplify/cifar10/nb201-1.onnx"))
            .unwrap()
            .into(),
    )
    .unwrap();
    let mut bare = model.clone();
    bare.metadata_props.clear();
    std::fs::write(&broken, prost::Message::encode_to_vec(&bare)).unwrap();
    let err = import(&target, &out).await.unwrap_err();
    assert!(format!("{err:#}").contains("no accuracy"), "{err:#}");

    // An export never replaces a folder that is not an export.
    let foreign = scratch("foreign");
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let err = export(&source.pool, &nb201_options(&foreign, 1))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not an archdb ONNX-Bench export"),
        "{err}"
    );
    assert!(foreign.join("notes.txt").is_file());
    // Nor does it export what is not there.
    let mut options = nb201_options(&scratch("none").join("x"), 1);
    options.dataset = "mnist".into();
    let err = export(&source.pool, &options).await.unwrap_err();
    assert!(err.to_string().contains("no `acc` results"), "{err}");
}
