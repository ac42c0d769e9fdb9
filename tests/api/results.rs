//! `archdb import lemur|lemur-onnx` and `/v1/results` on the bundled LEMUR sample
//! (`data/lemur-sample`, 15,338 stat rows of 36 models). Expected counts come from the raw stat
//! rows through `tests/fixtures/lemur/expected.py`, an independent re-implementation of
//! LEMUR's `data()` semantics.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use archdb::import::{self, ImportKind, NoProgress, Progress, Summary, Unit};
use serde_json::Value;

use crate::common::{TestApp, spawn_app};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lemur-sample")
}

async fn import(app: &TestApp, kind: ImportKind, dir: &Path) -> Summary {
    import::run(&app.pool, kind, dir, Arc::new(NoProgress))
        .await
        .unwrap_or_else(|e| panic!("import {kind:?} {}: {e:#}", dir.display()))
}

async fn app_with_sample() -> TestApp {
    let app = spawn_app().await;
    import(&app, ImportKind::Lemur, &sample()).await;
    import(&app, ImportKind::LemurOnnx, &sample().join("onnx")).await;
    app
}

/// The rows of a JSON answer.
async fn rows(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app.get_json(&format!("/v1/results{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body.as_array()
        .unwrap_or_else(|| panic!("{query}: not an array"))
        .clone()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn data_parity_for_every_parameter() {
    let app = app_with_sample().await;
    // (query, rows LEMUR's data() returns for the same arguments; expected.py)
    let cases = [
        ("", 15_338),
        ("?task=img-classification", 6_339),
        ("?task=img-captioning&task=txt-generation", 7_833),
        ("?task=img-classification&dataset=cifar-10", 1_211),
        ("?metric=acc", 8_784),
        ("?metric=ppl", 2_573),
        ("?nn=AlexNet", 2_133),
        ("?nn=AlexNet&nn=LSTM", 7_151),
        ("?epoch=1", 867),
        ("?epoch=1&epoch=2", 1_476),
        ("?nn_prefix=rag-", 311),
        ("?nn_prefix=rag-&nn_prefix=alt-", 507),
        ("?nn_prefix=C10C-", 2_815),
        // Deliberate differences: LEMUR's LIKE would match these case-insensitively / with `_`
        // as a wildcard (C10C-… for C10C_, rag-… for RAG-).
        ("?nn_prefix=RAG-", 0),
        ("?nn_prefix=C10C_", 0),
        ("?only_best_accuracy=true", 1_089),
        (
            "?only_best_accuracy=true&task=img-classification&dataset=cifar-10",
            129,
        ),
        ("?unique_nn=true", 36),
        ("?unique_nn=true&task=img-classification", 32),
        ("?unique_nn=true&only_best_accuracy=true&nn_prefix=alt-", 15),
        ("?dataset=cifar-10&epoch=5&nn_prefix=rag-", 17),
        ("?max_rows=7", 7),
        ("?max_rows=0&nn=AlexNet", 2_133),
        ("?benchmark=lemur&nn=AlexNet", 2_133),
        ("?benchmark=nb201", 0),
        ("?require_prm=dropout", 2_737),
        ("?require=duration&require=transform&require=prm", 15_338),
        ("?require=architecture_id", 2_137),
    ];
    for (query, expected) in cases {
        assert_eq!(rows(&app, query).await.len(), expected, "{query}");
    }

    // Order and max_rows: LEMUR's (task, dataset, metric, nn, epoch), then file order.
    let first: Vec<Value> = rows(&app, "?task=img-classification&max_rows=5")
        .await
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(
        first,
        [
            "b30b80da5c8b9a14db9e8d75c06f54a9",
            "0a2d1ac6556d03791f161f9b1867714c",
            "909ac65c09cf25c72870bbb3cba80593",
            "f062be52217efb36401a9d5cdd570659",
            "853cbc7b858c197908db68d326119a8a"
        ]
    );
    let all = rows(&app, "").await;
    let key = |r: &Value| {
        ["task", "dataset", "metric", "nn"]
            .map(|k| r[k].as_str().unwrap().to_string())
            .to_vec()
            .join("\u{0}")
            + &format!("\u{0}{:05}", r["epoch"].as_i64().unwrap())
    };
    assert!(all.windows(2).all(|w| key(&w[0]) <= key(&w[1])));

    // unique_nn keeps each model's best row (ties: lower epoch first).
    let mut best = rows(&app, "?unique_nn=true&nn_prefix=rag-").await;
    best.sort_by_key(|r| r["nn"].as_str().unwrap().to_string());
    let firsts: Vec<(&str, f64, i64)> = best
        .iter()
        .take(3)
        .map(|r| {
            (
                r["nn"].as_str().unwrap(),
                r["accuracy"].as_f64().unwrap(),
                r["epoch"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        firsts,
        [
            ("rag-003f24dda0265971fea206c01cbd5718", 0.2803, 1),
            (
                "rag-00911d252d4cb74739ac9e1a68ef3b33",
                0.3355414012738854,
                5
            ),
            (
                "rag-00b59653488b5c497a057dcabac390e3",
                0.5500636942675159,
                5
            )
        ]
    );

    // LEMUR's columns, the row exactly as in the raw file, and its graph.
    let row = &rows(&app, "?nn=AlexNet&dataset=celeba-gender&max_rows=1").await[0];
    assert_eq!(row["id"], "b30b80da5c8b9a14db9e8d75c06f54a9");
    assert_eq!(row["accuracy"], 0.9567678589319707);
    assert_eq!(row["duration"], 181_385_810_526i64);
    assert_eq!(row["prm_id"], "d150bf64ed987317eefe53d4bc825e87");
    assert_eq!(row["transform"], "echo_128");
    assert_eq!(
        row["prm"],
        serde_json::json!({"batch": 4, "dropout": 0.031020409415822237, "lr": 0.007472975717862745,
                           "momentum": 0.5516026801745463, "transform": "echo_128"})
    );
    assert!(row.get("nn_code").is_none(), "code only when asked");
    let (_, arch) = app
        .get_json(&format!("/v1/architectures/{}", row["architecture_id"]))
        .await;
    assert!(
        arch["aliases"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"namespace": "lemur", "value": "AlexNet_celeba-gender"}))
    );
}

#[tokio::test]
async fn code_nn_stats_and_nonnull_counterparts() {
    let app = app_with_sample().await;
    let with_code = rows(&app, "?nn=AlexNet&max_rows=1&include_code=true").await;
    let code = with_code[0]["nn_code"].as_str().unwrap();
    assert_eq!(code.len(), 2205);
    assert_eq!(with_code[0]["nn_id"], "a2b5c2c80fca161aa3c379503225f5bb");
    assert_eq!(
        with_code[0]["metric_id"],
        "391356eba2bc6a1dd3361481416c69cb"
    );
    assert!(with_code[0]["transform_id"].is_string());
    assert!(with_code[0]["metric_code"].is_null(), "not shipped");

    // A second statistics row for AlexNet must not multiply its rows (LEMUR's join would).
    sqlx::query("insert into lemur_nn_stat (nn, prm_id, total_params, import_id) select 'AlexNet', 'other', 1, min(id) from imports")
        .execute(&app.pool)
        .await
        .unwrap();
    let stats = rows(&app, "?nn=AlexNet&include_nn_stats=true").await;
    assert_eq!(stats.len(), 2_133);
    assert_eq!(stats[0]["nn_total_params"], 57_012_034);
    assert_eq!(stats[0]["nn_flops"], 501_495_168);
    assert_eq!(stats[0]["nn_stats_meta"]["conv_info"]["count"], 5);
    assert!(rows(&app, "?nn=LSTM&include_nn_stats=true&max_rows=1").await[0]["nn_flops"].is_null());

    // data_withnonnullvalue: require_nn_stat joins on (nn, prm_id), returns just those columns.
    let exact = rows(
        &app,
        "?require_nn_stat=nn_flops&require_nn_stat=total_params",
    )
    .await;
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0]["prm_id"], "d150bf64ed987317eefe53d4bc825e87");
    assert_eq!(exact[0]["nn_flops"], 501_495_168);
    assert!(exact[0].get("nn_max_depth").is_none());
    let no_prm = rows(&app, "?nn=LSTM&include_prm=false&max_rows=3").await;
    assert!(no_prm.iter().all(|r| r["prm"] == serde_json::json!({})));
    let flat = rows(&app, "?nn=LSTM&prm_as_columns=true&max_rows=3").await;
    let keys: Vec<&String> = flat[0].as_object().unwrap().keys().collect();
    for k in ["batch", "lr", "momentum", "prm_transform"] {
        assert!(keys.iter().any(|c| *c == k), "{k} in {keys:?}");
    }
    assert_eq!(flat[0]["prm_transform"], flat[0]["transform"]);
    assert_eq!(flat[0]["lr"], flat[0]["prm"]["lr"]);
}

#[tokio::test]
async fn csv_and_jsonl_stream_the_same_rows() {
    let app = app_with_sample().await;
    let json = rows(&app, "?nn=AlexNet&include_code=true").await;
    let get = |q: &str| {
        let url = app.url(&format!(
            "/v1/results?nn=AlexNet&include_code=true&format={q}"
        ));
        let client = app.client.clone();
        async move {
            let resp = client.get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
            (ct, resp.bytes().await.unwrap())
        }
    };
    let (ct, jsonl) = get("jsonl").await;
    assert_eq!(ct, "application/x-ndjson");
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(lines, json);

    let (ct, csv) = get("csv").await;
    assert!(ct.starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(csv.as_ref());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "id");
    assert!(header.iter().any(|h| h == "nn_code"));
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 2_133);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (record, row) in records.iter().zip(&json).take(50) {
        assert_eq!(&record[col("id")], row["id"].as_str().unwrap());
        assert_eq!(
            record[col("accuracy")].parse::<f64>().unwrap(),
            row["accuracy"].as_f64().unwrap()
        );
        let prm: Value = serde_json::from_str(&record[col("prm")]).unwrap();
        assert_eq!(prm, row["prm"]);
        assert_eq!(&record[col("nn_code")], row["nn_code"].as_str().unwrap());
        assert_eq!(&record[col("split")], "", "null is an empty field");
    }
}

#[tokio::test]
async fn joinconf_counterparts_and_runs() {
    let app = app_with_sample().await;
    // Var-N: the best row of each model, best models first (expected.py).
    let (status, top) = app
        .get_json("/v1/results/top-models?n=3&dataset=cifar-10")
        .await;
    assert_eq!(status, 200, "{top}");
    let top: Vec<(&str, f64)> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["nn"].as_str().unwrap(), r["accuracy"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        top,
        [
            ("AlexNet", 0.8675),
            ("ComplexNet", 0.7273),
            ("rag-0365dd10c325559bfe0902ae7a2fbaa7", 0.7)
        ]
    );

    // Pairs: (model, better model on the same task, dataset, metric and epoch).
    let query = "/v1/results/pairs?same=task&same=dataset&same=metric&same=epoch&diff=nn&better=true\
                 &task=img-classification&max_rows=200&seed=1";
    let (status, pairs) = app.get_json(query).await;
    assert_eq!(status, 200, "{pairs}");
    let pairs = pairs.as_array().unwrap();
    assert_eq!(pairs.len(), 200);
    let with_partner: Vec<&Value> = pairs.iter().filter(|p| !p["nn_2"].is_null()).collect();
    assert!(!with_partner.is_empty());
    for p in &with_partner {
        for c in ["task", "dataset", "metric", "epoch"] {
            assert_eq!(p[c], p[format!("{c}_2")]);
        }
        assert_ne!(p["nn"], p["nn_2"]);
        assert!(p["accuracy_2"].as_f64() > p["accuracy"].as_f64());
    }
    let (_, again) = app.get_json(query).await;
    assert_eq!(
        &again.as_array().unwrap()[..],
        &pairs[..],
        "a seed repeats the pairs"
    );
    let (_, only) = app.get_json(&format!("{query}&require_partner=true")).await;
    assert_eq!(only.as_array().unwrap().len(), with_partner.len());

    // Similar models by code MinHash: the anchor itself is never among them.
    let (status, similar) = app
        .get_json(
            "/v1/lemur/similar?anchor_nn=alt-0006f20cc50a90b11b218f712d9bc45b&n=5&overfetch=2",
        )
        .await;
    assert_eq!(status, 200, "{similar}");
    let similar = similar.as_array().unwrap();
    assert!(!similar.is_empty() && similar.len() <= 10);
    let mut nns = std::collections::HashSet::new();
    for r in similar {
        assert_eq!(r["anchor_nn"], "alt-0006f20cc50a90b11b218f712d9bc45b");
        assert_ne!(r["nn"], r["anchor_nn"]);
        assert!(
            nns.insert(r["nn"].as_str().unwrap().to_string()),
            "one row per model"
        );
        let j = r["anchor_jaccard"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&j));
    }
    let accuracies: Vec<f64> = similar
        .iter()
        .map(|r| r["accuracy"].as_f64().unwrap())
        .collect();
    assert!(accuracies.windows(2).all(|w| w[0] >= w[1]));
    // Generated alt- models share most of their code: they are each other's near neighbours.
    let (status, near) = app
        .get_json("/v1/lemur/similar?band=low&nn_prefix=alt-&n=2")
        .await;
    assert_eq!(status, 200, "{near}");
    assert!(near.as_array().unwrap().iter().all(|r| {
        let j = r["anchor_jaccard"].as_f64().unwrap();
        (0.60..0.85).contains(&j)
    }));

    let (status, runs) = app.get_json("/v1/lemur/runs").await;
    assert_eq!(status, 200);
    assert_eq!(runs.as_array().unwrap().len(), 3);
    let (_, one) = app.get_json("/v1/lemur/runs?model_name=AlexNet").await;
    assert_eq!(one[0]["device_type"], "sdk_gphone64_x86_64");
    assert_eq!(one[0]["valid"], true);
}

#[tokio::test]
async fn bad_parameters_are_problem_json() {
    let app = spawn_app().await;
    for (path, needle) in [
        ("/v1/results?datset=cifar-10", "unknown parameter `datset`"),
        ("/v1/results?epoch=one", "epoch"),
        ("/v1/results?format=xml", "xml"),
        ("/v1/results?max_rows=-1", "max_rows"),
        ("/v1/results?unique_nn=maybe", "unique_nn"),
        ("/v1/results?require=colour", "colour"),
        ("/v1/results?require_nn_stat=nn_colour", "nn_colour"),
        ("/v1/results/top-models", "n"),
        ("/v1/results/top-models?n=0", "n must be"),
        ("/v1/results/pairs?diff=nn", "same"),
        ("/v1/results/pairs?same=colour", "colour"),
        ("/v1/results/pairs?same=task&max_rows=20000", "at most 1000"),
        (
            "/v1/results/pairs?same=task&prm_as_columns=true",
            "prm_as_columns",
        ),
        ("/v1/lemur/similar?band=tiny", "tiny"),
        ("/v1/lemur/runs?model=AlexNet", "unknown parameter `model`"),
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = resp.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{path}: {detail}");
    }
    let (status, problem) = app.get_json("/v1/lemur/similar?anchor_nn=NoSuchNet").await;
    assert_eq!(status, 404, "{problem}");
    // An empty database answers an empty array, not an error.
    assert_eq!(rows(&app, "?nn=AlexNet").await.len(), 0);
}

#[tokio::test]
async fn imports_are_idempotent_and_link_graphs() {
    let app = spawn_app().await;
    // Graphs first, statistics second: the links do not depend on the order.
    let onnx = import(&app, ImportKind::LemurOnnx, &sample().join("onnx")).await;
    assert_eq!(
        (onnx.rows_read, onnx.rows_added),
        (8, 7),
        "AlexNet on svhn = its cifar-10 graph"
    );
    let first = import(&app, ImportKind::Lemur, &sample()).await;
    assert_eq!(first.details["results"]["added"], 15_338);
    assert_eq!(first.details["lemur_code:nn"]["added"], 36);
    assert_eq!(first.details["results_linked_to_graphs"], 2_137);
    let again = import(&app, ImportKind::Lemur, &sample()).await;
    assert_eq!(again.rows_added, 0);
    assert_eq!(again.details["results_linked_to_graphs"], 0);
    let onnx_again = import(&app, ImportKind::LemurOnnx, &sample().join("onnx")).await;
    assert_eq!(onnx_again.rows_added, 0);
    assert_eq!(count(&app, "results").await, 15_338);
    assert_eq!(count(&app, "architectures").await, 7);
    assert_eq!(count(&app, "imports").await, 4);

    // Each row points at the graph of its dataset, else its model's cifar-10 graph.
    let graph = |alias: &str| {
        let pool = app.pool.clone();
        let alias = alias.to_string();
        async move {
            sqlx::query_scalar::<_, i64>("select architecture_id from architecture_aliases where namespace = 'lemur' and value = $1")
                .bind(alias)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    for (dataset, alias) in [
        ("mnist", "AlexNet_mnist"),
        ("cifar-10", "AlexNet"),
        ("svhn", "AlexNet_svhn"),
        ("places365", "AlexNet"),
    ] {
        let linked = rows(&app, &format!("?nn=AlexNet&dataset={dataset}&max_rows=1")).await;
        assert_eq!(
            linked[0]["architecture_id"],
            graph(alias).await,
            "{dataset}"
        );
    }
    assert_eq!(graph("AlexNet_svhn").await, graph("AlexNet").await);
    assert!(
        rows(&app, "?nn=LSTM&max_rows=1").await[0]["architecture_id"].is_null(),
        "no graph"
    );
    // A deleted graph unlinks its rows; the next import links them to the fallback graph.
    let id = graph("AlexNet_mnist").await;
    let mnist = "?nn=AlexNet&dataset=mnist&max_rows=1";
    app.client
        .delete(app.url(&format!("/v1/architectures/{id}")))
        .send()
        .await
        .unwrap();
    assert!(rows(&app, mnist).await[0]["architecture_id"].is_null());
    let relinked = import(&app, ImportKind::Lemur, &sample()).await;
    assert_eq!(relinked.rows_added, 0);
    assert_eq!(
        rows(&app, mnist).await[0]["architecture_id"],
        graph("AlexNet").await
    );
}

/// Stops the import at its first statistics bytes until released.
struct Gate {
    phase: Mutex<String>,
    reached: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Progress for Gate {
    fn phase(&self, name: &str, _: u64, _: Unit) {
        *self.phase.lock().unwrap() = name.to_string();
    }
    fn advance(&self, _: u64) {
        if *self.phase.lock().unwrap() != "statistics" {
            return;
        }
        if let Some(reached) = self.reached.lock().unwrap().take() {
            reached.send(()).unwrap();
            let _ = self.release.lock().unwrap().recv();
        }
    }
}

#[tokio::test]
async fn a_killed_import_leaves_nothing() {
    let app = spawn_app().await;
    let (reached_tx, reached) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        phase: Mutex::new(String::new()),
        reached: Mutex::new(Some(reached_tx)),
        release: Mutex::new(release_rx),
    });
    let pool = app.pool.clone();
    let task =
        tokio::spawn(async move { import::run(&pool, ImportKind::Lemur, &sample(), gate).await });
    // The model code is already merged and the statistics COPY has begun: kill the import.
    tokio::task::spawn_blocking(move || reached.recv().unwrap())
        .await
        .unwrap();
    task.abort();
    let _ = release.send(());
    assert!(task.await.unwrap_err().is_cancelled());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for table in ["results", "lemur_code", "lemur_run", "imports"] {
        assert_eq!(count(&app, table).await, 0, "{table}");
    }
    // The database is usable and the import works afterwards.
    assert_eq!(
        import(&app, ImportKind::Lemur, &sample()).await.rows_added,
        15_587
    );
}

#[tokio::test]
async fn a_failed_import_leaves_nothing() {
    let app = spawn_app().await;
    let dir = std::env::temp_dir().join(format!("archdb-lemur-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        sample().join("lemur_nn.jsonl.gz"),
        dir.join("lemur_nn.jsonl.gz"),
    )
    .unwrap();
    let lines: Vec<String> = std::io::BufReader::new(flate2::read::GzDecoder::new(
        std::fs::File::open(sample().join("lemur_stat.jsonl.gz")).unwrap(),
    ))
    .lines()
    .map(Result::unwrap)
    .collect();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("lemur_stat.jsonl.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    for (i, line) in lines.iter().enumerate() {
        // 12,000 good rows (more than one COPY chunk), then a truncated record.
        let line = if i == 12_000 { &line[..40] } else { line };
        writeln!(gz, "{line}").unwrap();
    }
    gz.finish().unwrap();
    let err = import::run(&app.pool, ImportKind::Lemur, &dir, Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("line 12001"), "{err:#}");
    for table in ["results", "lemur_code", "imports"] {
        assert_eq!(count(&app, table).await, 0, "{table}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `only_best_accuracy` (index-only maxima, then the best rows) returns exactly the rows of the
/// plain definition — a window over the whole selected rows — in the same order, with ties, with
/// null epochs (NB201's parameter counts), and with `unique_nn` and `max_rows`.
#[tokio::test]
async fn only_best_accuracy_equals_the_window_definition() {
    let app = app_with_sample().await;
    let nb201 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nb201");
    import(&app, ImportKind::Nb201, &nb201).await;
    // (query, the same selection in SQL, max_rows)
    let cases: [(&str, &str, Option<i64>); 9] = [
        ("", "true", None),
        ("&nn=AlexNet", "nn = 'AlexNet'", None),
        (
            "&task=img-classification&dataset=cifar-10&nn=AlexNet",
            "task = 'img-classification' and dataset = 'cifar-10' and nn = 'AlexNet'",
            None,
        ),
        ("&nn=AlexNet&nn=LSTM", "nn in ('AlexNet', 'LSTM')", None),
        ("&nn_prefix=rag-", "nn like 'rag-%'", None),
        ("&benchmark=nb201", "benchmark = 'nb201'", None),
        (
            "&benchmark=nb201&metric=params_m",
            "benchmark = 'nb201' and metric = 'params_m'",
            None,
        ),
        ("&max_rows=50", "true", Some(50)),
        (
            "&dataset=cifar-10&max_rows=20",
            "dataset = 'cifar-10'",
            Some(20),
        ),
    ];
    for (query, condition, limit) in cases {
        let expected: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select source_key from (select r.*, max(value) over (partition by task, dataset, \
             metric, nn, epoch, benchmark) as best from results r where {condition}) w \
             where value = best order by task, dataset, metric, nn, epoch, benchmark, id limit {}",
            limit.map_or("all".to_string(), |n| n.to_string())
        )))
        .fetch_all(&app.pool)
        .await
        .unwrap();
        assert!(!expected.is_empty(), "{query}");
        let got: Vec<String> = rows(&app, &format!("?only_best_accuracy=true{query}"))
            .await
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, expected, "{query}");
    }
    // Null epochs form one group per (…, nn) as in the window: NB201 parameter counts.
    let params = rows(
        &app,
        "?only_best_accuracy=true&benchmark=nb201&metric=params_m",
    )
    .await;
    assert!(params.iter().all(|r| r["epoch"].is_null()));
    // unique_nn first, then only_best_accuracy: one row per model.
    let unique = rows(&app, "?unique_nn=true&only_best_accuracy=true").await;
    let unique_expected = rows(&app, "?unique_nn=true").await;
    let ids = |rows: &[Value]| -> Vec<Value> { rows.iter().map(|r| r["id"].clone()).collect() };
    assert_eq!(
        ids(&unique),
        ids(&unique_expected)
            .into_iter()
            .zip(&unique_expected)
            .filter(|(_, r)| !r["accuracy"].is_null())
            .map(|(id, _)| id)
            .collect::<Vec<_>>()
    );
}
