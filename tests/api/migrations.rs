//! Upgrades: a database created and filled by the previous release's schema is migrated to HEAD
//! with its data intact.

use std::path::Path;

use archdb::db::Database;
use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;

use crate::common::fixture;

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

    // Filled as that release stored things, by SQL in its layout (HEAD's code writes HEAD's):
    // imports of two starter kinds, an architecture with its graph as JSON and its ONNX as
    // plain bytes, an alias and a result row, a predictor and a job.
    let upload = fixture("onnx-samples/resnet18.legacy.onnx");
    let ingested = archdb::ingest::ingest(upload.clone().into(), Default::default()).unwrap();
    let graph = archdb::graph::StoredGraph::from(&ingested.graph);
    let onnx = archdb::ingest::decompress_onnx(&ingested.stored_onnx).unwrap();
    let mut import = 0i64;
    for kind in ["nb201", "nb-macro"] {
        import = sqlx::query_scalar(
            "insert into imports (kind, path, finished_at) values ($1, 'data', now()) returning id",
        )
        .bind(kind)
        .fetch_one(&pool)
        .await
        .unwrap();
    }
    let s = &ingested.graph.summary;
    let arch: i64 = sqlx::query_scalar(
        "insert into architectures (graph_hash, name, params, macs, num_nodes, num_edges, depth, input_shape, op_counts)
         values ($1, 'resnet18', $2, $3, $4, $5, $6, $7, $8) returning id",
    )
    .bind(&ingested.graph_hash)
    .bind(s.params as i64)
    .bind(s.macs as i64)
    .bind(s.num_nodes as i32)
    .bind(s.num_edges as i32)
    .bind(s.depth as i32)
    .bind(&s.input_shape)
    .bind(sqlx::types::Json(&s.op_counts))
    .fetch_one(&pool)
    .await
    .unwrap();
    let edges: Vec<i32> = graph.edges.iter().flatten().map(|&v| v as i32).collect();
    sqlx::query(
        "insert into architecture_graphs (architecture_id, nodes, edges) values ($1, $2, $3)",
    )
    .bind(arch)
    .bind(sqlx::types::Json(&graph.nodes))
    .bind(&edges)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into architecture_onnx (architecture_id, onnx, original_size) values ($1, $2, $3)",
    )
    .bind(arch)
    .bind(&onnx)
    .bind(upload.len() as i64)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into architecture_aliases (namespace, value, architecture_id) values ('nb201', '0', $1)",
    )
    .bind(arch)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into results (benchmark, source_key, task, dataset, metric, nn, epoch, value, architecture_id, import_id)
         values ('nb201', 'k0', 'img-classification', 'cifar10', 'acc', 'resnet18', 200, 0.9, $1, $2)",
    )
    .bind(arch)
    .bind(import)
    .execute(&pool)
    .await
    .unwrap();
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

    // Graphs and ONNX stored in the old layout read back through HEAD's code as they were.
    let old_graph = archdb::db::architectures::graph(&db.pool, arch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old_graph.nodes, graph.nodes);
    assert_eq!(old_graph.edges, graph.edges);
    let loaded = archdb::db::predictors::graphs(&db.pool, &[arch])
        .await
        .unwrap();
    assert_eq!(loaded[&arch].nodes, graph.nodes);
    let old_onnx = archdb::db::architectures::onnx(&db.pool, arch)
        .await
        .unwrap();
    assert_eq!(old_onnx, Some(onnx));
    // The same model uploaded again is the old architecture; a new one is stored compactly.
    let (found, created) =
        archdb::db::architectures::insert(&db.pool, &ingested, &Default::default())
            .await
            .unwrap();
    assert_eq!((found.id, created), (arch, false));
    let other = fixture("onnx-samples/squeezenet1_0.full.onnx");
    let other = archdb::ingest::ingest(other.into(), Default::default()).unwrap();
    let (new, created) = archdb::db::architectures::insert(&db.pool, &other, &Default::default())
        .await
        .unwrap();
    assert!(created);
    let forms: (bool, bool, String) = sqlx::query_as(
        "select g.graph is not null, g.nodes is null, o.codec from architecture_graphs g
           join architecture_onnx o using (architecture_id) where architecture_id = $1",
    )
    .bind(new.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(forms, (true, true, "lz4".to_string()));
    // A graph row must hold one form: neither is refused by the schema.
    let neither =
        sqlx::query("update architecture_graphs set graph = null where architecture_id = $1")
            .bind(new.id)
            .execute(&db.pool)
            .await;
    assert!(neither.is_err());
    db.close().await;
}
