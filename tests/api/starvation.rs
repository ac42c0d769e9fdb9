//! Hostile and careless clients cannot take the database or the connections from the others:
//! raw TCP clients that never read, that go away, that never finish their headers or body.

use std::time::{Duration, Instant};

use archdb::http::ServeConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestApp, fixture, spawn_app_with};

/// Adds `n` result rows with `pad` bytes of hyperparameters each (fat rows fill socket buffers
/// without making the test wait for a large insert).
async fn add_results(app: &TestApp, n: i64, pad: i32) {
    sqlx::query(
        "insert into results (benchmark, source_key, task, dataset, metric, nn, epoch, value, hyperparameters, import_id)
         select 'lemur', 'k' || i, 'img-classification', 'cifar-10', 'acc', 'net-' || (i % 500), i % 50, random(),
                jsonb_build_object('pad', repeat('x', $2)), 0
         from generate_series(1, $1) as i",
    )
    .bind(n)
    .bind(pad)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// A raw connection that sends `request` and reads nothing.
async fn send_raw(app: &TestApp, request: &str) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: archdb\r\n\r\n")
}

/// Queries on this test's database that touch `results`, other than the asking one.
async fn result_queries(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid()
           and state = 'active' and query ilike '%from results%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// Polls until no query on `results` runs, for at most `limit`; returns how long it took.
async fn until_no_result_queries(app: &TestApp, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if result_queries(app).await == 0 {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn upload_one(app: &TestApp) -> i64 {
    let (status, arch) = app
        .upload(fixture("onnx-samples/resnet18.legacy.onnx"), "")
        .await;
    assert_eq!(status, 201);
    arch["id"].as_i64().unwrap()
}

/// A lookup must answer within a second; returns how long it took.
async fn assert_lookup_is_served(app: &TestApp, id: i64) -> Duration {
    let started = Instant::now();
    let resp = app
        .client
        .get(app.url(&format!("/v1/architectures/{id}")))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .expect("a lookup answered within a second");
    assert_eq!(resp.status(), 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1));
    took
}

#[tokio::test]
async fn clients_that_never_read_do_not_hold_the_database() {
    let app = spawn_app_with(ServeConfig {
        stream_stall_secs: 2,
        ..Default::default()
    })
    .await;
    add_results(&app, 4_000, 16_000).await;
    let id = upload_one(&app).await;
    // 16 dumps of 64 MB that nobody reads: more than the request pool (8 in tests) holds.
    let mut hostile = Vec::new();
    let began = Instant::now();
    for _ in 0..16 {
        hostile.push(send_raw(&app, &get("/v1/results?format=csv&max_rows=0")).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        let took = assert_lookup_is_served(&app, id).await;
        eprintln!("lookup beside 16 stalled dumps: {took:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The stalled streams are cut off and their queries end, though the clients stay.
    let ended = until_no_result_queries(&app, Duration::from_secs(20)).await;
    assert!(ended.is_some(), "queries of stalled streams still run");
    eprintln!(
        "stalled dumps' queries ended {:?} after the lookups ({:?} after the dumps began)",
        ended.unwrap(),
        began.elapsed()
    );
    assert_lookup_is_served(&app, id).await;
    drop(hostile);
}

#[tokio::test]
async fn a_client_that_goes_away_ends_its_query() {
    let app = spawn_app_with(ServeConfig {
        stream_stall_secs: 600,
        ..Default::default()
    })
    .await;
    add_results(&app, 4_000, 16_000).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut stream = send_raw(&app, &get("/v1/results?format=csv&max_rows=0")).await;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(result_queries(&app).await > 0, "the dumps were not running");
    drop(streams);
    let ended = until_no_result_queries(&app, Duration::from_secs(10)).await;
    assert!(ended.is_some(), "queries outlived their clients by 10 s");
    eprintln!(
        "queries ended {:?} after their clients left",
        ended.unwrap()
    );
}

#[tokio::test]
async fn expensive_queries_are_cut_off_by_the_statement_timeout() {
    let app = spawn_app_with(ServeConfig {
        statement_timeout_secs: 1,
        ..Default::default()
    })
    .await;
    add_results(&app, 100_000, 0).await;
    let started = Instant::now();
    let (status, problem) = app
        .get_json("/v1/results/pairs?same=task&diff=nn&max_rows=1000")
        .await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "urn:archdb:problem:query-timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
    eprintln!(
        "pairs over 100,000 rows cut off after {:?}",
        started.elapsed()
    );
    let ended = until_no_result_queries(&app, Duration::from_secs(5)).await;
    assert!(ended.is_some());
    let (status, _) = app
        .get_json("/v1/results/pairs?same=task&max_rows=1001")
        .await;
    assert_eq!(status, 400, "pairs are capped at 1000 rows");
}

#[tokio::test]
async fn unfinished_headers_and_bodies_are_cut_off() {
    let app = spawn_app_with(ServeConfig {
        header_timeout_secs: 1,
        body_timeout_secs: 1,
        ..Default::default()
    })
    .await;
    // Headers that never end: the connection is closed.
    let mut stream = send_raw(&app, "GET /healthz HTTP/1.1\r\nHost: archdb\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "a connection with unfinished headers stayed open"
    );
    // A body that never arrives: 408.
    let mut stream = send_raw(
        &app,
        "POST /v1/architectures HTTP/1.1\r\nHost: archdb\r\ncontent-type: application/octet-stream\r\n\
         content-length: 100000\r\n\r\nonly a little",
    )
    .await;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
        .await
        .expect("an answer to a stalled body")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait() {
    let app = spawn_app_with(ServeConfig {
        max_connections: 2,
        header_timeout_secs: 600,
        ..Default::default()
    })
    .await;
    let idle = [send_raw(&app, "").await, send_raw(&app, "").await];
    let waiting = app
        .client
        .get(app.url("/healthz"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(
        waiting.is_err(),
        "a third connection was served over a cap of 2"
    );
    drop(idle);
    let resp = app
        .client
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
