//! The response cache of the aggregate GETs: repeated calls are served from it, every committed
//! write (upload, delete, import, plain SQL, another `archdb serve` process on the same
//! database) is seen by the next read, `If-None-Match` gives 304 (on uncached lookups too), and
//! keys do not collide.

use std::sync::Arc;
use std::time::Duration;

use archdb::http::ServeConfig;
use archdb::import::{ImportKind, NoProgress, run};
use serde_json::Value;

use crate::common::{ServeProcess, TestApp, fixture, fixture_path, spawn_app, spawn_app_with};

/// One answer: status, `x-archdb-cache`, `ETag` and body.
struct Got {
    status: u16,
    cache: Option<String>,
    etag: Option<String>,
    body: String,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn get_from(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut request = client.get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let resp = request.send().await.expect("request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (status, cache, etag) = (
        resp.status().as_u16(),
        header("x-archdb-cache"),
        header("etag"),
    );
    Got {
        status,
        cache,
        etag,
        body: resp.text().await.expect("body"),
    }
}

async fn get(app: &TestApp, path: &str) -> Got {
    get_from(&app.client, &app.base, path, &[]).await
}

fn rows_with_graph(benchmarks: &Value, name: &str) -> i64 {
    benchmarks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["benchmark"] == name)
        .map_or(0, |b| b["rows_with_graph"].as_i64().unwrap())
}

/// A stored NB201 cell graph and how many result rows link to it.
async fn linked_architecture(app: &TestApp) -> (i64, i64) {
    sqlx::query_as(
        "select architecture_id, count(*) from results where benchmark = 'nb201'
          and architecture_id is not null group by 1 order by 2 desc, 1 limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn answers_are_kept_until_a_write_commits_in_any_process() {
    let app = spawn_app().await;
    crate::benchmarks::import_nb201(&app).await;
    let other = ServeProcess::start(&app.database_url()).await;
    let client = &app.client;

    let first = get(&app, "/v1/benchmarks").await;
    assert_eq!((first.status, first.cache.as_deref()), (200, Some("miss")));
    let second = get(&app, "/v1/benchmarks").await;
    assert_eq!(second.cache.as_deref(), Some("hit"));
    assert_eq!((&second.body, &second.etag), (&first.body, &first.etag));
    let linked = rows_with_graph(&first.json(), "nb201");
    assert!(linked > 0);

    // The other process keeps its own answers.
    let there = get_from(client, &other.base, "/v1/benchmarks", &[]).await;
    assert_eq!(
        (there.cache.as_deref(), &there.body),
        (Some("miss"), &first.body)
    );
    assert_eq!(
        get_from(client, &other.base, "/v1/benchmarks", &[])
            .await
            .cache
            .as_deref(),
        Some("hit")
    );

    // A delete through the other process: this one's next answer has it.
    let (id, rows) = linked_architecture(&app).await;
    let deleted = client
        .delete(format!("{}/v1/architectures/{id}", other.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let after = get(&app, "/v1/benchmarks").await;
    assert_eq!(after.cache.as_deref(), Some("miss"));
    assert_eq!(rows_with_graph(&after.json(), "nb201"), linked - rows);

    // A delete through this process: the other one's next answer has it.
    let (id, more) = linked_architecture(&app).await;
    let deleted = client
        .delete(app.url(&format!("/v1/architectures/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let there = get_from(client, &other.base, "/v1/benchmarks", &[]).await;
    assert_eq!(there.cache.as_deref(), Some("miss"));
    assert_eq!(
        rows_with_graph(&there.json(), "nb201"),
        linked - rows - more
    );

    // An upload through the other process (it changes no aggregate, but nothing is kept
    // across it).
    let uploaded = client
        .post(format!("{}/v1/architectures", other.base))
        .header("content-type", "application/octet-stream")
        .body(fixture("onnx-samples/squeezenet1_0.full.onnx"))
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 201);
    let after = get(&app, "/v1/benchmarks").await;
    assert_eq!(after.cache.as_deref(), Some("miss"));

    // An import (`archdb import` writes through its own connection).
    run(
        &app.pool,
        ImportKind::NbMacro,
        &fixture_path("nb-macro"),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    for base in [&app.base, &other.base] {
        let after = get_from(client, base, "/v1/benchmarks", &[]).await;
        assert_eq!(after.cache.as_deref(), Some("miss"));
        assert!(
            rows_with_graph(&after.json(), "nb-macro") > 0,
            "{}",
            after.body
        );
    }

    // Plain SQL on another connection.
    let summary = "/v1/stats/summary?benchmark=nb201";
    get(&app, summary).await;
    assert_eq!(get(&app, summary).await.cache.as_deref(), Some("hit"));
    let gone = sqlx::query("delete from results where benchmark = 'nb201' and dataset = 'cifar10'")
        .execute(&app.pool)
        .await
        .unwrap()
        .rows_affected();
    assert!(gone > 0);
    let after = get(&app, summary).await;
    assert_eq!(after.cache.as_deref(), Some("miss"));
    let datasets: Vec<Value> = after
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dataset"].clone())
        .collect();
    assert!(
        !datasets.is_empty() && !datasets.contains(&Value::from("cifar10")),
        "{datasets:?}"
    );
}

#[tokio::test]
async fn different_queries_keep_different_answers() {
    let app = spawn_app().await;
    crate::benchmarks::import_nb201(&app).await;
    let paths = [
        "/v1/stats/summary?benchmark=nb201",
        "/v1/stats/summary?benchmark=nb201&dataset=cifar10",
        "/v1/stats/summary?benchmark=other",
        "/v1/results?unique_nn=true&max_rows=5",
        "/v1/results?unique_nn=true&max_rows=6",
        "/v1/results?unique_nn=true&max_rows=6&format=csv",
        "/v1/results/top-models?n=3",
    ];
    let mut first = Vec::new();
    for path in paths {
        let got = get(&app, path).await;
        assert_eq!(
            (got.status, got.cache.as_deref()),
            (200, Some("miss")),
            "{path}"
        );
        first.push(got.body);
    }
    for (path, body) in paths.iter().zip(&first) {
        let got = get(&app, path).await;
        assert_eq!(got.cache.as_deref(), Some("hit"), "{path}");
        assert_eq!(&got.body, body, "{path}");
    }
    let distinct: std::collections::HashSet<&String> = first.iter().collect();
    assert_eq!(
        distinct.len(),
        paths.len(),
        "every query has its own answer"
    );
    assert_eq!(first[2], "[]");
    assert_eq!(
        serde_json::from_str::<Value>(&first[3])
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Errors are not kept; routes that are not cached are not kept either (their ETag is the
    // hash of the bytes just computed).
    for _ in 0..2 {
        let bad = get(&app, "/v1/results?max_rows=-1").await;
        assert_eq!((bad.status, bad.cache, bad.etag), (400, None, None));
    }
    let (id, _) = linked_architecture(&app).await;
    let lookup = get(&app, &format!("/v1/architectures/{id}")).await;
    assert_eq!((lookup.status, lookup.cache), (200, None));
    assert!(lookup.etag.is_some());
}

#[tokio::test]
async fn etags_give_304_while_the_answer_is_current() {
    let app = spawn_app().await;
    let first = get(&app, "/v1/benchmarks").await;
    let etag = first.etag.clone().expect("an ETag");
    assert_eq!(first.body, "[]");
    for held in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
    ] {
        let again = get_from(
            &app.client,
            &app.base,
            "/v1/benchmarks",
            &[("if-none-match", &held)],
        )
        .await;
        assert_eq!((again.status, again.body.as_str()), (304, ""), "{held}");
        assert_eq!(again.etag.as_deref(), Some(etag.as_str()));
    }
    let other = get_from(
        &app.client,
        &app.base,
        "/v1/benchmarks",
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!((other.status, other.body), (200, first.body.clone()));

    // A write that leaves the answer as it was: recomputed, same ETag, still 304.
    let (status, stored) = app
        .upload(fixture("onnx-samples/squeezenet1_0.full.onnx"), "")
        .await;
    assert_eq!(status, 201);

    // An uncached lookup gets an ETag from its bytes, and 304 while they are the same.
    let path = format!("/v1/architectures/{}", stored["id"]);
    let lookup = get(&app, &path).await;
    assert_eq!((lookup.status, lookup.cache.as_deref()), (200, None));
    let lookup_etag = lookup.etag.clone().expect("an ETag on a lookup");
    let held = get_from(
        &app.client,
        &app.base,
        &path,
        &[("if-none-match", &lookup_etag)],
    )
    .await;
    assert_eq!((held.status, held.body.as_str()), (304, ""));
    assert_eq!(held.etag, lookup.etag);
    let stale = get_from(
        &app.client,
        &app.base,
        &path,
        &[("if-none-match", "\"old\"")],
    )
    .await;
    assert_eq!((stale.status, stale.body), (200, lookup.body));

    let same = get_from(
        &app.client,
        &app.base,
        "/v1/benchmarks",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!((same.status, same.cache.as_deref()), (304, Some("miss")));

    // A write that changes it: the full new answer with a new ETag.
    crate::benchmarks::import_nb201(&app).await;
    let changed = get_from(
        &app.client,
        &app.base,
        "/v1/benchmarks",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.etag.as_deref(), Some(etag.as_str()));
    assert!(rows_with_graph(&changed.json(), "nb201") > 0);

    // The document declares it.
    let (_, spec) = app.get_json("/openapi.json").await;
    let get_op = &spec["paths"]["/v1/benchmarks"]["get"];
    assert!(get_op["responses"]["304"].is_object(), "{get_op}");
    assert!(
        get_op["responses"]["200"]["headers"]["ETag"].is_object(),
        "{get_op}"
    );
    assert!(spec["paths"]["/v1/architectures/{id}"]["get"]["responses"]["304"].is_object());
}

#[tokio::test]
async fn answers_are_kept_per_caller_and_large_ones_stream_through() {
    const ADMIN: &str = "admin-secret";
    let app = spawn_app_with(ServeConfig {
        api_token: Some(ADMIN.into()),
        dump_rows: 2,
        cache_bytes: 64 * 1024,
        ..Default::default()
    })
    .await;
    crate::benchmarks::import_nb201(&app).await;
    let bearer = format!("Bearer {ADMIN}");
    let admin = [("authorization", bearer.as_str())];
    let path = "/v1/results?benchmark=nb201&max_rows=5";
    for expected in ["miss", "hit"] {
        let got = get_from(&app.client, &app.base, path, &admin).await;
        assert_eq!((got.status, got.cache.as_deref()), (200, Some(expected)));
    }
    // An anonymous caller may not have more than the cap, kept or not.
    assert_eq!(get(&app, path).await.status, 401);

    // Over an eighth of the cache (8 KiB): streamed whole, never kept.
    let big = "/v1/results?benchmark=nb201&max_rows=1000";
    for _ in 0..2 {
        let got = get_from(&app.client, &app.base, big, &admin).await;
        assert_eq!(
            (got.status, got.cache.as_deref(), got.etag.as_deref()),
            (200, None, None)
        );
        assert_eq!(got.json().as_array().unwrap().len(), 1000);
    }
}

#[tokio::test]
async fn every_data_table_raises_the_version_when_a_write_commits() {
    let app = spawn_app().await;
    // A table without the trigger would let a write go unseen by the cache.
    let untracked: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = current_schema() and c.relkind in ('r', 'p')
            and not exists (select 1 from pg_trigger t
                             where t.tgrelid = c.oid and t.tgname = 'data_version_mark')
          order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        untracked,
        [
            "_sqlx_migrations",
            "data_version",
            "data_version_pending",
            "jobs"
        ]
    );

    let version = || async { archdb::http::cache::data_version(&app.pool).await.unwrap() };
    let before = version().await;
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("insert into imports (kind, path) values ('test', 'a')")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("insert into imports (kind, path) values ('test', 'b')")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(version().await, before, "not before the commit");
    // A second writer is not held up by the first.
    let other = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::query("insert into imports (kind, path) values ('test', 'c')").execute(&app.pool),
    )
    .await;
    assert!(
        other.is_ok(),
        "a concurrent write waited for the open transaction"
    );
    assert_eq!(version().await, before + 1);
    tx.commit().await.unwrap();
    assert_eq!(version().await, before + 2, "one raise per transaction");
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("delete from imports")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(version().await, before + 2, "a rollback raises nothing");
    let pending: i64 = sqlx::query_scalar("select count(*) from data_version_pending")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(pending, 0);
}
