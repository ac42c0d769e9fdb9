//! The MCP server with the official MCP Python SDK as the client, over stdio and Streamable
//! HTTP, against real `archdb serve` / `archdb mcp` processes on a real PostgreSQL.
//!
//! The checks live in `check_mcp.py`; this test makes a fresh database, starts the servers and
//! runs the script with the Python named by `ARCHDB_MCP_PYTHON` (`.ci/mcp-venv.sh` makes one).
//! Without that Python and its `mcp` package the test fails in CI (`CI` set, as `.ci/run` sets
//! it); elsewhere it says that it was skipped, so `cargo test` runs on a fresh clone.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sqlx::postgres::PgConnectOptions;

/// A child process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The interpreter with the MCP SDK. A missing one fails the test with the fix in CI, and
/// skips it (saying so) elsewhere.
fn python() -> Option<String> {
    let python = std::env::var("ARCHDB_MCP_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import mcp, jsonschema"])
        .output();
    if probe.as_ref().is_ok_and(|o| o.status.success()) {
        return Some(python);
    }
    let fix = format!(
        "the MCP tests need Python with the `mcp` package: export \
         ARCHDB_MCP_PYTHON=$(.ci/mcp-venv.sh) ({python}: {probe:?})"
    );
    assert!(std::env::var_os("CI").is_none(), "{fix}");
    eprintln!("SKIPPED MCP tests: {fix}");
    None
}

/// A URL for `--database-url` naming the same database as `options` (TCP or unix socket).
fn database_url(options: &PgConnectOptions) -> String {
    let db = options.get_database().expect("a database name");
    let user = options.get_username();
    match options.get_socket() {
        Some(dir) => format!(
            "postgres://{user}@localhost:{}/{db}?host={}",
            options.get_port(),
            dir.display()
        ),
        None => format!(
            "postgres://{user}@{}:{}/{db}",
            options.get_host(),
            options.get_port()
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn serve(url: &str, port: u16, extra: &[&str]) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_archdb"))
        .args(["serve", "--database-url", url, "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .env("RUST_LOG", "archdb=warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start archdb serve");
    Process(child)
}

/// A seed directory with the NB201 test cells and the bundled predictor, so `archdb serve`
/// seeds a fresh database in seconds (the full starter set takes about a minute).
fn seed_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("archdb-mcp-seed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("seed dir");
    for (name, target) in [
        ("nasbench201", "tests/fixtures/nb201"),
        ("predictor", "data/predictor"),
    ] {
        std::os::unix::fs::symlink(root().join(target), dir.join(name)).expect("seed link");
    }
    dir
}

#[tokio::test]
async fn the_python_sdk_client_gets_the_rest_answers_over_stdio_and_http() {
    let Some(python) = python() else {
        return;
    };
    let options = archdb::testing::fresh_database();
    // Creates and migrates the database, so both servers start on the same schema.
    let db = archdb::db::Database::connect_with(options.clone(), 2, None)
        .await
        .expect("test database");
    let url = database_url(&options);
    let seed = seed_dir();
    let (port, guarded_port, token) = (free_port(), free_port(), "mcp-test-token");
    let _server = serve(&url, port, &["--seed-dir", seed.to_str().unwrap()]);
    let _guarded = serve(&url, guarded_port, &["--no-seed", "--api-token", token]);
    let script = root().join("tests/mcp/check_mcp.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("ARCHDB_URL", format!("http://127.0.0.1:{port}"))
        .env(
            "ARCHDB_GUARDED_URL",
            format!("http://127.0.0.1:{guarded_port}"),
        )
        .env("ARCHDB_TOKEN", token)
        .env("ARCHDB_BIN", env!("CARGO_BIN_EXE_archdb"))
        .env("DATABASE_URL", &url)
        .output()
        .await
        .expect("run the MCP checks");
    let _ = std::fs::remove_dir_all(&seed);
    db.pool.close().await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}");
    assert!(
        out.status.success(),
        "MCP checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all MCP checks passed"), "{stdout}");
}
