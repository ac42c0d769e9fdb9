//! Bulk ingest: `POST /v1/architectures/batch` (multipart and tar) and `archdb ingest DIR`.

use std::collections::HashMap;

use archdb::generate::{nb201_arch_strings, nb201_model};
use archdb::graph::BuildOptions;
use archdb::http::ServeConfig;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::cli::archdb;
use crate::common::{TestApp, fixture, spawn_app, spawn_app_with};

const SAMPLES: [&str; 4] = [
    "onnx-samples/mobilenet_v2.legacy.onnx",
    "onnx-samples/mobilenet_v3_small.dynamo.onnx",
    "onnx-samples/resnet18.legacy.onnx",
    "onnx-samples/squeezenet1_0.full.onnx",
];

/// The ONNX encodings of the first `n` NB201 cells, named as `archdb generate nb201` names them.
fn nb201_files(n: usize) -> Vec<(String, Vec<u8>)> {
    nb201_arch_strings()
        .take(n)
        .enumerate()
        .map(|(i, arch)| {
            let model = nb201_model(&arch, 10).unwrap();
            (
                format!("nb201-{i}.onnx"),
                prost::Message::encode_to_vec(&model),
            )
        })
        .collect()
}

/// The graph hash of each file, computed without the server.
fn hashes(files: &[(String, Vec<u8>)]) -> Vec<String> {
    files
        .iter()
        .map(|(_, b)| {
            archdb::ingest::ingest(b.clone().into(), BuildOptions::default())
                .unwrap()
                .graph_hash
        })
        .collect()
}

fn form(files: &[(String, Vec<u8>)]) -> Form {
    files.iter().fold(Form::new(), |form, (name, bytes)| {
        form.part(
            "file",
            Part::bytes(bytes.clone())
                .file_name(name.clone())
                .mime_str("application/octet-stream")
                .unwrap(),
        )
    })
}

fn tar(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, &data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

async fn post_form(app: &TestApp, query: &str, form: Form) -> (u16, String, Value) {
    let resp = app
        .client
        .post(app.url(&format!("/v1/architectures/batch{query}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    answer(resp).await
}

async fn post_tar(app: &TestApp, query: &str, body: Vec<u8>) -> (u16, String, Value) {
    let resp = app
        .client
        .post(app.url(&format!("/v1/architectures/batch{query}")))
        .header("content-type", "application/x-tar")
        .body(body)
        .send()
        .await
        .unwrap();
    answer(resp).await
}

async fn answer(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        content_type,
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// No row of any table an upload writes.
async fn assert_nothing_stored(app: &TestApp) {
    for table in [
        "architectures",
        "architecture_graphs",
        "architecture_onnx",
        "architecture_aliases",
    ] {
        assert_eq!(count(app, table).await, 0, "{table}");
    }
}

fn outcomes(report: &Value) -> Vec<(&str, &str)> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["file"].as_str().unwrap(), i["outcome"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn multipart_batch_stores_real_models_with_their_names() {
    let app = spawn_app().await;
    let files: Vec<(String, Vec<u8>)> = SAMPLES
        .iter()
        .map(|p| (p.rsplit('/').next().unwrap().to_string(), fixture(p)))
        .collect();
    let (status, _, report) = post_form(&app, "?source=lab&family=torchvision", form(&files)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["created"], &report["existing"], &report["failed"]),
        (&4.into(), &0.into(), &0.into()),
        "{report}"
    );
    let items = report["items"].as_array().unwrap();
    for ((name, bytes), item) in files.iter().zip(items) {
        assert_eq!(item["file"], name.as_str());
        assert_eq!(item["outcome"], "created");
        let id = item["id"].as_i64().unwrap();
        let (status, arch) = app.get_json(&format!("/v1/architectures/{id}")).await;
        assert_eq!(status, 200);
        let stem = name.strip_suffix(".onnx").unwrap();
        assert_eq!(arch["name"], stem);
        assert_eq!(arch["family"], "torchvision");
        assert_eq!(arch["source"], "lab");
        assert_eq!(
            arch["aliases"],
            serde_json::json!([{"namespace": "lab", "value": stem}])
        );
        // The same graph as a single upload of the file.
        let single = archdb::ingest::ingest(bytes.clone().into(), BuildOptions::default()).unwrap();
        assert_eq!(arch["graph_hash"], single.graph_hash.as_str());
        assert_eq!(arch["num_nodes"], single.graph.summary.num_nodes);
    }
    assert_eq!(count(&app, "architecture_graphs").await, 4);
    assert_eq!(count(&app, "architecture_onnx").await, 4);
    // ResNet-18 uploaded on its own now is the batch's architecture.
    let (status, single) = app
        .upload(fixture("onnx-samples/resnet18.legacy.onnx"), "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(single["id"], items[2]["id"]);
}

#[tokio::test]
async fn tar_batch_of_generated_nb201_cells_deduplicates_within_and_across_batches() {
    let app = spawn_app().await;
    // More than two chunks of the pipelined store, and one cell twice in the batch, under
    // another name, in the last chunk: found as the first chunk stored it.
    let n = 2 * archdb::ingest::CHUNK + 10;
    let mut files = nb201_files(n);
    files.push(("again/copy-of-3.onnx".into(), files[3].1.clone()));
    let hashes = hashes(&files);
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, h) in hashes.iter().enumerate() {
        first.entry(h.as_str()).or_insert(i);
    }
    let distinct = first.len();
    assert!(distinct < files.len());
    let mut entries = files.clone();
    entries.insert(0, ("README.md".into(), b"not a model".to_vec()));
    let (status, _, report) = post_tar(&app, "?family=nb201", tar(&entries)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["skipped"], 1);
    assert_eq!(report["created"], distinct);
    assert_eq!(report["existing"], files.len() - distinct);
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), files.len());
    let mut ids: HashMap<&str, i64> = HashMap::new();
    for (i, (item, hash)) in items.iter().zip(&hashes).enumerate() {
        assert_eq!(item["file"], files[i].0.as_str());
        let expected = if first[hash.as_str()] == i {
            "created"
        } else {
            "existing"
        };
        assert_eq!(item["outcome"], expected, "{}", files[i].0);
        let id = item["id"].as_i64().unwrap();
        assert_eq!(
            *ids.entry(hash.as_str()).or_insert(id),
            id,
            "one id per graph"
        );
    }
    assert_eq!(items[n]["id"], items[3]["id"]);
    assert_eq!(count(&app, "architectures").await, distinct as i64);

    // The same cells again, as multipart: all existing, same ids, nothing added.
    let (status, _, again) = post_form(&app, "", form(&files[..10])).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["existing"], 10);
    for (a, b) in again["items"].as_array().unwrap().iter().zip(items) {
        assert_eq!((&a["outcome"], &a["id"]), (&"existing".into(), &b["id"]));
    }
    assert_eq!(count(&app, "architectures").await, distinct as i64);
}

#[tokio::test]
async fn a_bad_file_gets_its_own_problem_and_the_others_are_stored() {
    let app = spawn_app_with(ServeConfig {
        max_nodes: 100,
        ..Default::default()
    })
    .await;
    let resnet = fixture("onnx-samples/resnet18.legacy.onnx");
    let files = vec![
        ("resnet18.onnx".to_string(), resnet.clone()),
        (
            "garbage.onnx".into(),
            b"\x08\x07 definitely not protobuf".to_vec(),
        ),
        ("truncated.onnx".into(), resnet[..resnet.len() / 3].to_vec()),
        ("empty.onnx".into(), Vec::new()),
        // 209 ONNX nodes: over this server's limit of 100.
        (
            "mobilenet_v2.onnx".into(),
            fixture("onnx-samples/mobilenet_v2.legacy.onnx"),
        ),
        ("squeezenet.onnx".into(), fixture(SAMPLES[3])),
    ];
    let (status, _, report) = post_form(&app, "", form(&files)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        outcomes(&report),
        [
            ("resnet18.onnx", "created"),
            ("garbage.onnx", "problem"),
            ("truncated.onnx", "problem"),
            ("empty.onnx", "problem"),
            ("mobilenet_v2.onnx", "problem"),
            ("squeezenet.onnx", "created"),
        ]
    );
    assert_eq!(
        (&report["created"], &report["failed"]),
        (&2.into(), &4.into())
    );
    let items = report["items"].as_array().unwrap();
    for item in &items[1..4] {
        let problem = &item["problem"];
        assert_eq!(problem["type"], "urn:archdb:problem:invalid-onnx", "{item}");
        assert_eq!(problem["status"], 400, "{item}");
        assert!(
            problem["detail"].as_str().unwrap().contains("ONNX"),
            "{item}"
        );
        assert!(item.get("id").is_none());
    }
    assert!(
        items[3]["problem"]["detail"]
            .as_str()
            .unwrap()
            .contains("empty")
    );
    let too_big = &items[4]["problem"];
    assert_eq!(too_big["status"], 413, "{too_big}");
    assert!(
        too_big["detail"].as_str().unwrap().contains("limit is 100"),
        "{too_big}"
    );
    // The same answers a single upload gives for these files.
    let (status, single) = app.upload(files[1].1.clone(), "").await;
    assert_eq!(
        (status, &single["detail"]),
        (400, &items[1]["problem"]["detail"])
    );
    let (status, single) = app.upload(files[4].1.clone(), "").await;
    assert_eq!((status, &single["detail"]), (413, &too_big["detail"]));
    assert_eq!(count(&app, "architectures").await, 2);

    // A batch of only bad files is answered all the same, and stores nothing.
    let (status, _, report) = post_tar(&app, "", tar(&files[1..3])).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["created"], &report["failed"]),
        (&0.into(), &2.into())
    );
    assert_eq!(count(&app, "architectures").await, 2);
}

#[tokio::test]
async fn caps_and_malformed_batches_are_refused_whole_before_any_work() {
    let app = spawn_app_with(ServeConfig {
        max_batch_files: 3,
        max_upload_bytes: 300_000,
        ..Default::default()
    })
    .await;
    let files = nb201_files(4);
    let problem_json = "application/problem+json";

    let (status, ct, problem) = post_form(&app, "", form(&files)).await;
    assert_eq!((status, ct.as_str()), (413, problem_json), "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at most 3 files"),
        "{problem}"
    );
    let (status, ct, problem) = post_tar(&app, "", tar(&files)).await;
    assert_eq!((status, ct.as_str()), (413, problem_json), "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at most 3 files")
    );
    // Bytes: two 279 kB files pass the file cap but not the body cap.
    let model = fixture(SAMPLES[1]);
    assert!(model.len() > 150_000 && model.len() < 300_000);
    let two = vec![
        ("a.onnx".to_string(), model.clone()),
        ("b.onnx".into(), model),
    ];
    let (status, ct, problem) = post_tar(&app, "", tar(&two)).await;
    assert_eq!((status, ct.as_str()), (413, problem_json), "{problem}");
    let (status, _, problem) = post_form(&app, "", form(&two)).await;
    assert_eq!(status, 413, "{problem}");

    // A source the importers own.
    let (status, ct, problem) = post_form(&app, "?source=nb201", form(&files[..1])).await;
    assert_eq!((status, ct.as_str()), (422, problem_json), "{problem}");
    // No files, an unknown field, a per-file `name`, a body that is no tar, another body type.
    let (status, _, problem) = post_tar(&app, "", tar(&[])).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("no files"));
    let (status, _, problem) = post_form(&app, "?name=x", form(&files[..1])).await;
    assert_eq!(status, 400, "{problem}");
    let named = form(&files[..1]).text("name", "x");
    let (status, _, problem) = post_form(&app, "", named).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("name"));
    let (status, _, problem) = post_tar(&app, "", vec![b'x'; 2048]).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("tar"));
    let resp = app
        .client
        .post(app.url("/v1/architectures/batch"))
        .header("content-type", "application/octet-stream")
        .body(files[0].1.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    assert_eq!(count(&app, "architectures").await, 0);
    // Within the caps the same server takes the batch.
    let (status, _, report) = post_form(&app, "", form(&files[..3])).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["failed"], 0);
}

#[tokio::test]
async fn a_failed_transaction_leaves_nothing_of_the_batch() {
    let app = spawn_app().await;
    // Refuses one alias, the last row the batch writes: everything before it is in the same
    // transaction and must go with it.
    sqlx::raw_sql(
        "create function refuse_alias() returns trigger language plpgsql as $$
         begin
           if new.value = 'explodes' then raise exception 'refused by the test'; end if;
           return new;
         end $$;
         create trigger refuse_alias before insert on architecture_aliases
           for each row execute function refuse_alias();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // The refused file is in the second chunk: the first one was stored in the transaction.
    let n = archdb::ingest::CHUNK + 5;
    let mut files = nb201_files(n);
    files[n - 1].0 = "explodes.onnx".into();
    let (status, ct, problem) = post_form(&app, "", form(&files)).await;
    assert_eq!(status, 500, "{problem}");
    assert_eq!(ct, "application/problem+json");
    assert_nothing_stored(&app).await;
    // Without the refused name the same files go in.
    let (status, _, report) = post_form(&app, "", form(&files[..n - 1])).await;
    assert_eq!(status, 200, "{report}");
    assert!(count(&app, "architectures").await > 0);
}

/// A tar batch is parsed while it arrives: a cap or a malformed archive met only after whole
/// chunks were parsed and stored in the transaction still leaves nothing of the batch.
#[tokio::test]
async fn tar_batches_refused_late_leave_nothing() {
    let n = archdb::ingest::CHUNK + 5;
    let files = nb201_files(n);
    let body = tar(&files);
    let app = spawn_app_with(ServeConfig {
        max_batch_files: n - 1,
        max_upload_bytes: body.len() - 4096,
        ..Default::default()
    })
    .await;
    let within = tar(&files[..n - 1]);
    assert!(within.len() < body.len() - 4096);

    // Sent without a length (chunked), so that only the server's count of the bytes can stop it.
    let chunked = |body: Vec<u8>| {
        let parts: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        reqwest::Body::wrap_stream(futures_util::stream::iter(parts))
    };
    let resp = app
        .client
        .post(app.url("/v1/architectures/batch"))
        .header("content-type", "application/x-tar")
        .body(chunked(body.clone()))
        .send()
        .await
        .unwrap();
    let (status, ct, problem) = answer(resp).await;
    assert_eq!(
        (status, ct.as_str()),
        (413, "application/problem+json"),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("larger than"),
        "{problem}"
    );
    assert_nothing_stored(&app).await;

    // One file over the cap, met after the first chunk was stored.
    let mut over = files[..n - 1].to_vec();
    over.push(("last.onnx".into(), b"not read".to_vec()));
    let (status, _, problem) = post_tar(&app, "", tar(&over)).await;
    assert_eq!(status, 413, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("at most"),
        "{problem}"
    );
    assert_nothing_stored(&app).await;

    // An archive cut inside its last file.
    let (status, _, problem) = post_tar(&app, "", within[..within.len() - 3000].to_vec()).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("tar"),
        "{problem}"
    );
    assert_nothing_stored(&app).await;

    // The files within the caps, streamed too, all go in.
    let resp = app
        .client
        .post(app.url("/v1/architectures/batch"))
        .header("content-type", "application/x-tar")
        .body(chunked(within))
        .send()
        .await
        .unwrap();
    let (status, _, report) = answer(resp).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let stored = report["created"].as_i64().unwrap() + report["existing"].as_i64().unwrap();
    assert_eq!(stored as usize, n - 1);
    assert_eq!(
        count(&app, "architectures").await,
        report["created"].as_i64().unwrap()
    );
}

/// The torchvision exports of the zoo (20 files, 9 MB), streamed as a tar: every file arrives
/// once, in order.
#[tokio::test]
async fn a_tar_of_real_models_arrives_whole_and_in_order() {
    let app = spawn_app().await;
    let manifest: Value =
        serde_json::from_slice(&fixture("zoo/manifest.json")).expect("zoo manifest");
    let files: Vec<(String, Vec<u8>)> = manifest["files"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["source"] == "torchvision")
        .map(|(name, _)| (name.clone(), fixture(&format!("zoo/{name}"))))
        .collect();
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert!(
        files.len() == 20 && total > 8 << 20,
        "{} files, {total} bytes",
        files.len()
    );
    let (status, _, report) = post_tar(&app, "?family=zoo", tar(&files)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let names: Vec<&str> = outcomes(&report).iter().map(|(file, _)| *file).collect();
    let sent: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, sent);
    assert_eq!(
        count(&app, "architectures").await,
        report["created"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn batches_need_the_write_token() {
    let app = spawn_app_with(ServeConfig {
        api_token: Some("admin-for-ingest".into()),
        read_token: Some("reader-for-ingest".into()),
        ..Default::default()
    })
    .await;
    let files = nb201_files(2);
    let post = |token: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/v1/architectures/batch"))
            .multipart(form(&files));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(None).await, 401);
    assert_eq!(post(Some("reader-for-ingest")).await, 403);
    assert_eq!(count(&app, "architectures").await, 0);
    assert_eq!(post(Some("admin-for-ingest")).await, 200);
    assert!(count(&app, "architectures").await > 0);
}

/// A URL of the test app's database for the command line.
async fn database_url(app: &TestApp) -> String {
    let options = app.pool.connect_options();
    let db = options.get_database().unwrap();
    let (host, port, user) = (
        options.get_host(),
        options.get_port(),
        options.get_username(),
    );
    if host.starts_with('/') {
        format!("postgres://{user}@localhost:{port}/{db}?host={host}")
    } else {
        format!("postgres://{user}@{host}:{port}/{db}")
    }
}

#[tokio::test]
async fn the_command_line_ingests_a_folder_in_batches() {
    let app = spawn_app().await;
    let dir = std::env::temp_dir().join(format!("archdb-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = nb201_files(25);
    std::fs::create_dir_all(dir.join("more")).unwrap();
    for (i, (name, bytes)) in files.iter().enumerate() {
        let sub = if i % 2 == 0 { "" } else { "more/" };
        std::fs::write(dir.join(format!("{sub}{name}")), bytes).unwrap();
    }
    std::fs::write(dir.join("broken.onnx"), b"not onnx").unwrap();
    std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
    let distinct = hashes(&files)
        .into_iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let url = database_url(&app).await;
    let folder = dir.to_str().unwrap();
    let run = || {
        archdb(&[
            "ingest",
            folder,
            "--database-url",
            &url,
            "--batch",
            "7",
            "--family",
            "nb201-cli",
        ])
    };
    let (ok, stdout, stderr) = run();
    assert!(ok, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["files"], 26, "{summary}");
    assert_eq!(summary["created"], distinct, "{summary}");
    assert_eq!(summary["existing"], 25 - distinct, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    let problem = &summary["problems"][0];
    assert!(problem["file"].as_str().unwrap().ends_with("broken.onnx"));
    assert!(
        problem["error"].as_str().unwrap().contains("ONNX"),
        "{problem}"
    );
    assert_eq!(count(&app, "architectures").await, distinct as i64);
    let named: i64 = sqlx::query_scalar(
        "select count(*) from architecture_aliases where namespace = 'upload' and value like 'nb201-%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(named, 25, "every file's name is an alias of its graph");

    // A rerun adds nothing.
    let (ok, stdout, stderr) = run();
    assert!(ok, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (&summary["created"], &summary["existing"]),
        (&0.into(), &25.into())
    );
    assert_eq!(count(&app, "architectures").await, distinct as i64);

    let (ok, _, stderr) = archdb(&[
        "ingest",
        folder,
        "--database-url",
        &url,
        "--source",
        "lemur",
    ]);
    assert!(!ok);
    assert!(stderr.contains("reserved"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
