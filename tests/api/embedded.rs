//! The embedded default: archdb runs its own PostgreSQL cluster from the installed binaries,
//! reuses it on the next start and stops it on shutdown.

use std::path::Path;

use archdb::db::{Database, DbConfig, EmbeddedPostgres};

#[tokio::test]
async fn embedded_cluster_starts_persists_and_stops() {
    let root = std::env::temp_dir().join(format!("archdb-embedded-{}", std::process::id()));
    let config = DbConfig {
        database_url: None,
        data_dir: root.clone(),
        pg_bin: None,
        pool_size: 2,
    };
    let socket = root.join("run/.s.PGSQL.5432");

    let db = Database::connect(&config).await.expect("embedded cluster");
    let migrations: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(migrations >= 1);
    sqlx::query("create table persisted (v int)")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("insert into persisted values (42)")
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(socket.exists());
    db.close().await;
    assert!(!socket.exists(), "the server stops on shutdown");

    let db = Database::connect(&config).await.expect("restart");
    let v: i32 = sqlx::query_scalar("select v from persisted")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(v, 42, "the cluster is reused");
    db.close().await;
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn missing_binaries_give_one_clear_message() {
    let err = EmbeddedPostgres::start(
        &std::env::temp_dir().join("archdb-nobin"),
        Some(Path::new("/nonexistent/bin")),
    )
    .unwrap_err();
    assert!(err.to_string().contains("has no initdb"), "{err}");
}

/// As root (as in CI), a data directory the `postgres` user cannot reach fails the start with
/// one line naming the directory and the fix, not initdb's "Permission denied" and a backtrace.
#[test]
fn an_unreachable_data_dir_is_one_clear_line_as_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root; this path needs root"
        );
        eprintln!("not root: initdb runs as this user, the check does not apply");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let closed = tempfile::tempdir().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = closed.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_archdb"))
        .args(["serve", "--no-seed", "--addr", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env("ARCHDB_DATA_DIR", &data)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(&closed.path().display().to_string()),
        "{stderr}"
    );
    assert!(last.contains("chmod o+x"), "{stderr}");
    assert!(
        !stderr.contains("stack backtrace") && !stderr.contains("Caused by"),
        "{stderr}"
    );
}
