//! Scale-out on one PostgreSQL: two API servers (this test's and an `archdb serve` process) and
//! two `archdb worker` processes. No job runs twice, an activation made through one server is
//! served by the other, and a write through one server is seen at once through the other.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{ServeProcess, TestApp};
use crate::predictions::{post, target, tiny, wait_for, with_nb201, worker_process};

struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.0 {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

#[tokio::test]
async fn two_servers_and_two_workers_share_one_database() {
    let app = with_nb201().await;
    let url = app.database_url();
    let second = ServeProcess::start(&url).await;
    let other = TestApp {
        base: second.base.clone(),
        client: reqwest::Client::new(),
        pool: app.pool.clone(),
    };
    let workers = Workers(vec![
        worker_process(&url, "worker-a"),
        worker_process(&url, "worker-b"),
    ]);

    // Jobs queued through both servers; each runs once, on one of the two workers.
    let mut jobs = Vec::new();
    for (i, server) in [&app, &other, &app, &other].into_iter().enumerate() {
        let (status, queued) = post(
            server,
            "/v1/predictors",
            json!({"target": target(), "train_size": 30, "seed": i, "config": tiny()}),
        )
        .await;
        assert_eq!(status, 202, "{queued}");
        jobs.push(queued["job_id"].as_i64().unwrap());
    }
    let mut ran_on = Vec::new();
    for &job in &jobs {
        let done = wait_for(&app, job, |j| {
            j["state"] != "queued" && j["state"] != "running"
        })
        .await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(done["attempts"], 1, "claimed once: {done}");
        ran_on.push(done["worker"].as_str().unwrap().to_string());
    }
    drop(workers);
    assert!(
        ran_on.iter().all(|w| w == "worker-a" || w == "worker-b"),
        "{ran_on:?}"
    );
    eprintln!("jobs ran on {ran_on:?}");
    let predictors: Vec<i64> = sqlx::query_scalar("select id from predictors order by id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        predictors.len(),
        jobs.len(),
        "one predictor per job, none twice"
    );

    // Activated through the second server, served by the first (NOTIFY reaches every server).
    let chosen = predictors[0];
    let (status, body) = post(
        &other,
        &format!("/v1/predictors/{chosen}/activate"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ask = json!({"nb201": [6111], "targets": [{"benchmark": "nb201", "dataset": "cifar10"}]});
    for server in [&app, &other] {
        let started = Instant::now();
        loop {
            let (status, answer) = post(server, "/v1/predictions", ask.clone()).await;
            if status == 200 && answer["results"][0]["predictor_id"] == chosen {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{}: {answer}",
                server.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A write through one server is seen by the next read through the other, aggregates included:
    // deleting a cell's architecture unlinks its result rows.
    let before = nb201_rows_with_graph(&app).await;
    let (id, rows): (i64, i64) = sqlx::query_as(
        "select architecture_id, count(*) from results
          where benchmark = 'nb201' and architecture_id is not null
          group by architecture_id order by architecture_id limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let deleted = other
        .client
        .delete(other.url(&format!("/v1/architectures/{id}")))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let (status, _) = app.get_json(&format!("/v1/architectures/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(nb201_rows_with_graph(&app).await, before - rows);
}

/// NB201's result rows linked to a stored graph, as `GET /v1/benchmarks` counts them.
async fn nb201_rows_with_graph(app: &TestApp) -> i64 {
    let (status, body) = app.get_json("/v1/benchmarks").await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .find(|b| b["benchmark"] == "nb201")
        .and_then(|b| b["rows_with_graph"].as_i64())
        .unwrap_or_else(|| panic!("no nb201 holdings: {body}"))
}
