//! LEMUR-style queries on the full LEMUR extract (578,595 rows): import time, then p50/p95
//! latency of each query through HTTP (the real server on loopback, body read to the end).
//!
//! `cargo bench --bench queries` (release build). The data directory is
//! `$ARCHDB_LEMUR_DIR`, default `../shared/data/lemur` next to the repository; without it the
//! benchmark says so and exits. Results: `docs/benchmarks.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use archdb::http::ServeConfig;
use archdb::import::{self, ImportKind, NoProgress};

/// (name, query, iterations): filtered queries as nn-gpt and nn-stat issue them, then the
/// whole-table ones.
const QUERIES: &[(&str, &str, usize)] = &[
    (
        "nn + dataset (AlexNet, cifar-10)",
        "/v1/results?task=img-classification&dataset=cifar-10&nn=AlexNet",
        50,
    ),
    (
        "nn + dataset + epoch",
        "/v1/results?task=img-classification&dataset=cifar-10&metric=acc&nn=AlexNet&epoch=1",
        50,
    ),
    (
        "only_best_accuracy, one model",
        "/v1/results?only_best_accuracy=true&task=img-classification&dataset=cifar-10&nn=ResNet",
        50,
    ),
    (
        "nn_prefix rag- on cifar-10, max_rows 100",
        "/v1/results?task=img-classification&dataset=cifar-10&metric=acc&nn_prefix=rag-&max_rows=100",
        50,
    ),
    (
        "only_best_accuracy, max_rows 1000",
        "/v1/results?only_best_accuracy=true&max_rows=1000",
        30,
    ),
    (
        "unique_nn, one dataset (svhn)",
        "/v1/results?task=img-classification&dataset=svhn&unique_nn=true",
        30,
    ),
    (
        "best per nn over all rows (unique_nn)",
        "/v1/results?unique_nn=true",
        30,
    ),
    (
        "top models (Var-N, n=10)",
        "/v1/results/top-models?n=10&task=img-classification&dataset=cifar-10",
        30,
    ),
    (
        "pairs (model, better model), 100 rows",
        "/v1/results/pairs?same=task&same=dataset&same=metric&same=epoch&diff=nn&better=true&task=img-classification&dataset=cifar-10&nn_prefix=rag-&max_rows=100&seed=1",
        20,
    ),
    (
        "similar to AlexNet (MinHash band)",
        "/v1/lemur/similar?anchor_nn=AlexNet&task=img-classification&dataset=cifar-10&n=10",
        20,
    ),
    (
        "only_best_accuracy, all rows (103,941)",
        "/v1/results?only_best_accuracy=true&format=jsonl",
        5,
    ),
    (
        "cifar-10 slice as CSV (119,330 rows)",
        "/v1/results?task=img-classification&dataset=cifar-10&format=csv",
        5,
    ),
    (
        "full dump, JSON lines (578,595 rows)",
        "/v1/results?format=jsonl",
        3,
    ),
];

fn main() -> anyhow::Result<()> {
    let dir = std::env::var_os("ARCHDB_LEMUR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/lemur"));
    if !dir.join("lemur_stat.jsonl.gz").is_file() {
        println!(
            "skipped: no LEMUR data at {} (set ARCHDB_LEMUR_DIR)",
            dir.display()
        );
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(run(dir))
}

async fn run(dir: PathBuf) -> anyhow::Result<()> {
    let server = archdb::testing::spawn(ServeConfig::default()).await;
    let start = Instant::now();
    let stats = import::run(&server.pool, ImportKind::Lemur, &dir, Arc::new(NoProgress)).await?;
    let stats_time = start.elapsed();
    let start = Instant::now();
    let onnx = import::run(
        &server.pool,
        ImportKind::LemurOnnx,
        &dir.join("onnx"),
        Arc::new(NoProgress),
    )
    .await?;
    let onnx_time = start.elapsed();
    let start = Instant::now();
    let again = import::run(&server.pool, ImportKind::Lemur, &dir, Arc::new(NoProgress)).await?;
    let again_time = start.elapsed();
    println!("| import | rows read | rows added | seconds |\n|---|---:|---:|---:|");
    for (name, s, t) in [
        ("`import lemur` (empty database)", &stats, stats_time),
        ("`import lemur-onnx`", &onnx, onnx_time),
        ("`import lemur` again (idempotent)", &again, again_time),
    ] {
        println!(
            "| {name} | {} | {} | {:.1} |",
            s.rows_read,
            s.rows_added,
            t.as_secs_f64()
        );
    }
    println!(
        "\nresults linked to graphs: {}\n",
        onnx.details["results_linked_to_graphs"]
    );

    let client = reqwest::Client::new();
    println!("| query | rows | bytes | p50 ms | p95 ms |\n|---|---:|---:|---:|---:|");
    for (name, path, iterations) in QUERIES {
        let url = format!("{}{path}", server.base_url);
        let mut times = Vec::with_capacity(*iterations);
        let (mut bytes, mut rows) = (0, 0);
        for i in 0..iterations + 2 {
            let start = Instant::now();
            let resp = client.get(&url).send().await?;
            anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
            let body = resp.bytes().await?;
            let elapsed = start.elapsed();
            if i >= 2 {
                times.push(elapsed); // the first two warm the caches
            }
            bytes = body.len();
            rows = count_rows(path, &body);
        }
        times.sort();
        let pct = |p: f64| {
            ms(times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1])
        };
        println!(
            "| {name} | {rows} | {bytes} | {:.1} | {:.1} |",
            pct(0.50),
            pct(0.95)
        );
    }
    drop_database(server.pool).await
}

/// Drops the benchmark's database (about 0.5 GB).
async fn drop_database(pool: sqlx::PgPool) -> anyhow::Result<()> {
    let options = pool.connect_options().as_ref().clone();
    pool.close().await;
    if let Some(name) = options.get_database().map(str::to_string) {
        let mut admin = sqlx::ConnectOptions::connect(&options.database("postgres")).await?;
        let sql = format!("drop database if exists \"{name}\" with (force)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}

fn count_rows(path: &str, body: &[u8]) -> usize {
    if path.contains("format=jsonl") {
        body.iter().filter(|&&b| b == b'\n').count()
    } else if path.contains("format=csv") {
        csv::Reader::from_reader(body).records().count()
    } else {
        serde_json::from_slice::<Vec<serde_json::Value>>(body).map_or(0, |v| v.len())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
