//! Upgrades: a database created and filled by the previous release's schema is migrated to HEAD
//! with its data intact.

use std::path::Path;
use std::sync::Arc;

use archdb::db::Database;
use archdb::import::{ImportKind, NoProgress, run};
use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;

use crate::common::fixture_path;

/// The last migration of the previous release (before the starter set was tracked per kind).
const PREVIOUS_RELEASE: i64 = 7;

/// Tables with user data and how many rows each has.
async fn row_counts(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    let mut counts = Vec::new();
    for table in [
        "architectures",
        "architecture_graphs",
        "architecture_aliases",
        "imports",
        "results",
        "jobs",
        "predictors",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                .fetch_one(pool)
                .await
                .unwrap();
        counts.push((table.to_string(), n));
    }
    counts
}

#[tokio::test]
async fn a_database_of_the_previous_release_upgrades_with_its_data() {
    // The previous release's migrations, as files, applied to a new database.
    let options = archdb::testing::fresh_database();
    let name = options.get_database().unwrap().to_string();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    let old = std::env::temp_dir().join(format!("archdb-migrations-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&old);
    std::fs::create_dir_all(&old).unwrap();
    let head = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&head).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let version: i64 = file.split('_').next().unwrap().parse().unwrap();
        if version <= PREVIOUS_RELEASE {
            std::fs::copy(&path, old.join(&file)).unwrap();
        }
    }
    let pool = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
    Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    std::fs::remove_dir_all(&old).unwrap();

    // Filled as that release did: imports (graphs, aliases, results), a predictor, a job.
    for (kind, dir) in [
        (ImportKind::Nb201, "nb201"),
        (ImportKind::NbMacro, "nb-macro"),
    ] {
        run(&pool, kind, &fixture_path(dir), Arc::new(NoProgress))
            .await
            .unwrap();
    }
    let predictor: i64 = sqlx::query_scalar(
        "insert into predictors (name, target, artifact, config, evaluation, active)
         values ('old', '{\"benchmark\": \"nb201\"}', '\\x0102', '{}', '{\"kendall_tau_b\": 0.8}', true)
         returning id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let job = archdb::db::jobs::enqueue(&pool, "train", &serde_json::json!({"seed": 3}))
        .await
        .unwrap();
    let before = row_counts(&pool).await;
    assert!(before.iter().all(|(_, n)| *n > 0), "{before:?}");
    let cell: (i64, String) = sqlx::query_as(
        "select architecture_id, value from architecture_aliases where namespace = 'nb201' order by value limit 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;

    // HEAD's migrations, as `archdb serve` runs them at start.
    let db = Database::connect_with(options, 2, None).await.unwrap();
    assert_eq!(row_counts(&db.pool).await, before);
    let after: (i64, String) = sqlx::query_as(
        "select architecture_id, value from architecture_aliases where namespace = 'nb201' order by value limit 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(after, cell);
    let (artifact, active): (Vec<u8>, bool) =
        sqlx::query_as("select artifact, active from predictors where id = $1")
            .bind(predictor)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((artifact, active), (vec![1, 2], true));
    let job = archdb::db::jobs::get(&db.pool, job).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.params["seed"].as_i64()),
        ("queued", Some(3))
    );
    // The starter kinds the old database had are recorded, so they are not imported again.
    let loaded: Vec<String> = sqlx::query_scalar("select kind from starter_set order by kind")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(loaded, ["nb-macro", "nb201"]);
    db.close().await;
}
