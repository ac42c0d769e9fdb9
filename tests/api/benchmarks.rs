//! NAS-Bench-201 import (a 43-cell subset of the real tables), the NATS-style cell lookup,
//! result summaries and Pareto fronts.

use std::sync::Arc;

use archdb::import::{ImportKind, NoProgress, run};
use serde_json::Value;

use crate::common::{TestApp, fixture_path, spawn_app};

/// Imports the 43-cell NB201 fixture.
pub async fn import_nb201(app: &TestApp) -> archdb::import::Summary {
    run(
        &app.pool,
        ImportKind::Nb201,
        &fixture_path("nb201"),
        Arc::new(NoProgress),
    )
    .await
    .expect("nb201 import")
}

#[tokio::test]
async fn nb201_import_links_every_row_to_its_cell_graph_and_is_idempotent() {
    let app = spawn_app().await;
    let first = import_nb201(&app).await;
    assert_eq!(first.details["architectures"]["added"], 43);
    // 43 cells × 20 mean figures + 129 single runs × 3 figures, minus empty cells of the tables.
    let rows: i64 = sqlx::query_scalar("select count(*) from results where benchmark = 'nb201'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        rows as u64,
        first.details["results"]["added"].as_u64().unwrap()
    );
    assert!(rows > 43 * 17, "{rows}");
    let unlinked: i64 = sqlx::query_scalar(
        "select count(*) from results where benchmark = 'nb201' and architecture_id is null",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(unlinked, 0);
    let again = import_nb201(&app).await;
    assert_eq!(again.rows_added, 0, "{again:?}");

    let (status, benchmarks) = app.get_json("/v1/benchmarks").await;
    assert_eq!(status, 200);
    let nb201 = benchmarks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["benchmark"] == "nb201")
        .unwrap();
    assert_eq!(
        (nb201["models"].as_i64(), nb201["rows"].as_i64()),
        (Some(43), Some(rows))
    );
}

#[tokio::test]
async fn best_cifar10_cell_is_6111_at_94_37() {
    let app = spawn_app().await;
    import_nb201(&app).await;
    let (status, cell) = app.get_json("/v1/benchmarks/nb201/6111").await;
    assert_eq!(status, 200, "{cell}");
    let test_acc = cell["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["dataset"] == "cifar10"
                && f["split"] == "test"
                && f["epoch"] == 200
                && f["metric"] == "acc"
        })
        .unwrap();
    assert!((test_acc["value"].as_f64().unwrap() - 94.373333).abs() < 1e-9);
    let arch = cell["arch_str"].as_str().unwrap().to_string();
    assert!(arch.starts_with('|'));
    assert!(!cell["per_seed"].as_array().unwrap().is_empty());
    // Same cell by its architecture string; its graph is stored.
    let (status, by_arch) = app
        .get_json(&format!(
            "/v1/benchmarks/nb201/{}",
            arch.replace('|', "%7C").replace('+', "%2B")
        ))
        .await;
    assert_eq!((status, &by_arch["index"]), (200, &serde_json::json!(6111)));
    let (status, graph) = app
        .get_json(&format!("/v1/architectures/{}", cell["architecture_id"]))
        .await;
    assert_eq!(
        (status, &graph["family"]),
        (200, &serde_json::json!("nb201"))
    );
    // params of the generated network = the official column (0.858 M for 6111 on CIFAR-10).
    let official = cell["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["metric"] == "params_m" && f["dataset"] == "cifar10")
        .unwrap();
    assert!(
        (graph["params"].as_f64().unwrap() / 1e6 - official["value"].as_f64().unwrap()).abs()
            < 1e-5
    );

    // The best row over all results says the same.
    let (_, summary) = app
        .get_json("/v1/stats/summary?benchmark=nb201&dataset=cifar10&metric=acc")
        .await;
    let best = summary
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["split"] == "test" && s["epoch"] == 200)
        .unwrap();
    assert!((best["best"].as_f64().unwrap() - 94.373333).abs() < 1e-9);
    assert_eq!(best["count"], 43);

    let (status, _) = app.get_json("/v1/benchmarks/nb201/99999").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn pareto_front_of_accuracy_against_params() {
    let app = spawn_app().await;
    import_nb201(&app).await;
    let (status, front) = app
        .get_json("/v1/stats/pareto?dataset=cifar10&x=params&split=test&epoch=200&benchmark=nb201")
        .await;
    assert_eq!(status, 200, "{front}");
    assert_eq!(front["points"], 43);
    let points: Vec<(f64, f64)> = front["front"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap()))
        .collect();
    assert!(
        points
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "{points:?}"
    );
    assert!(
        (points.last().unwrap().1 - 94.373333).abs() < 1e-9,
        "the best cell is on the front"
    );
    let svg = app
        .client
        .get(app.url("/v1/stats/pareto?dataset=cifar10&x=macs&split=test&epoch=200&format=svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("Pareto front"));
    let (status, _): (u16, Value) = app
        .get_json("/v1/stats/pareto?dataset=cifar10&x=colour")
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn learning_curves_of_the_official_sample_runs() {
    let app = spawn_app().await;
    import_nb201(&app).await;
    let (_, cell) = app.get_json("/v1/benchmarks/nb201/11").await;
    let curves = cell["learning_curves"].as_array().unwrap();
    assert!(!curves.is_empty());
    let long = curves
        .iter()
        .find(|c| {
            c["dataset"] == "cifar10-valid"
                && c["split"] == "train"
                && c["metric"] == "acc"
                && c["budget"] == 200
        })
        .expect("a 200-epoch training curve");
    let values = long["values"].as_array().unwrap();
    assert_eq!(values.len(), 200);
    assert!(
        values.last().unwrap().as_f64().unwrap() > values[0].as_f64().unwrap(),
        "training accuracy rises"
    );
    // Curves are kept apart from the final figures.
    assert!(
        cell["figures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f["metric"].as_str().unwrap().starts_with("curve_"))
    );
    let (_, none) = app.get_json("/v1/benchmarks/nb201/6111").await;
    assert_eq!(none["learning_curves"], serde_json::json!([]));
}
