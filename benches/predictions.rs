//! Accuracy prediction through HTTP (the real server on loopback, body read to the end), with
//! the bundled NB201 predictor registered over the full NB201 import (its index holds every
//! measured cell graph):
//!
//! * one raw ONNX upload of an NB201-sized network that is not stored (CIFAR-100 head), p50/p95
//!   (answered by every default target: the NB201 predictors and LEMUR CIFAR-10);
//! * the same for a stored cell (answered from the predictor's index);
//! * one ONNX for one recipe target (LEMUR CIFAR-10 after 5 epochs with given hyperparameters),
//!   and for 200 recipe targets (one per epoch and learning rate);
//! * batches: 10,000 stored ids, 10,000 NB201 indices, 1,000 uploads (base64) → architectures/s
//!   (best of 3, and the first call's time).
//!
//! `cargo bench --bench predictions` (release). Pin to one core with `taskset -c 0` for the
//! single-core figure. Results: `docs/benchmarks.md`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use archdb::http::ServeConfig;
use archdb::import::{self, ImportKind, NoProgress};
use base64::Engine;
use prost::Message;
use serde_json::json;

/// User + system CPU time of this process (server and client) so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

async fn latency(label: &str, n: usize, mut send: impl AsyncFnMut() -> reqwest::Response) {
    for _ in 0..10 {
        assert_eq!(send().await.status(), 200);
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = send().await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{label}: p50 {:.2} ms, p95 {:.2} ms ({n} requests)",
        percentile(&times, 0.5),
        percentile(&times, 0.95)
    );
}

fn main() {
    // As `archdb serve` does (src/main.rs): candle kernels on the calling thread.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench());
}

async fn bench() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let server = archdb::testing::spawn(ServeConfig {
        max_upload_bytes: 512 << 20,
        // The bench's client is one address sending hundreds of requests a second.
        rate_per_sec: 0.0,
        ..ServeConfig::default()
    })
    .await;
    let pool = server.pool.clone();
    let t = Instant::now();
    import::run(
        &pool,
        ImportKind::Nb201,
        &root.join("data/nasbench201"),
        Arc::new(NoProgress),
    )
    .await
    .expect("nb201 import");
    println!("NB201 import: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let ids = archdb::training::register_bundled(&pool, &root.join("data/predictor"))
        .await
        .expect("bundled predictor");
    assert!(
        !ids.is_empty(),
        "data/predictor holds the bundled predictors"
    );
    println!(
        "registering the bundled predictor (index of every measured cell): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::new();
    let url = format!("{}/v1/predictions", server.base_url);
    // The activation reaches the server's registry through NOTIFY.
    let started = Instant::now();
    loop {
        let resp = client
            .post(&url)
            .json(&json!({"nb201": [0]}))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "predictor not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
    let unseen = archdb::generate::nb201_model(arch, 100)
        .unwrap()
        .encode_to_vec();
    let stored = archdb::generate::nb201_model(arch, 10)
        .unwrap()
        .encode_to_vec();
    println!("NB201 ONNX: {} bytes", unseen.len());
    for (label, bytes) in [
        ("one ONNX upload, not stored", &unseen),
        ("one ONNX upload, stored cell", &stored),
    ] {
        latency(label, 300, async || {
            client
                .post(&url)
                .header("content-type", "application/octet-stream")
                .body(bytes.clone())
                .send()
                .await
                .unwrap()
        })
        .await;
    }

    let recipe = |epoch: f64, lr: f64| {
        json!({"dataset": "cifar-10", "metric": "acc", "epoch": epoch,
               "hyperparameters": {"lr": lr, "momentum": 0.9, "batch": 64, "transform": "norm_32_flip"}})
    };
    let onnx = base64::engine::general_purpose::STANDARD.encode(&unseen);
    let one_target = json!({"onnx_base64": [onnx], "targets": [recipe(5.0, 0.01)]});
    let many_targets = json!({"onnx_base64": [onnx], "targets": (0..200)
        .map(|i| recipe(f64::from(i % 50 + 1), 0.001 * f64::from(i / 50 + 1)))
        .collect::<Vec<_>>()});
    for (label, body) in [
        ("one ONNX, one recipe target", &one_target),
        ("one ONNX, 200 recipe targets", &many_targets),
    ] {
        latency(label, 300, async || {
            client.post(&url).json(body).send().await.unwrap()
        })
        .await;
    }

    let all_ids: Vec<i64> = sqlx::query_scalar(
        "select architecture_id from predictor_index order by architecture_id limit 10000",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let indices: Vec<u32> = (0..10_000).collect();
    let uploads: Vec<String> = archdb::generate::nb201_arch_strings()
        .take(1_000)
        .map(|a| {
            base64::engine::general_purpose::STANDARD.encode(
                archdb::generate::nb201_model(&a, 100)
                    .unwrap()
                    .encode_to_vec(),
            )
        })
        .collect();
    for (label, body, n) in [
        (
            "batch of stored ids",
            json!({"architecture_ids": all_ids}),
            all_ids.len(),
        ),
        (
            "batch of NB201 indices",
            json!({"nb201": indices}),
            indices.len(),
        ),
        (
            "batch of ONNX uploads (not stored)",
            json!({"onnx_base64": uploads}),
            uploads.len(),
        ),
    ] {
        // The first call describes stored graphs for the recipe predictor; later ones find
        // them in the registry's cache.
        let (mut best, mut cores, mut first) = (f64::INFINITY, 0.0, None);
        for _ in 0..3 {
            let (t, cpu) = (Instant::now(), cpu_seconds());
            let resp = client.post(&url).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
            let wall = t.elapsed().as_secs_f64();
            first.get_or_insert(wall);
            if wall < best {
                (best, cores) = (wall, (cpu_seconds() - cpu) / wall);
            }
        }
        println!(
            "{label}: {n} architectures in {:.0} ms → {:.0} architectures/s (best of 3; first \
             {:.0} ms), {cores:.2} cores busy (process CPU time / wall time)",
            best * 1e3,
            n as f64 / best,
            first.unwrap_or_default() * 1e3
        );
    }
}
