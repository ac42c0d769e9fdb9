//! Ingest benchmarks: parse + computation graph per model (criterion), and end-to-end HTTP
//! upload throughput on 1,000 generated small graphs plus bulk graph loading (printed).
//! Run: `cargo bench --bench ingest` (DATABASE_URL or the embedded cluster for the HTTP part);
//! `cargo bench --bench ingest -- nb201_cells` for the per-file parse time of the bulk-ingest
//! bench's NB201 set.

use std::time::{Duration, Instant};

/// The allocator of the `archdb` binary (src/main.rs), so that the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use archdb::graph::BuildOptions;
use archdb::ingest::ingest;
use archdb::onnx::proto::tensor_shape_proto::{Dimension, dimension};
use archdb::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType, type_proto,
};
use criterion::{Criterion, Throughput};
use prost::Message;

const MODELS: [&str; 6] = [
    "onnx-samples/resnet18.legacy.onnx",
    "onnx-samples/mobilenet_v2.legacy.onnx",
    "zoo/resnet50.legacy.onnx",
    "zoo/resnet50.dynamo.onnx",
    "zoo/vit_b_16.dynamo.onnx",
    "zoo/swin_t.legacy.onnx",
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A small CNN, distinct for every `seed`: conv stages with seed-dependent widths and depth,
/// residual adds, global pool and a classifier (the size of a NAS-Bench cell network stage).
fn small_cnn(seed: u64) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut x = "x".to_string();
    let mut channels = 3i64;
    let depth = 3 + seed % 5;
    for layer in 0..depth {
        let out = 8 + ((seed / 5 + layer * 7) % 57) as i64;
        let k = if (seed + layer).is_multiple_of(3) {
            1
        } else {
            3
        };
        let w = format!("w{layer}");
        inits.push(TensorProto {
            name: Some(w.clone()),
            dims: vec![out, channels, k, k],
            data_type: Some(1),
            ..Default::default()
        });
        let conv_out = format!("c{layer}");
        nodes.push(NodeProto {
            op_type: Some("Conv".into()),
            input: vec![x.clone(), w],
            output: vec![conv_out.clone()],
            attribute: vec![AttributeProto {
                name: Some("pads".into()),
                r#type: Some(AttributeType::Ints as i32),
                ints: vec![k / 2; 4],
                ..Default::default()
            }],
            ..Default::default()
        });
        let relu = format!("r{layer}");
        nodes.push(NodeProto {
            op_type: Some("Relu".into()),
            input: vec![conv_out],
            output: vec![relu.clone()],
            ..Default::default()
        });
        x = if out == channels {
            let sum = format!("s{layer}");
            nodes.push(NodeProto {
                op_type: Some("Add".into()),
                input: vec![relu, x],
                output: vec![sum.clone()],
                ..Default::default()
            });
            sum
        } else {
            relu
        };
        channels = out;
    }
    let classes = 10 + (seed % 1000) as i64;
    inits.push(TensorProto {
        name: Some("fc".into()),
        dims: vec![classes, channels],
        data_type: Some(1),
        ..Default::default()
    });
    nodes.push(NodeProto {
        op_type: Some("GlobalAveragePool".into()),
        input: vec![x],
        output: vec!["g".into()],
        ..Default::default()
    });
    nodes.push(NodeProto {
        op_type: Some("Flatten".into()),
        input: vec!["g".into()],
        output: vec!["f".into()],
        ..Default::default()
    });
    nodes.push(NodeProto {
        op_type: Some("Gemm".into()),
        input: vec!["f".into(), "fc".into()],
        output: vec!["y".into()],
        attribute: vec![AttributeProto {
            name: Some("transB".into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    });
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some(format!("cnn{seed}")),
            node: nodes,
            initializer: inits,
            input: vec![value("x", &[1, 3, 32, 32])],
            output: vec![value("y", &[1, classes])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn parse_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_cg");
    for name in MODELS {
        let bytes = bytes::Bytes::from(fixture(name));
        group.bench_function(name, |b| {
            b.iter(|| ingest(bytes.clone(), BuildOptions::default()).expect("valid"))
        });
    }
    group.finish();
    // The first 1,000 NAS-Bench-201 networks, as `archdb generate nb201` writes them: the NB201
    // set of benches/ingest_vs_peer.sh, parsed on one core (per file: this time / 1,000).
    let cells: Vec<bytes::Bytes> = archdb::generate::nb201_arch_strings()
        .take(1000)
        .map(|arch| {
            let model = archdb::generate::nb201_model(&arch, 10).expect("cell");
            model.encode_to_vec().into()
        })
        .collect();
    ingest_each(c, "nb201_cells", "1000_ingested", &cells);
    let graphs: Vec<bytes::Bytes> = (0..1000).map(|s| small_cnn(s).into()).collect();
    ingest_each(c, "small_graphs", "1000_generated", &graphs);
}

/// One benchmark: every model of `models` ingested in turn, on one core.
fn ingest_each(c: &mut Criterion, group: &str, name: &str, models: &[bytes::Bytes]) {
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(models.len() as u64));
    group.sample_size(10);
    group.bench_function(name, |b| {
        b.iter(|| {
            for model in models {
                ingest(model.clone(), BuildOptions::default()).expect("valid");
            }
        })
    });
    group.finish();
}

/// Uploads every graph with `concurrency` clients; returns (created, elapsed).
async fn upload_all(base: &str, graphs: &[Vec<u8>], concurrency: usize) -> (usize, Duration) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut created = 0;
    for chunk in graphs.chunks(concurrency) {
        let requests = chunk.iter().map(|g| {
            client
                .post(format!("{base}/v1/architectures"))
                .header("content-type", "application/octet-stream")
                .body(g.clone())
                .send()
        });
        for resp in futures_util::future::join_all(requests).await {
            created += usize::from(resp.expect("upload").status().as_u16() == 201);
        }
    }
    (created, started.elapsed())
}

fn http_benches() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // No per-caller rate limit: the bench is one caller making 2,000 uploads on purpose.
        let server = archdb::testing::spawn(archdb::http::ServeConfig {
            rate_per_sec: 0.0,
            ..Default::default()
        })
        .await;
        let graphs: Vec<Vec<u8>> = (0..1000).map(small_cnn).collect();
        let (created, elapsed) = upload_all(&server.base_url, &graphs, 16).await;
        println!(
            "http_ingest/1000_small_graphs: {created} created in {:.2} s = {:.0} uploads/s (16 concurrent clients)",
            elapsed.as_secs_f64(),
            created as f64 / elapsed.as_secs_f64()
        );
        let (_, again) = upload_all(&server.base_url, &graphs, 16).await;
        println!("http_ingest/1000_duplicates: {:.0} uploads/s (200, existing)", 1000.0 / again.as_secs_f64());
        let samples: Vec<Vec<u8>> = MODELS.iter().map(|m| fixture(m)).collect();
        // The first pass is the first upload of models this size since the server started
        // (the allocator maps its memory then); the second, after deleting them, is the same
        // work on a warm server.
        let hashes: Vec<String> = samples
            .iter()
            .map(|m| ingest(m.clone().into(), BuildOptions::default()).expect("valid").graph_hash)
            .collect();
        for pass in ["first", "second"] {
            sqlx::query("delete from architectures where graph_hash = any($1)")
                .bind(&hashes)
                .execute(&server.pool)
                .await
                .expect("delete");
            let (created, elapsed) = upload_all(&server.base_url, &samples, 1).await;
            assert_eq!(created, samples.len() - 1, "resnet50's two exports are one graph");
            println!("http_ingest/{}_real_models_sequential ({pass} pass): {:.1} ms per upload", samples.len(), elapsed.as_secs_f64() * 1e3 / samples.len() as f64);
        }

        let ids: Vec<i64> = sqlx::query_scalar("select id from architectures").fetch_all(&server.pool).await.expect("ids");
        let started = Instant::now();
        let rows = archdb::db::predictors::graphs(&server.pool, &ids).await.expect("load");
        let nodes: usize = rows.values().map(|g| g.nodes.len()).sum();
        println!(
            "graph_bulk_load: {} graphs ({nodes} nodes) in {:.1} ms = {:.0} graphs/s",
            rows.len(),
            started.elapsed().as_secs_f64() * 1e3,
            rows.len() as f64 / started.elapsed().as_secs_f64()
        );
    });
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    parse_benches(&mut criterion);
    criterion.final_summary();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    http_benches();
}
