//! LEMUR (nn-dataset) importers. `import lemur DIR` loads the training statistics into
//! `results` (benchmark `lemur`) and the model code, transform and metric hashes, on-device runs
//! and architecture statistics into the `lemur_*` tables; `import lemur-onnx DIR` stores the
//! exported ONNX graphs as architectures. Both then point every LEMUR result at its model's
//! graph, so they can run in either order. DIR is laid out like `shared/data/lemur` (see
//! `docs/lemur.md`).

use std::collections::HashSet;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

use super::{CopySink, Import, ImportKind, Progress, Summary, Unit, copy_merge, open_gz};
use crate::db::architectures::{self, NewArchitecture};
use crate::graph::BuildOptions;
use crate::lemur::{BENCHMARK, DEFAULT_GRAPH_DATASET, NN_STAT_FLOATS, NN_STAT_INTS, graph_stem};

/// The first existing file among `names` (the full extract and `sample/` name them differently).
fn find(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// One line of `lemur_stat.jsonl.gz`.
#[derive(Deserialize)]
struct StatRow {
    id: String,
    task: String,
    dataset: String,
    metric: String,
    nn: String,
    epoch: Option<i32>,
    accuracy: Option<f64>,
    duration: Option<i64>,
    transform: Option<String>,
    prm_id: Option<String>,
    #[serde(default)]
    prm: Value,
}

/// One line of `lemur_nn.jsonl.gz`.
#[derive(Deserialize)]
struct NnRow {
    name: String,
    id: String,
    sha256: String,
    length: i64,
    code: Option<String>,
}

/// One line of `lemur_run.jsonl.gz`.
#[derive(Deserialize)]
struct RunRow {
    id: String,
    task: Option<String>,
    run_dir: Option<String>,
    model_name: String,
    source_file: Option<String>,
    device_type: Option<String>,
    os_version: Option<String>,
    valid: Option<bool>,
    emulator: Option<bool>,
    error_message: Option<String>,
    duration: Option<i64>,
    total_ram_kb: Option<i64>,
    free_ram_kb: Option<i64>,
    available_ram_kb: Option<i64>,
    cached_kb: Option<i64>,
    cpu_cores: Option<i64>,
    timestamp: Option<f64>,
}

/// Reads a gzipped JSON-lines file, calling `row` for each non-empty line.
fn each_json_line<T: for<'de> Deserialize<'de>>(
    path: &Path,
    phase: &str,
    progress: &Arc<dyn Progress>,
    mut row: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut reader = open_gz(path, phase, progress)?;
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader
            .read_line(&mut line)
            .with_context(|| format!("reading {name}"))?
            == 0
        {
            return Ok(());
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str(&line)
            .with_context(|| format!("{name} line {number}: not a valid record"))?;
        row(parsed)?;
    }
}

/// `import lemur DIR`.
pub async fn import_stats(
    pool: &PgPool,
    dir: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Summary> {
    let stat = find(dir, &["lemur_stat.jsonl.gz", "stat.jsonl.gz"]).with_context(|| {
        format!(
            "{} has no lemur_stat.jsonl.gz (or stat.jsonl.gz)",
            dir.display()
        )
    })?;
    let mut import = Import::begin(pool, ImportKind::Lemur, dir).await?;
    let conn = &mut *import.tx;
    let mut details = serde_json::Map::new();
    let (mut read, mut added) = (0, 0);
    let mut count = |table: &str, (r, a): (u64, u64)| {
        details.insert(table.to_string(), json!({"read": r, "added": a}));
        read += r;
        added += a;
    };

    if let Some(path) = find(dir, &["lemur_nn.jsonl.gz", "nn.jsonl.gz"]) {
        let p = progress.clone();
        let n = copy_merge(conn, import.id, "lemur_code", CODE_COLUMNS, move |sink| {
            each_json_line(&path, "nn code", &p, |r: NnRow| {
                let hashes = r.code.as_deref().map(minhash_literal);
                sink.text("nn").text(&r.name).text(&r.id).text(&r.sha256);
                sink.int(Some(r.length)).opt_text(r.code.as_deref());
                sink.opt_text(hashes.as_deref());
                sink.end_row()
            })
        })
        .await?;
        count("lemur_code:nn", n);
    }
    for kind in ["transform", "metric"] {
        let Some(path) = find(dir, &[&format!("lemur_{kind}.csv")]) else {
            continue;
        };
        let n = copy_merge(conn, import.id, "lemur_code", CODE_COLUMNS, move |sink| {
            let mut csv = csv::Reader::from_path(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            for record in csv.deserialize::<NnRow>() {
                let r = record.with_context(|| format!("reading {}", path.display()))?;
                sink.text(kind).text(&r.name).text(&r.id).text(&r.sha256);
                sink.int(Some(r.length)).null().null();
                sink.end_row()?;
            }
            Ok(())
        })
        .await?;
        count(&format!("lemur_code:{kind}"), n);
    }
    let p = progress.clone();
    let n = copy_merge(conn, import.id, "results", RESULT_COLUMNS, move |sink| {
        each_json_line(&stat, "statistics", &p, |r: StatRow| {
            sink.text(BENCHMARK)
                .text(&r.id)
                .text(&r.task)
                .text(&r.dataset);
            sink.text(&r.metric).text(&r.nn).int(r.epoch.map(i64::from));
            sink.float(r.accuracy)
                .int(r.duration)
                .opt_text(r.prm_id.as_deref());
            match &r.prm {
                Value::Null => sink.text("{}"),
                prm => sink.json(prm),
            };
            sink.opt_text(r.transform.as_deref());
            sink.end_row()
        })
    })
    .await?;
    count("results", n);
    if let Some(path) = find(dir, &["lemur_run.jsonl.gz"]) {
        let p = progress.clone();
        let n = copy_merge(conn, import.id, "lemur_run", RUN_COLUMNS, move |sink| {
            each_json_line(&path, "runs", &p, |r: RunRow| {
                sink.text(&r.id).opt_text(r.task.as_deref());
                sink.opt_text(r.run_dir.as_deref()).text(&r.model_name);
                sink.opt_text(r.source_file.as_deref());
                sink.opt_text(r.device_type.as_deref());
                sink.opt_text(r.os_version.as_deref())
                    .bool(r.valid)
                    .bool(r.emulator);
                sink.opt_text(r.error_message.as_deref()).int(r.duration);
                sink.int(r.total_ram_kb).int(r.free_ram_kb);
                sink.int(r.available_ram_kb)
                    .int(r.cached_kb)
                    .int(r.cpu_cores);
                sink.float(r.timestamp);
                sink.end_row()
            })
        })
        .await?;
        count("lemur_run", n);
    }
    let nn_stat_dir = dir.join("nn_stat");
    if nn_stat_dir.is_dir() {
        let p = progress.clone();
        let n = copy_merge(
            conn,
            import.id,
            "lemur_nn_stat",
            &nn_stat_columns(),
            move |sink| read_nn_stats(&nn_stat_dir, &p, sink),
        )
        .await?;
        count("lemur_nn_stat", n);
    }
    let linked = link_architectures(conn).await?;
    details.insert("results_linked_to_graphs".into(), json!(linked));
    sqlx::query("analyze results").execute(&mut *conn).await?;
    progress.done();
    import
        .finish(pool, read, added, Value::Object(details), &["results"])
        .await
}

const CODE_COLUMNS: &[&str] = &[
    "kind", "name", "code_id", "sha256", "length", "code", "minhash",
];

const RESULT_COLUMNS: &[&str] = &[
    "benchmark",
    "source_key",
    "task",
    "dataset",
    "metric",
    "nn",
    "epoch",
    "value",
    "duration",
    "prm_id",
    "hyperparameters",
    "transform",
];

const RUN_COLUMNS: &[&str] = &[
    "id",
    "task",
    "run_dir",
    "model_name",
    "source_file",
    "device_type",
    "os_version",
    "valid",
    "emulator",
    "error_message",
    "duration",
    "total_ram_kb",
    "free_ram_kb",
    "available_ram_kb",
    "cached_kb",
    "cpu_cores",
    "timestamp",
];

/// Columns of `lemur_nn_stat` that the importer fills.
fn nn_stat_columns() -> Vec<&'static str> {
    let ids = ["nn", "prm_id"].into_iter();
    ids.chain(NN_STAT_INTS)
        .chain(NN_STAT_FLOATS)
        .chain(["meta", "error"])
        .collect()
}

/// LEMUR's `stat/nn/<nn>.json` files: one per model, named by the model.
fn read_nn_stats(dir: &Path, progress: &Arc<dyn Progress>, sink: &mut CopySink) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    progress.phase("nn stats", files.len() as u64, Unit::Items);
    for path in files {
        let nn = path.file_stem().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let stat: serde_json::Map<String, Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON object", path.display()))?;
        sink.text(&nn)
            .text(stat.get("prm_id").and_then(Value::as_str).unwrap_or(""));
        for col in NN_STAT_INTS {
            sink.int(stat.get(col).and_then(Value::as_i64));
        }
        for col in NN_STAT_FLOATS {
            sink.float(stat.get(col).and_then(Value::as_f64));
        }
        match stat.get("meta") {
            Some(meta) if !meta.is_null() => sink.json(meta),
            _ => sink.null(),
        };
        sink.opt_text(stat.get("error").and_then(Value::as_str));
        sink.end_row()?;
        progress.advance(1);
    }
    Ok(())
}

/// Points every LEMUR result at the graph of its model: the one exported for the row's dataset
/// when there is one, else the model's cifar-10 graph, else any graph of the model. Graphs are
/// found through their `lemur` aliases (`<nn>` for cifar-10, `<nn>_<dataset>` otherwise).
/// Returns the rows changed.
pub async fn link_architectures(conn: &mut PgConnection) -> Result<u64> {
    let changed = sqlx::query(
        "with graphs as (
             select split_part(value, '_', 1) as nn,
                    coalesce(nullif(split_part(value, '_', 2), ''), $2) as dataset,
                    architecture_id
             from architecture_aliases where namespace = $1),
         pairs as (
             select distinct r.nn, r.dataset from results r
             where r.benchmark = $1 and r.nn in (select nn from graphs)),
         chosen as (
             select p.nn, p.dataset,
                    (select g.architecture_id from graphs g where g.nn = p.nn
                     order by g.dataset = p.dataset desc, g.dataset = $2 desc, g.dataset
                     limit 1) as architecture_id
             from pairs p)
         update results r set architecture_id = c.architecture_id
         from chosen c
         where r.benchmark = $1 and r.nn = c.nn and r.dataset = c.dataset
           and r.architecture_id is distinct from c.architecture_id",
    )
    .bind(BENCHMARK)
    .bind(DEFAULT_GRAPH_DATASET)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(changed)
}

/// `import lemur-onnx DIR`: every graph of `lemur_onnx.tar.gz` becomes an architecture (family
/// and source `lemur`, alias `<stem>` in namespace `lemur`), then results are linked to them.
/// Graphs whose alias exists are skipped, so a re-run adds nothing. Architectures, links and the
/// import record are one transaction: a killed import leaves nothing.
pub async fn import_onnx(
    pool: &PgPool,
    dir: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Summary> {
    let index = dir.join("index.csv");
    let tarball = dir.join("lemur_onnx.tar.gz");
    for f in [&index, &tarball] {
        anyhow::ensure!(f.is_file(), "{} is missing", f.display());
    }
    let listed = read_index(&index)?;
    let mut import = Import::begin(pool, ImportKind::LemurOnnx, dir).await?;
    let known: HashSet<String> =
        sqlx::query_scalar("select value from architecture_aliases where namespace = $1")
            .bind(BENCHMARK)
            .fetch_all(&mut *import.tx)
            .await?
            .into_iter()
            .collect();

    progress.phase("onnx graphs", listed.len() as u64, Unit::Items);
    let (sender, mut files) = mpsc::channel::<Result<(String, Vec<u8>)>>(4);
    let reader = tokio::task::spawn_blocking(move || read_tar(&tarball, &known, &sender));
    let (mut read, mut added, mut failed) = (0u64, 0u64, Vec::new());
    while let Some(file) = files.recv().await {
        let (stem, bytes) = file?;
        read += 1;
        progress.advance(1);
        if !listed.contains(&stem) {
            tracing::warn!(%stem, "graph not listed in index.csv; imported anyway");
        }
        let model = tokio::task::spawn_blocking(move || {
            crate::ingest::ingest(bytes.into(), BuildOptions::default())
        })
        .await?;
        let model = match model {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%stem, error = %e, "graph not ingested");
                failed.push(json!({"graph": stem, "error": e.to_string()}));
                continue;
            }
        };
        let meta = NewArchitecture {
            name: Some(stem),
            family: Some(BENCHMARK.into()),
            source: Some(BENCHMARK.into()),
        };
        let (_, created) = architectures::insert_in(&mut import.tx, &model, &meta).await?;
        added += u64::from(created);
    }
    let skipped = reader.await??;
    let linked = link_architectures(&mut import.tx).await?;
    progress.done();
    let details = json!({
        "graphs_listed": listed.len(), "graphs_already_imported": skipped,
        "architectures_added": added, "failed": failed, "results_linked_to_graphs": linked,
    });
    import
        .finish(pool, read + skipped, added, details, &[])
        .await
}

/// Graph stems (`<nn>` or `<nn>_<dataset>`) listed in `index.csv`.
fn read_index(path: &Path) -> Result<HashSet<String>> {
    #[derive(Deserialize)]
    struct Entry {
        nn: String,
        dataset: String,
    }
    let mut csv =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    csv.deserialize::<Entry>()
        .map(|e| {
            let e = e.with_context(|| format!("reading {}", path.display()))?;
            Ok(graph_stem(&e.nn, &e.dataset))
        })
        .collect()
}

/// Sends the `.onnx` members of the tarball not in `known`; returns how many were skipped.
fn read_tar(
    path: &Path,
    known: &HashSet<String>,
    sender: &mpsc::Sender<Result<(String, Vec<u8>)>>,
) -> Result<u64> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut skipped = 0;
    let entries = archive.entries().context("reading the ONNX tarball")?;
    for entry in entries {
        let mut entry = entry.context("reading the ONNX tarball")?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".onnx") else {
            continue;
        };
        let stem = stem.rsplit('/').next().unwrap_or(stem).to_string();
        if known.contains(&stem) {
            skipped += 1;
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {name} from the tarball"))?;
        if sender.blocking_send(Ok((stem, bytes))).is_err() {
            bail!("import cancelled");
        }
    }
    Ok(skipped)
}

/// MinHash permutations, as many as LEMUR uses (datasketch `num_perm=128`).
const NUM_PERM: usize = 128;
/// Tokens per shingle (LEMUR `shingle_n=7`).
const SHINGLE: usize = 7;
const MERSENNE_61: u64 = (1 << 61) - 1;

/// The MinHash of model code as a PostgreSQL `integer[]` literal. It follows LEMUR's recipe
/// (datasketch: 128 permutations `(a·h + b) mod (2^61 − 1)` truncated to 32 bits, over 7-token
/// shingles of the tokens `[A-Za-z_]\w*|[^\s]`), with xxh3 instead of SHA-1 as the base hash and
/// our own permutation constants: the Jaccard estimates have LEMUR's accuracy, but the hash
/// values (and so individual estimates) differ from LEMUR's.
pub fn minhash_literal(code: &str) -> String {
    let values = minhash(code);
    let mut out = String::with_capacity(NUM_PERM * 11 + 2);
    out.push('{');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Stored as int4: the bit pattern matters, not the sign.
        out.push_str(&(*v as i32).to_string());
    }
    out.push('}');
    out
}

fn minhash(code: &str) -> [u32; NUM_PERM] {
    let perms = permutations();
    let mut mins = [u64::MAX; NUM_PERM];
    for h in shingle_hashes(code) {
        for (m, &(a, b)) in mins.iter_mut().zip(perms.iter()) {
            let v = mod_mersenne(u128::from(a) * u128::from(h) + u128::from(b)) & 0xFFFF_FFFF;
            *m = (*m).min(v);
        }
    }
    mins.map(|m| m as u32)
}

/// 32-bit hashes of the distinct 7-token shingles (one shingle when the code is shorter).
fn shingle_hashes(code: &str) -> HashSet<u64> {
    let tokens = tokenize(code);
    let mut shingle = String::new();
    tokens
        .windows(SHINGLE.min(tokens.len().max(1)))
        .map(|window| {
            shingle.clear();
            for (i, t) in window.iter().enumerate() {
                if i > 0 {
                    shingle.push(' ');
                }
                shingle.push_str(t);
            }
            xxhash_rust::xxh3::xxh3_64(shingle.as_bytes()) & 0xFFFF_FFFF
        })
        .collect()
}

/// `x mod (2^61 − 1)` without a division.
fn mod_mersenne(x: u128) -> u64 {
    let p = u128::from(MERSENNE_61);
    let folded = (x & p) + (x >> 61);
    let folded = (folded & p) + (folded >> 61);
    let v = folded as u64;
    if v >= MERSENNE_61 { v - MERSENNE_61 } else { v }
}

/// Fixed permutation constants `a ∈ [1, p)`, `b ∈ [0, p)` from splitmix64.
fn permutations() -> [(u64, u64); NUM_PERM] {
    let mut state = 1u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    std::array::from_fn(|_| (1 + next() % (MERSENNE_61 - 1), next() % MERSENNE_61))
}

/// LEMUR's code tokens: identifiers `[A-Za-z_]\w*` and every other non-space character.
fn tokenize(code: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        let mut end = start + c.len_utf8();
        if c.is_ascii_alphabetic() || c == '_' {
            while let Some(&(i, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = i + d.len_utf8();
                chars.next();
            }
        }
        tokens.push(&code[start..end]);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_identifiers_and_single_characters() {
        assert_eq!(
            tokenize("x_1=foo(a, 2)\n  é"),
            ["x_1", "=", "foo", "(", "a", ",", "2", ")", "é"]
        );
    }

    #[test]
    fn minhash_estimates_jaccard() {
        let a: String = (0..300).map(|i| format!("v{i} = f(v{i})\n")).collect();
        let b: String = (0..300)
            .map(|i| format!("v{i} = f(v{})\n", if i < 200 { i } else { i + 1 }))
            .collect();
        let (sa, sb) = (shingle_hashes(&a), shingle_hashes(&b));
        let exact = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
        let (ha, hb) = (minhash(&a), minhash(&b));
        assert_eq!(ha, minhash(&a));
        let estimate = ha.iter().zip(&hb).filter(|(x, y)| x == y).count() as f64 / 128.0;
        assert!((estimate - exact).abs() < 0.15, "{estimate} vs {exact}");
        assert_eq!(minhash_literal("").matches(',').count(), 127);
    }

    #[test]
    fn mersenne_reduction_matches_the_remainder() {
        for x in [
            0u128,
            1,
            1 << 61,
            (1 << 61) - 1,
            u128::from(u64::MAX) * 12345,
            1 << 120,
        ] {
            assert_eq!(u128::from(mod_mersenne(x)), x % ((1 << 61) - 1));
        }
    }
}
