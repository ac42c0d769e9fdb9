use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: decoding and building graphs allocate many small strings
/// and vectors, and glibc's allocator was a quarter of ingest time (docs/benchmarks.md). Built
/// without transparent huge pages (`no_thp`): with them a server held 472 MB after the
/// first-run seed (the test asks < 300) and first uploads paid for zeroing 2 MB pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // candle decides how to split a matrix product on every call from `RAYON_NUM_THREADS`
    // (`candle_core::utils::get_num_threads`: that variable, else the physical cores); it has
    // no other setting. The predictor's matrices are 32 wide, so splitting them costs more than
    // it saves; batches are spread over cores a level up, in 512-graph chunks on the
    // application's pool (`archdb::cpu`), which is sized explicitly and so is not shrunk by this.
    // The variable also makes rayon's global pool one thread; archdb's parallel work does not
    // use that pool (`cpu::on_pool`). Set before any thread exists, as `set_var` requires.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: single-threaded here: the runtime and its threads are built below.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(run());
    // Dropping the runtime would wait for every blocking task, e.g. a cancelled import still
    // building graphs; their work is discarded anyway.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    if let Err(e) = outcome {
        // Expected failures (settings, missing binaries, unreachable directories) are one line
        // with their causes, never a backtrace; bugs panic with their own report.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("archdb=info,tower_http=info"));
    let json = std::env::var("ARCHDB_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    archdb::cli::run(archdb::cli::Cli::parse()).await
}
