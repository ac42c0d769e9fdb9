//! `archdb import KIND DIR`: benchmark importers and their shared plumbing.
//!
//! Every import is one PostgreSQL transaction ([`Import`]): a killed or failed import leaves
//! nothing behind. Rows are streamed from the (gzipped) input on a blocking thread into
//! `COPY … FROM STDIN` of a temporary staging table, then merged into the target with
//! `ON CONFLICT DO NOTHING` ([`copy_merge`]), so a re-run of the same data adds nothing.
//! Progress goes through [`Progress`]: a bar on a terminal, log lines otherwise.

pub mod calibration_csv;
pub mod lemur;
pub mod nas_bench_graph;
pub mod naslib_zc;
pub mod nb201;
pub mod nb_macro;
pub mod onnx_bench;
pub mod seed;

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::mpsc;

/// Whether `source` names an alias namespace that the importers fill and lookups trust (NB201
/// cell indices and arch strings, NB-Macro codes, LEMUR names, NASLib search spaces): uploads
/// may not claim one.
pub fn is_reserved_namespace(source: &str) -> bool {
    let source = source.trim().to_ascii_lowercase();
    RESERVED_NAMESPACES.contains(&source.as_str()) || source.starts_with(RESERVED_PREFIX)
}

/// The namespaces of [`is_reserved_namespace`] (compared trimmed, ASCII case-insensitively)…
pub const RESERVED_NAMESPACES: [&str; 6] = [
    nb201::INDEX_ALIAS,
    nb201::ARCH_ALIAS,
    nb_macro::BENCHMARK,
    crate::lemur::BENCHMARK,
    naslib_zc::BENCHMARK,
    nas_bench_graph::BENCHMARK,
];
/// …and the prefix of NASLib's search spaces.
pub const RESERVED_PREFIX: &str = "naslib:";

/// What `archdb import` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportKind {
    /// LEMUR statistics, model code, transforms, metrics, runs (`lemur_stat.jsonl.gz`, …).
    Lemur,
    /// LEMUR ONNX graphs (`index.csv` + `lemur_onnx.tar.gz`) as architectures.
    LemurOnnx,
    /// NAS-Bench-201 / NATS-Bench TSS: the 15,625 cells as architectures, and their figures.
    Nb201,
    /// NAS-Bench-Macro: the 6,561 codes as aliases of the 3,969 trained networks, and their runs.
    NbMacro,
    /// NASLib NAS-Bench-Suite-Zero samples: zero-cost proxy scores and accuracies (NB101/201/301,
    /// TransNAS-Bench-101); NB201 samples linked to the `nb201` cells.
    NaslibZc,
    /// NAS-Bench-Graph light tables: 26,206 GNN architectures × 9 datasets (results only).
    NasBenchGraph,
    /// "A Benchmark Study on Calibration" CSV (a file, not a folder): figures per NB201 cell.
    CalibrationCsv,
    /// ONNX-Bench files (one ONNX model per network, accuracy in `metadata_props`): graphs and
    /// accuracies; search space and dataset from the folder names (`nasbench201_simplify/`).
    OnnxBench,
}

impl ImportKind {
    /// The command-line name, also recorded in `imports.kind`.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub import_id: i64,
    pub kind: String,
    /// Input records read.
    pub rows_read: u64,
    /// Rows added (0 when the data was already imported).
    pub rows_added: u64,
    pub seconds: f64,
    /// Per-table counts and notes.
    pub details: serde_json::Value,
}

/// Runs one import of `dir` into the database.
pub async fn run(
    pool: &PgPool,
    kind: ImportKind,
    dir: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Summary> {
    if kind == ImportKind::CalibrationCsv {
        anyhow::ensure!(dir.is_file(), "{} is not a file", dir.display());
    } else {
        anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    }
    match kind {
        ImportKind::Lemur => lemur::import_stats(pool, dir, progress).await,
        ImportKind::LemurOnnx => lemur::import_onnx(pool, dir, progress).await,
        ImportKind::Nb201 => nb201::import(pool, dir, progress).await,
        ImportKind::NbMacro => nb_macro::import(pool, dir, progress).await,
        ImportKind::NaslibZc => naslib_zc::import(pool, dir, progress).await,
        ImportKind::NasBenchGraph => nas_bench_graph::import(pool, dir, progress).await,
        ImportKind::CalibrationCsv => calibration_csv::import(pool, dir, progress).await,
        ImportKind::OnnxBench => onnx_bench::import(pool, dir, progress).await,
    }
}

/// Progress of an import, reported from any thread.
pub trait Progress: Send + Sync {
    /// A new phase of `total` units (bytes of a file or items).
    fn phase(&self, name: &str, total: u64, unit: Unit);
    /// `n` more units of the current phase are done.
    fn advance(&self, n: u64);
    /// The import is over.
    fn done(&self) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items,
}

/// A progress bar when stderr is a terminal, plain log lines otherwise (CI, pipes, files).
pub fn stderr_progress() -> Arc<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Arc::new(Bar(Mutex::new(None)))
    } else {
        Arc::new(LogLines(Mutex::new(LogState::default())))
    }
}

/// Reports nothing (tests, benchmarks).
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &str, _: u64, _: Unit) {}
    fn advance(&self, _: u64) {}
}

struct Bar(Mutex<Option<indicatif::ProgressBar>>);

impl Progress for Bar {
    fn phase(&self, name: &str, total: u64, unit: Unit) {
        let template = match unit {
            Unit::Bytes => {
                "{prefix:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            }
            Unit::Items => "{prefix:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
        };
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name.to_string());
        if let Some(old) = self.0.lock().expect("progress lock").replace(bar) {
            old.finish();
        }
    }
    fn advance(&self, n: u64) {
        if let Some(bar) = &*self.0.lock().expect("progress lock") {
            bar.inc(n);
        }
    }
    fn done(&self) {
        if let Some(bar) = self.0.lock().expect("progress lock").take() {
            bar.finish();
        }
    }
}

#[derive(Default)]
struct LogState {
    name: String,
    total: u64,
    done: u64,
    last_percent: u64,
    last_log: Option<Instant>,
}

/// One log line per 10 % and at most one every 5 s in between.
struct LogLines(Mutex<LogState>);

impl Progress for LogLines {
    fn phase(&self, name: &str, total: u64, _: Unit) {
        tracing::info!(phase = name, total, "import phase");
        *self.0.lock().expect("progress lock") = LogState {
            name: name.to_string(),
            total,
            last_log: Some(Instant::now()),
            ..LogState::default()
        };
    }
    fn advance(&self, n: u64) {
        let mut s = self.0.lock().expect("progress lock");
        s.done += n;
        let percent = (s.done * 100).checked_div(s.total).unwrap_or(100);
        let stale = s
            .last_log
            .is_none_or(|t| t.elapsed() > Duration::from_secs(5));
        if percent / 10 > s.last_percent / 10 || stale {
            s.last_percent = percent;
            s.last_log = Some(Instant::now());
            tracing::info!(phase = %s.name, done = s.done, total = s.total, "{percent} %");
        }
    }
}

/// Counts the bytes read through it into a [`Progress`] (progress over a compressed file).
pub struct CountingReader<R> {
    inner: R,
    progress: Arc<dyn Progress>,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R, progress: Arc<dyn Progress>) -> Self {
        Self { inner, progress }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Opens a gzipped file as a buffered reader whose compressed bytes drive a progress phase.
pub fn open_gz(
    path: &Path,
    phase: &str,
    progress: &Arc<dyn Progress>,
) -> Result<impl std::io::BufRead + use<>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    progress.phase(phase, len, Unit::Bytes);
    let counted = CountingReader::new(file, progress.clone());
    Ok(std::io::BufReader::with_capacity(
        256 * 1024,
        flate2::read::MultiGzDecoder::new(counted),
    ))
}

/// One running import: its transaction and its `imports` row.
pub struct Import {
    pub tx: Transaction<'static, Postgres>,
    pub id: i64,
    kind: ImportKind,
    started: Instant,
}

impl Import {
    /// Starts the transaction, waits for any other import to finish, records this one.
    pub async fn begin(pool: &PgPool, kind: ImportKind, dir: &Path) -> Result<Self> {
        let mut tx = pool.begin().await?;
        // Imports run one at a time: two runs of the same data would otherwise both add it.
        sqlx::query("select pg_advisory_xact_lock(hashtext('archdb import'))")
            .execute(&mut *tx)
            .await?;
        let id =
            sqlx::query_scalar("insert into imports (kind, path) values ($1, $2) returning id")
                .bind(kind.name())
                .bind(dir.display().to_string())
                .fetch_one(&mut *tx)
                .await?;
        Ok(Self {
            tx,
            id,
            kind,
            started: Instant::now(),
        })
    }

    /// Records the counts and commits; then refreshes planner statistics and the visibility
    /// map of `vacuum` tables (index-only scans), which cannot run inside the transaction.
    pub async fn finish(
        mut self,
        pool: &PgPool,
        rows_read: u64,
        rows_added: u64,
        details: serde_json::Value,
        vacuum: &[&'static str],
    ) -> Result<Summary> {
        sqlx::query("update imports set finished_at = clock_timestamp(), rows_read = $2, rows_added = $3, details = $4 where id = $1")
            .bind(self.id)
            .bind(rows_read as i64)
            .bind(rows_added as i64)
            .bind(&details)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        if rows_added > 0 {
            for table in vacuum {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("vacuum (analyze) {table}")))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(Summary {
            import_id: self.id,
            kind: self.kind.name(),
            rows_read,
            rows_added,
            seconds: self.started.elapsed().as_secs_f64(),
            details,
        })
    }
}

/// Builds `items` in batches of `batch` with `build` on a blocking thread, one batch ahead of
/// the receiver, so that building the next batch overlaps storing the last one. The receiver
/// stops the builder by dropping the channel.
pub fn build_in_background<T, U, F>(
    items: Vec<T>,
    batch: usize,
    build: F,
) -> tokio::sync::mpsc::Receiver<Result<Vec<U>>>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(&[T]) -> Result<Vec<U>> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        for chunk in items.chunks(batch) {
            let built = build(chunk);
            let failed = built.is_err();
            if sender.blocking_send(built).is_err() || failed {
                return;
            }
        }
    });
    receiver
}

/// `f` over `items` on the application's CPU pool, in order; the first error wins.
pub fn par_map<T, U, F>(items: &[T], f: F) -> Result<Vec<U>>
where
    T: Sync,
    U: Send,
    F: Fn(&T) -> Result<U> + Sync + Send,
{
    use rayon::prelude::*;
    crate::cpu::on_pool(|| items.par_iter().map(f).collect())
}

/// Streams the rows that `produce` writes (on a blocking thread) into `table` through a
/// temporary staging table and `COPY`, then inserts them with `import_id`, skipping rows whose
/// keys exist. Returns (rows read, rows added).
pub async fn copy_merge<F>(
    conn: &mut PgConnection,
    import_id: i64,
    table: &str,
    columns: &[&str],
    produce: F,
) -> Result<(u64, u64)>
where
    F: FnOnce(&mut CopySink) -> Result<()> + Send + 'static,
{
    let cols = columns.join(", ");
    let stage = format!("{table}_stage");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "create temp table {stage} as select {cols} from {table} with no data"
    )))
    .execute(&mut *conn)
    .await?;
    let (sender, mut chunks) = mpsc::channel::<Vec<u8>>(4);
    let producer = tokio::task::spawn_blocking(move || {
        let mut sink = CopySink::new(sender);
        produce(&mut sink)?;
        sink.flush()?;
        Ok::<_, anyhow::Error>(sink.rows)
    });
    let mut copy = conn
        .copy_in_raw(&format!("copy {stage} ({cols}) from stdin"))
        .await?;
    let mut sent = Ok(());
    while let Some(chunk) = chunks.recv().await {
        if let Err(e) = copy.send(chunk).await {
            sent = Err(e);
            break;
        }
    }
    drop(chunks); // a still-running producer now stops at its next send
    let produced = producer.await.context("import reader thread")?;
    let read = match (produced, sent) {
        (Ok(rows), Ok(())) => {
            copy.finish().await?;
            rows
        }
        (Err(e), _) => {
            let _ = copy.abort(e.to_string()).await;
            return Err(e);
        }
        (Ok(_), Err(e)) => {
            let _ = copy.abort(e.to_string()).await;
            return Err(e.into());
        }
    };
    let added = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "insert into {table} ({cols}, import_id) select {cols}, {import_id} from {stage} on conflict do nothing; drop table {stage}"
    )))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((read, added))
}

/// Rows in PostgreSQL's `COPY` text format, sent in chunks of about 1 MiB.
pub struct CopySink {
    buf: Vec<u8>,
    sender: mpsc::Sender<Vec<u8>>,
    row_started: bool,
    rows: u64,
}

const CHUNK: usize = 1 << 20;

impl CopySink {
    fn new(sender: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK + 64 * 1024),
            sender,
            row_started: false,
            rows: 0,
        }
    }

    fn separate(&mut self) {
        if self.row_started {
            self.buf.push(b'\t');
        }
        self.row_started = true;
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.separate();
        for &b in s.as_bytes() {
            match b {
                b'\\' => self.buf.extend_from_slice(b"\\\\"),
                b'\t' => self.buf.extend_from_slice(b"\\t"),
                b'\n' => self.buf.extend_from_slice(b"\\n"),
                b'\r' => self.buf.extend_from_slice(b"\\r"),
                _ => self.buf.push(b),
            }
        }
        self
    }

    pub fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    pub fn null(&mut self) -> &mut Self {
        self.separate();
        self.buf.extend_from_slice(b"\\N");
        self
    }

    pub fn int(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => {
                self.separate();
                self.buf.extend_from_slice(v.to_string().as_bytes());
                self
            }
            None => self.null(),
        }
    }

    /// Shortest text that reads back as the same `f64`; non-finite values as PostgreSQL spells them.
    pub fn float(&mut self, v: Option<f64>) -> &mut Self {
        let text = match v {
            None => return self.null(),
            Some(v) if v.is_nan() => "NaN".to_string(),
            Some(v) if v.is_infinite() => if v > 0.0 { "Infinity" } else { "-Infinity" }.into(),
            Some(v) => v.to_string(),
        };
        self.separate();
        self.buf.extend_from_slice(text.as_bytes());
        self
    }

    pub fn bool(&mut self, v: Option<bool>) -> &mut Self {
        match v {
            Some(v) => {
                self.separate();
                self.buf.push(if v { b't' } else { b'f' });
                self
            }
            None => self.null(),
        }
    }

    pub fn json(&mut self, v: &serde_json::Value) -> &mut Self {
        self.text(&v.to_string())
    }

    /// Ends the row; sends the buffer when it is full. Fails when the import was cancelled.
    pub fn end_row(&mut self) -> Result<()> {
        self.buf.push(b'\n');
        self.row_started = false;
        self.rows += 1;
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 64 * 1024));
        self.sender
            .blocking_send(chunk)
            .map_err(|_| anyhow::anyhow!("import cancelled"))
    }
}
