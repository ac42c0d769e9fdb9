//! `nb-macro`, `naslib-zc` and `nas-bench-graph` imports on small subsets of the real files
//! (`tests/fixtures/<kind>/README.md` says which rows): exact row counts, links to graphs, and
//! idempotence.

use std::sync::Arc;

use archdb::db::architectures::{self, NewArchitecture};
use archdb::generate::nb201_model;
use archdb::graph::BuildOptions;
use archdb::import::{ImportKind, NoProgress, Summary, nb201, run};
use archdb::ingest::ingest;

use crate::common::{TestApp, fixture_path, spawn_app};

async fn import(app: &TestApp, kind: ImportKind) -> Summary {
    run(
        &app.pool,
        kind,
        &fixture_path(&kind.name()),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_or_else(|e| panic!("{} import: {e:#}", kind.name()))
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn value(app: &TestApp, benchmark: &str, source_key: &str) -> f64 {
    sqlx::query_scalar("select value from results where benchmark = $1 and source_key = $2")
        .bind(benchmark)
        .bind(source_key)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{benchmark} {source_key}: {e}"))
}

#[tokio::test]
async fn nb_macro_links_every_code_to_its_generated_network() {
    let app = spawn_app().await;
    let first = import(&app, ImportKind::NbMacro).await;
    // 32 codes naming 29 trained networks; 7 figures per code (3 runs, mean, std, params, FLOPs).
    assert_eq!(first.details["codes"], 32, "{first:?}");
    assert_eq!(first.details["architectures"]["added"], 29);
    assert_eq!(first.details["results"]["added"], 32 * 7);
    assert_eq!(
        count(
            &app,
            "select count(*) from results where benchmark = 'nb-macro'"
        )
        .await,
        224
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from results where benchmark = 'nb-macro' and architecture_id is null"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from architectures where family = 'nb-macro'"
        )
        .await,
        29
    );
    // Every code is an alias, and so is the trained code that names each network (13 of them
    // are not among the 32); codes that trained the same network share its architecture.
    assert_eq!(
        count(
            &app,
            "select count(*) from architecture_aliases where namespace = 'nb-macro'"
        )
        .await,
        32 + 13
    );
    for (code, trained) in [("00000001", "00000010"), ("10201020", "10210020")] {
        let ids: Vec<i64> = sqlx::query_scalar(
            "select distinct architecture_id from architecture_aliases where namespace = 'nb-macro' and value in ($1, $2)",
        )
        .bind(code)
        .bind(trained)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        assert_eq!(ids.len(), 1, "{code} and {trained}");
    }
    // The generated networks have exactly the published parameter counts.
    assert_eq!(
        count(
            &app,
            "select count(*) from results r join architectures a on a.id = r.architecture_id
             where r.benchmark = 'nb-macro' and r.metric = 'params' and a.params::float8 = r.value"
        )
        .await,
        32
    );
    assert!((value(&app, "nb-macro", "22212202:mean_acc").await - 93.126_667).abs() < 1e-3);
    assert_eq!(
        value(&app, "nb-macro", "00011110:params").await,
        1_118_378.0
    );
    let seeds: Vec<Option<i32>> = sqlx::query_scalar(
        "select seed from results where benchmark = 'nb-macro' and nn = '22212202' and metric = 'acc' order by seed",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(seeds, [Some(0), Some(1), Some(2), None]);

    let again = import(&app, ImportKind::NbMacro).await;
    assert_eq!(again.rows_added, 0, "{again:?}");
    assert_eq!(
        count(&app, "select count(*) from imports where kind = 'nb-macro'").await,
        2
    );
}

/// Stores NB201 cells the way `import nb201` does (CIFAR-10 network, `nb201-arch` alias): the
/// NASLib subset shares no cell with the NB201 fixture.
async fn store_nb201_cells(app: &TestApp, cells: &[&str]) {
    let mut conn = app.pool.acquire().await.unwrap();
    for cell in cells {
        let bytes = prost::Message::encode_to_vec(&nb201_model(cell, 10).unwrap());
        let model = ingest(bytes.into(), BuildOptions::default()).unwrap();
        let (arch, _) = architectures::insert(&app.pool, &model, &NewArchitecture::default())
            .await
            .unwrap();
        architectures::add_alias(&mut conn, nb201::ARCH_ALIAS, cell, arch.id)
            .await
            .unwrap();
    }
}

/// `(0, 2, 3, 2, 3, 1)` (3 samples) and `(0, 1, 3, 1, 1, 1)` (1 NB201 sample; the same string is
/// also a TransNAS micro sample, which must stay unlinked).
const CELLS: [&str; 2] = [
    "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|",
    "|skip_connect~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|",
];
/// Rows of the 4 NB201 samples of [`CELLS`]: `val_accuracy` and 12 proxies each.
const CELL_ROWS: i64 = 4 * 13;

/// Rows of the fixture's samples whose networks the import generates (3 NB101 and 5 TransNAS
/// samples × 12 rows, 3 NB301 × 13; tests/api/search_spaces.rs).
const GENERATED_ROWS: i64 = 3 * 12 + 5 * 12 + 3 * 13;

const LINKED: &str =
    "select count(*) from results where benchmark = 'naslib-zc' and architecture_id is not null";

#[tokio::test]
async fn naslib_zc_rows_link_to_nb201_cells_imported_before_or_after() {
    let app = spawn_app().await;
    let first = import(&app, ImportKind::NaslibZc).await;
    // 26 samples: 16 with 12 proxies (NB201, NB301), 10 with 11, plus val_accuracy each.
    assert_eq!(first.details["samples"], 26, "{first:?}");
    assert_eq!(first.details["results"]["added"], 325);
    assert_eq!(first.details["rows_linked"], GENERATED_ROWS);
    assert_eq!(count(&app, LINKED).await, GENERATED_ROWS);
    // Python's `-Infinity` is kept.
    assert_eq!(
        value(
            &app,
            "naslib-zc",
            "nasbench201/cifar10/(1, 0, 1, 4, 0, 1)/nwot"
        )
        .await,
        f64::NEG_INFINITY
    );
    assert_eq!(
        value(
            &app,
            "naslib-zc",
            "nasbench201/cifar10/(0, 2, 3, 2, 3, 1)/val_accuracy"
        )
        .await,
        86.06
    );
    // val_accuracy means a different figure per TransNAS task.
    let metrics: Vec<(String, String, String)> = sqlx::query_as(
        "select distinct task::text, dataset::text, metric::text from results
         where benchmark = 'naslib-zc' and split = 'valid' order by 1, 2, 3",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let metrics: Vec<String> = metrics
        .into_iter()
        .map(|(t, d, m)| format!("{t}/{d}/{m}"))
        .collect();
    assert_eq!(
        metrics,
        [
            "autoencoder/taskonomy/ssim",
            "class_object/taskonomy/acc",
            "class_scene/taskonomy/acc",
            "img-classification/ImageNet16-120/acc",
            "img-classification/cifar10/acc",
            "img-classification/cifar100/acc",
            "jigsaw/taskonomy/acc",
            "normal/taskonomy/ssim",
            "room_layout/taskonomy/neg_loss",
            "segmentsemantic/taskonomy/pixel_acc",
        ]
    );

    // `import nb201` after: a re-run adds nothing but links the rows.
    store_nb201_cells(&app, &CELLS).await;
    let again = import(&app, ImportKind::NaslibZc).await;
    assert_eq!(again.rows_added, 0, "{again:?}");
    assert_eq!(again.details["nb201_cells_found"], 2);
    assert_eq!(again.details["rows_linked"], CELL_ROWS);
    assert_eq!(count(&app, LINKED).await, CELL_ROWS + GENERATED_ROWS);
    // The TransNAS sample with the same encoding as an NB201 cell keeps its own network.
    assert_eq!(
        count(
            &app,
            "select count(*) from results r join architecture_aliases a using (architecture_id)
             where r.nn = '(0, 1, 3, 1, 1, 1)' and a.namespace = 'naslib:transbench101_micro:class_scene'
             and r.hyperparameters->>'search_space' = 'transbench101_micro'"
        )
        .await,
        12
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from architecture_aliases a join architecture_aliases c using (architecture_id)
             where a.namespace = 'naslib:nasbench201' and c.namespace = 'nb201-arch'"
        )
        .await,
        2
    );
    let third = import(&app, ImportKind::NaslibZc).await;
    assert_eq!(
        (third.rows_added, &third.details["rows_linked"]),
        (0, &serde_json::json!(0))
    );

    // `import nb201` before: the rows are linked as they are added.
    let app = spawn_app().await;
    store_nb201_cells(&app, &CELLS).await;
    let first = import(&app, ImportKind::NaslibZc).await;
    assert_eq!(
        first.details["rows_linked"],
        CELL_ROWS + GENERATED_ROWS,
        "{first:?}"
    );
    assert_eq!(count(&app, LINKED).await, CELL_ROWS + GENERATED_ROWS);
}

#[tokio::test]
async fn nas_bench_graph_stores_four_figures_per_dataset_and_arch() {
    let app = spawn_app().await;
    let first = import(&app, ImportKind::NasBenchGraph).await;
    // 32 (dataset, arch) rows × (valid perf, test perf, latency, params).
    assert_eq!(first.details["results"]["added"], 32 * 4, "{first:?}");
    assert_eq!(
        count(&app, "select count(*) from results where benchmark = 'nas-bench-graph' and task = 'node-classification' and architecture_id is null").await,
        128
    );
    assert_eq!(
        count(
            &app,
            "select count(distinct dataset) from results where benchmark = 'nas-bench-graph'"
        )
        .await,
        9
    );
    // Hash 0 on cora, as in the data README.
    let cora: Vec<(String, Option<String>, f64)> = sqlx::query_as(
        "select metric::text, split, value from results
         where benchmark = 'nas-bench-graph' and dataset = 'cora' and nn = '0000:gat-gat-gat-gat' order by metric, split",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        cora,
        [
            ("latency_s".into(), None, 0.005922238),
            ("params".into(), None, 1.736711),
            ("perf".into(), Some("test".into()), 0.797),
            ("perf".into(), Some("valid".into()), 0.77333333),
        ]
    );
    assert_eq!(
        value(&app, "nas-bench-graph", "proteins:81111:test_perf").await,
        0.71837742
    );

    let again = import(&app, ImportKind::NasBenchGraph).await;
    assert_eq!(again.rows_added, 0, "{again:?}");
    let (status, benchmarks) = app.get_json("/v1/benchmarks").await;
    assert_eq!(status, 200);
    let graph = benchmarks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["benchmark"] == "nas-bench-graph")
        .unwrap();
    assert_eq!(
        (&graph["models"], &graph["rows"], &graph["rows_with_graph"]),
        (
            &serde_json::json!(9),
            &serde_json::json!(128),
            &serde_json::json!(0)
        )
    );
}

/// The importers' batched insert stores exactly what one upload at a time stores (the API
/// serves the same architecture, graph and ONNX), deduplicates within the batch and against
/// stored graphs, and records every name as an alias of the right architecture.
#[tokio::test]
async fn batched_architecture_inserts_match_single_inserts() {
    let model = |cell: &str| {
        let bytes = prost::Message::encode_to_vec(&nb201_model(cell, 10).unwrap());
        ingest(bytes.into(), BuildOptions::default()).unwrap()
    };
    let (a, b, c) = (model(CELLS[0]), model(CELLS[1]), model(THIRD_CELL));
    // The same graph under another name (as NB201 cells that build equal networks).
    let c_twin = c.clone();
    let meta = |name: &str| NewArchitecture {
        name: Some(name.into()),
        family: Some("nb201".into()),
        source: Some("test".into()),
    };
    let batched = spawn_app().await;
    let (stored_b, _) = architectures::insert(&batched.pool, &b, &meta("b"))
        .await
        .unwrap();
    let metas = [
        meta("a"),
        meta("a-again"),
        meta("b-again"),
        meta("c"),
        meta("c-twin"),
    ];
    let items = [&a, &a, &b, &c, &c_twin]
        .into_iter()
        .zip(&metas)
        .collect::<Vec<_>>();
    let mut tx = batched.pool.begin().await.unwrap();
    let out = architectures::insert_batch_in(&mut tx, &items)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let flags: Vec<bool> = out.iter().map(|o| o.1).collect();
    assert_eq!(flags, [true, false, false, true, false]);
    assert_eq!(out[0].0, out[1].0);
    assert_eq!(out[2].0, stored_b.id);
    assert_eq!(out[3].0, out[4].0);
    assert!(out[0].0 < out[3].0, "ids follow the input order");
    for ((_, meta), (id, _)) in items.iter().zip(&out) {
        let target: i64 = sqlx::query_scalar(
            "select architecture_id from architecture_aliases where namespace = 'test' and value = $1",
        )
        .bind(meta.name.as_deref().unwrap())
        .fetch_one(&batched.pool)
        .await
        .unwrap();
        assert_eq!(target, *id, "{meta:?}");
    }
    // Again: nothing new, same ids.
    let mut tx = batched.pool.begin().await.unwrap();
    let again = architectures::insert_batch_in(&mut tx, &items)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        again,
        out.iter().map(|(id, _)| (*id, false)).collect::<Vec<_>>()
    );

    // The same models one at a time, in another database: the API answers the same.
    let single = spawn_app().await;
    for (model, meta) in [(&a, &metas[0]), (&c, &metas[3])] {
        let (arch, created) = architectures::insert(&single.pool, model, meta)
            .await
            .unwrap();
        assert!(created);
        let batched_id = out[if meta.name.as_deref() == Some("a") {
            0
        } else {
            3
        }]
        .0;
        for suffix in ["", "/graph", "/graph?format=dot"] {
            let one = single
                .client
                .get(single.url(&format!("/v1/architectures/{}{suffix}", arch.id)))
                .send()
                .await
                .unwrap();
            let two = batched
                .client
                .get(batched.url(&format!("/v1/architectures/{batched_id}{suffix}")))
                .send()
                .await
                .unwrap();
            assert_eq!((one.status().as_u16(), two.status().as_u16()), (200, 200));
            let (one, two) = (one.text().await.unwrap(), two.text().await.unwrap());
            if suffix.is_empty() {
                let strip = |s: &str| {
                    let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
                    let o = v.as_object_mut().unwrap();
                    for k in ["id", "created_at", "aliases"] {
                        o.remove(k);
                    }
                    v
                };
                assert_eq!(strip(&one), strip(&two));
            } else {
                assert_eq!(one, two, "{suffix}");
            }
        }
        let onnx = |app: &TestApp, id: i64| {
            let url = app.url(&format!("/v1/architectures/{id}/onnx"));
            let client = app.client.clone();
            async move { client.get(url).send().await.unwrap().bytes().await.unwrap() }
        };
        assert_eq!(
            onnx(&single, arch.id).await,
            onnx(&batched, batched_id).await
        );
        assert_eq!(
            onnx(&single, arch.id).await.as_ref(),
            archdb::ingest::decompress_onnx(&model.stored_onnx)
                .unwrap()
                .as_slice()
        );
    }
}

/// A cell that neither [`CELLS`] nor the fixtures hold.
const THIRD_CELL: &str =
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|";
