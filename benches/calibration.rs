//! Calibration benchmarks: the metrics engine on N = 10,000 × K = 100 synthetic predictions
//! (criterion, main thread), and the calibration analysis API over a full-size store — 15,625
//! architectures × 3 datasets with every figure of the ICLR'24 benchmark's layout (4.8 M
//! `calibration_metrics` rows) — timed through HTTP (printed).
//! Run: `DATABASE_URL=… cargo bench --bench calibration`. The database part runs only under
//! `cargo bench` and not with `ARCHDB_BENCH_SKIP_DB=1`; it creates its own database and drops it
//! at the end (kept with `ARCHDB_BENCH_KEEP_DB=1`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use archdb::calibration::analysis;
use archdb::calibration::{CalibrationConfig, Predictions, RowSumPolicy, evaluate};
use archdb::http::ServeConfig;
use criterion::{BatchSize, Criterion, SamplingMode};

const N: usize = 10_000;
const K: usize = 100;

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Approximately standard normal (Irwin–Hall, 4 uniforms).
    fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.uniform()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }
}

/// N × K logits of an over-confident classifier (≈ 75 % accuracy) and the true labels.
fn synthetic_logits(seed: u64) -> (Vec<f64>, Vec<usize>) {
    let mut rng = XorShift(seed);
    let mut logits = Vec::with_capacity(N * K);
    let mut labels = Vec::with_capacity(N);
    for _ in 0..N {
        let label = (rng.next_u64() % K as u64) as usize;
        let margin = 4.0 + 6.0 * rng.uniform();
        for k in 0..K {
            let z = 2.0 * rng.normal() + if k == label { margin } else { 0.0 };
            logits.push(2.5 * z); // sharpened: over-confident, so temperature scaling has work
        }
        labels.push(label);
    }
    (logits, labels)
}

fn engine_benches(c: &mut Criterion) {
    let (logits, labels) = synthetic_logits(0x5EED_CA1B);
    let from_logits = Predictions::from_logits(logits.clone(), K, labels.clone()).expect("valid");
    let from_probs = Predictions::from_probabilities(
        from_logits.probabilities().to_vec(),
        K,
        labels.clone(),
        RowSumPolicy::default(),
    )
    .expect("valid");
    let default = CalibrationConfig::default();
    let no_ts = CalibrationConfig {
        temperature_scaling: None,
        ..CalibrationConfig::default()
    };
    let report = evaluate(&from_logits, &default).expect("evaluate");
    let post = report.post.as_ref().expect("post");
    println!(
        "engine input: N = {N}, K = {K}, accuracy {:.3}, fitted T = {:.3}, ECE@15 pre {:.4} → post {:.4}",
        report.pre.accuracy,
        report.temperature.unwrap_or(f64::NAN),
        report.pre.ece[&15],
        post.ece[&15]
    );

    // Wall time (criterion, below) counts the time the thread waits for a core on a shared
    // machine; this thread's CPU time does not.
    for (name, predictions, config) in [
        ("logits_ts_9_bin_counts", &from_logits, &default),
        ("probabilities_ts_9_bin_counts", &from_probs, &default),
        ("logits_no_ts_9_bin_counts", &from_logits, &no_ts),
    ] {
        let cpu: Vec<f64> = (0..15)
            .map(|_| {
                let start = thread_cpu_time();
                std::hint::black_box(evaluate(predictions, config).expect("evaluate"));
                ms(thread_cpu_time() - start)
            })
            .collect();
        let best = cpu.iter().copied().fold(f64::INFINITY, f64::min);
        let mut sorted = cpu.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "calibration_engine/{name}: thread CPU time best {best:.1} ms, median {:.1} ms (15 runs)",
            sorted[sorted.len() / 2]
        );
    }

    let mut group = c.benchmark_group("calibration_engine");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("logits_ts_9_bin_counts", |b| {
        b.iter(|| evaluate(&from_logits, &default).expect("evaluate"))
    });
    group.bench_function("probabilities_ts_9_bin_counts", |b| {
        b.iter(|| evaluate(&from_probs, &default).expect("evaluate"))
    });
    group.bench_function("logits_no_ts_9_bin_counts", |b| {
        b.iter(|| evaluate(&from_logits, &no_ts).expect("evaluate"))
    });
    group.bench_function("from_logits_input", |b| {
        b.iter_batched(
            || (logits.clone(), labels.clone()),
            |(z, y)| Predictions::from_logits(z, K, y).expect("valid"),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The rank correlations the analysis API computes after its query (`analysis::pairwise`), on
/// `series` correlated series over 15,625 architectures: 3 = kind `datasets`, 9 = `bins`,
/// 10 = `metrics`.
fn analysis_benches(c: &mut Criterion) {
    let mut rng = XorShift(0xA11_A5E5);
    let base: Vec<f64> = (0..15_625).map(|_| rng.uniform()).collect();
    let mut group = c.benchmark_group("calibration_analysis");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for series in [3, 9, 10] {
        let data: BTreeMap<String, HashMap<i64, f64>> = (0..series)
            .map(|s| {
                let values = base
                    .iter()
                    .enumerate()
                    .map(|(id, b)| (id as i64 + 1, b + 0.3 * rng.uniform()))
                    .collect();
                (format!("series{s:02}"), values)
            })
            .collect();
        let pairs = series * (series - 1) / 2;
        group.bench_function(
            format!("pairwise_{series}_series_{pairs}_pairs_15625"),
            |b| b.iter(|| analysis::pairwise(&data)),
        );
    }
    group.finish();
}

/// 15,625 NB201-like architectures, one statement.
const INSERT_ARCHITECTURES: &str = r#"
insert into architectures (graph_hash, name, family, source, params, macs, num_nodes, num_edges, depth, input_shape, op_counts)
select 'bench:' || i, 'bench-' || i, 'nb201', 'bench',
       400000 + (i * 7919) % 1000000, 20000000 + (i::bigint * 104729) % 200000000,
       60 + i % 40, 70 + i % 50, 20 + i % 12, '{1,3,32,32}',
       jsonb_build_object('Conv', 4 + 15 * (i % 7), 'ReLU', 4 + 15 * (i % 7), 'AveragePool', 15 * (i / 7 % 3))
from generate_series(0, 15624) i"#;

/// One run per architecture and dataset; accuracy from a per-architecture quality (shared by
/// the datasets) plus a per-dataset part. `u(key)` = the first 32 bits of md5(key) in [0, 1).
const INSERT_RUNS: &str = r#"
insert into calibration_runs (architecture_id, dataset, accuracy, temperature, source)
select a.id, d.name,
       d.lo + d.span * (0.8 * U('q' || a.id) + 0.2 * U('a' || a.id || d.name)),
       1.0 + 1.5 * U('t' || a.id || d.name), 'bench'
from architectures a
cross join (values ('cifar10', 0.70, 0.245), ('cifar100', 0.40, 0.335), ('ImageNet16-120', 0.15, 0.32)) d(name, lo, span)
where a.source = 'bench'
order by a.id, d.name"#;

/// Every figure of the benchmark's CSVs for every run: ece, ece_em, cwce, cwce_em and mce at
/// the 9 bin counts, ksce, kdece, mmce, nll, brier and accuracy at bins 0, pre and post
/// (102 rows a run). Value = metric scale (growing with the bin count) × stage factor ×
/// (per-architecture level shared by the datasets + per-run part + per-row noise); the
/// per-row noise is `hashint8` of a row number (md5 on 4.8 M rows costs ~10 s more).
const INSERT_METRICS: &str = r#"
with layout(metric, bins, scale) as (
       select m.metric, b.bins, m.scale * (1 + ln(b.bins) / m.growth)
       from (values ('ece', 0.03, 6.0), ('ece_em', 0.03, 6.0), ('cwce', 0.002, 3.0),
                    ('cwce_em', 0.002, 3.0), ('mce', 0.12, 2.0)) m(metric, scale, growth)
       cross join unnest('{5,10,15,20,25,50,100,200,500}'::int[]) b(bins)
       union all
       select metric, 0, scale
       from (values ('ksce', 0.03), ('kdece', 0.035), ('mmce', 0.025), ('nll', 0.8),
                    ('brier', 0.004), ('accuracy', null)) m(metric, scale)),
     numbered as (select *, row_number() over () as k from layout),
     run as (select r.architecture_id, r.dataset, r.accuracy, hashtext(r.dataset) as dh,
                    0.3 + U('c' || r.architecture_id) + 0.25 * U('d' || r.architecture_id || r.dataset) as level
             from calibration_runs r order by r.architecture_id, r.dataset)
insert into calibration_metrics (architecture_id, dataset, stage, metric, bins, value)
select r.architecture_id, r.dataset, s.stage, l.metric, l.bins,
       case when l.metric = 'accuracy' then r.accuracy
            else least(1.0, l.scale * s.factor * (r.level + 0.15 * (hashint8(r.architecture_id * 1000003 + r.dh + l.k * 2 + s.k)::float8 + 2147483648) / 4294967296))
       end
from run r
cross join (values ('post', 0.55, 0), ('pre', 1.0, 1)) s(stage, factor, k)
cross join numbered l"#;

/// `U(key)` → uniform in [0, 1) from md5(key).
fn with_uniform(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("U(") {
        out.push_str(&rest[..at]);
        let args = &rest[at + 2..];
        let close = args.find(')').expect("U(…) without `)`");
        out.push_str(&format!(
            "(((('x' || substr(md5({}), 1, 8))::bit(32)::int)::float8 + 2147483648) / 4294967296)",
            &args[..close]
        ));
        rest = &args[close + 1..];
    }
    out.push_str(rest);
    out
}

async fn exec(pool: &sqlx::PgPool, sql: &str) -> anyhow::Result<u64> {
    Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await?
        .rows_affected())
}

/// Loads the store; returns the row counts. The metrics are inserted with the table's primary
/// key, foreign key and indexes dropped and rebuilt afterwards from their catalogued
/// definitions (migrations included), as a bulk load would; re-adding the foreign key checks
/// every row.
async fn load(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let step = |name: &str, rows: u64, started: Instant| {
        println!(
            "load/{name}: {rows} rows in {:.1} s",
            started.elapsed().as_secs_f64()
        )
    };
    let started = Instant::now();
    let rows = exec(pool, INSERT_ARCHITECTURES).await?;
    step("architectures", rows, started);
    let started = Instant::now();
    let rows = exec(pool, &with_uniform(INSERT_RUNS)).await?;
    step("calibration_runs", rows, started);

    let constraints: Vec<(String, String)> = sqlx::query_as(
        "select conname::text, pg_get_constraintdef(oid)
         from pg_constraint where conrelid = 'calibration_metrics'::regclass and contype in ('p', 'u', 'f')
         order by contype = 'f'",
    )
    .fetch_all(pool)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "select indexrelid::regclass::text, pg_get_indexdef(indexrelid) from pg_index i
         where indrelid = 'calibration_metrics'::regclass
           and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid and c.conrelid = i.indrelid)",
    )
    .fetch_all(pool)
    .await?;
    let started = Instant::now();
    for (name, _) in constraints.iter().rev() {
        exec(
            pool,
            &format!("alter table calibration_metrics drop constraint \"{name}\""),
        )
        .await?;
    }
    for (name, _) in &indexes {
        exec(pool, &format!("drop index {name}")).await?;
    }
    let rows = exec(pool, &with_uniform(INSERT_METRICS)).await?;
    step("calibration_metrics (no indexes)", rows, started);
    let started = Instant::now();
    for (name, def) in &constraints {
        exec(
            pool,
            &format!("alter table calibration_metrics add constraint \"{name}\" {def}"),
        )
        .await?;
    }
    for (_, def) in &indexes {
        exec(pool, def).await?;
    }
    println!(
        "load/calibration_metrics constraints + indexes ({}): {:.1} s",
        constraints
            .iter()
            .map(|c| c.0.as_str())
            .chain(indexes.iter().map(|i| i.0.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    exec(pool, "vacuum analyze").await?;
    println!(
        "load/vacuum analyze: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let sizes: Vec<(String, String)> = sqlx::query_as(
        "select c.relname::text, pg_size_pretty(pg_relation_size(c.oid)) from pg_class c
         where c.oid = 'calibration_metrics'::regclass
            or c.oid in (select indexrelid from pg_index where indrelid = 'calibration_metrics'::regclass)
         order by c.relkind desc, c.relname",
    )
    .fetch_all(pool)
    .await?;
    println!(
        "load/sizes: {}",
        sizes
            .iter()
            .map(|(n, s)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

const QUERIES: [(&str, &str); 8] = [
    (
        "analysis datasets (ece@15 pre, 3 datasets)",
        "/v1/calibration/analysis?kind=datasets",
    ),
    (
        "analysis bins (ece, cifar10, 9 bin counts)",
        "/v1/calibration/analysis?kind=bins&dataset=cifar10",
    ),
    (
        "analysis metrics (cifar10, @15 + bin-free)",
        "/v1/calibration/analysis?kind=metrics&dataset=cifar10",
    ),
    (
        "analysis accuracy (cifar10)",
        "/v1/calibration/analysis?kind=accuracy&dataset=cifar10",
    ),
    (
        "analysis temperature (ece@15, by family)",
        "/v1/calibration/analysis?kind=temperature",
    ),
    (
        "analysis temperature (ece@15, by Conv count)",
        "/v1/calibration/analysis?kind=temperature&group_by=op&op=Conv",
    ),
    (
        "analysis best (ece@15, top 10 per dataset)",
        "/v1/calibration/analysis?kind=best",
    ),
    (
        "list (cifar10, ece@15, 50 best)",
        "/v1/calibration?dataset=cifar10&metric=ece&bins=15&limit=50",
    ),
];

const WARMUP: usize = 3;
const TIMED: usize = 20;

/// Entries in the answer: the array for a listing, the set field for an analysis.
fn entries(body: &serde_json::Value) -> usize {
    match body {
        serde_json::Value::Array(a) => a.len(),
        other => ["correlations", "groups", "best"]
            .iter()
            .find_map(|k| other[k].as_array().map(Vec::len))
            .unwrap_or(0),
    }
}

async fn http_benches() -> anyhow::Result<()> {
    let server = archdb::testing::spawn(ServeConfig::default()).await;
    let started = Instant::now();
    load(&server.pool).await?;
    println!("load/total: {:.1} s", started.elapsed().as_secs_f64());

    let client = reqwest::Client::new();
    println!(
        "\n| query | entries | bytes | p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|---:|"
    );
    for (name, path) in QUERIES {
        let url = format!("{}{path}", server.base_url);
        let mut times = Vec::with_capacity(TIMED);
        let (mut bytes, mut count) = (0, 0);
        for i in 0..WARMUP + TIMED {
            let start = Instant::now();
            let resp = client.get(&url).send().await?;
            anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
            let body = resp.bytes().await?;
            let elapsed = start.elapsed();
            if i >= WARMUP {
                times.push(elapsed);
            }
            bytes = body.len();
            count = entries(&serde_json::from_slice(&body)?);
        }
        times.sort();
        let pct = |p: f64| {
            ms(times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1])
        };
        println!(
            "| {name} | {count} | {bytes} | {:.1} | {:.1} | {:.1} |",
            pct(0.50),
            pct(0.95),
            pct(1.0)
        );
    }

    let db = server
        .pool
        .connect_options()
        .get_database()
        .unwrap_or_default()
        .to_string();
    if std::env::var_os("ARCHDB_BENCH_KEEP_DB").is_some() {
        println!("\nkept database {db}");
    } else {
        let admin = (*server.pool.connect_options())
            .clone()
            .database("postgres");
        server.pool.close().await;
        let mut conn = sqlx::ConnectOptions::connect(&admin).await?;
        let sql = format!("drop database if exists \"{db}\" with (force)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let mut criterion = Criterion::default().configure_from_args();
    engine_benches(&mut criterion);
    analysis_benches(&mut criterion);
    criterion.final_summary();
    // The database part (a minute of loading) only under `cargo bench`, not `cargo test`, and
    // not with ARCHDB_BENCH_SKIP_DB=1.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list")
        || !args.iter().any(|a| a == "--bench")
        || std::env::var_os("ARCHDB_BENCH_SKIP_DB").is_some()
    {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(http_benches())
}
