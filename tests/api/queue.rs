//! The job queue (`archdb::db::jobs`) under races, on real PostgreSQL: concurrent claims, leases
//! that run out, exhausted attempts and cancellation.

use std::collections::HashSet;

use archdb::db::jobs;
use sqlx::PgPool;

use crate::common::spawn_app;

/// A lease longer than any test: leases end only through [`lease_runs_out`].
const LEASE: f64 = 60.0;

async fn enqueue(pool: &PgPool, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(
            jobs::enqueue(pool, "train", &serde_json::json!({ "n": n }))
                .await
                .unwrap(),
        );
    }
    ids
}

/// Ends the lease of job `id` now, as if its worker had stopped sending heartbeats (no test
/// waits on the clock).
async fn lease_runs_out(pool: &PgPool, id: i64) {
    sqlx::query("update jobs set lease_until = now() - interval '1 second' where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

/// A stored predictor for `succeed` to point at.
async fn predictor(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "insert into predictors (name, target, artifact, config) values ('q', '{}', '\\x00', '{}') returning id",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_claiming_at_once_get_different_jobs() {
    let app = spawn_app().await;
    let ids = enqueue(&app.pool, 24).await;
    // Eight workers claim until the queue is empty, all at once.
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let pool = app.pool.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(job) = jobs::claim(&pool, &format!("w{w}"), LEASE).await.unwrap() {
                    assert_eq!(job.worker.as_deref(), Some(format!("w{w}").as_str()));
                    assert_eq!(job.attempts, 1);
                    claimed.push(job.id);
                }
                claimed
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), ids.len(), "no job is claimed twice: {all:?}");
    assert_eq!(distinct, ids.into_iter().collect());
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_cannot_finish_the_job() {
    let app = spawn_app().await;
    let [id] = enqueue(&app.pool, 1).await[..] else {
        unreachable!()
    };
    let first = jobs::claim(&app.pool, "a", LEASE).await.unwrap().unwrap();
    assert_eq!(first.id, id);
    assert!(
        jobs::claim(&app.pool, "b", LEASE).await.unwrap().is_none(),
        "a held job is not claimable"
    );
    lease_runs_out(&app.pool, id).await;
    let second = jobs::claim(&app.pool, "b", LEASE).await.unwrap().unwrap();
    assert_eq!((second.id, second.attempts), (id, 2));

    // "a" learns it lost the job, and neither its result nor its failure counts.
    assert_eq!(
        jobs::heartbeat(&app.pool, id, "a", LEASE, None)
            .await
            .unwrap(),
        None
    );
    let predictor = predictor(&app.pool).await;
    let mut tx = app.pool.begin().await.unwrap();
    assert!(!jobs::succeed(&mut tx, id, "a", predictor).await.unwrap());
    tx.rollback().await.unwrap();
    jobs::finish_unsuccessfully(&app.pool, id, "a", false, "a's error")
        .await
        .unwrap();
    let job = jobs::get(&app.pool, id).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.worker.as_deref()),
        ("running", Some("b"))
    );
    assert_eq!(job.error, None);

    // The holder finishes it.
    assert_eq!(
        jobs::heartbeat(&app.pool, id, "b", LEASE, None)
            .await
            .unwrap(),
        Some(false)
    );
    let mut tx = app.pool.begin().await.unwrap();
    assert!(jobs::succeed(&mut tx, id, "b", predictor).await.unwrap());
    tx.commit().await.unwrap();
    let job = jobs::get(&app.pool, id).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.predictor_id),
        ("succeeded", Some(predictor))
    );
    assert!(jobs::claim(&app.pool, "c", LEASE).await.unwrap().is_none());
}

#[tokio::test]
async fn a_job_whose_attempts_are_exhausted_fails() {
    let app = spawn_app().await;
    let [id] = enqueue(&app.pool, 1).await[..] else {
        unreachable!()
    };
    sqlx::query("update jobs set max_attempts = 2 where id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    for (attempt, worker) in [(1, "a"), (2, "b")] {
        let job = jobs::claim(&app.pool, worker, LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((job.id, job.attempts), (id, attempt));
        lease_runs_out(&app.pool, id).await;
    }
    assert!(jobs::claim(&app.pool, "c", LEASE).await.unwrap().is_none());
    let job = jobs::get(&app.pool, id).await.unwrap().unwrap();
    assert_eq!(job.state, "failed");
    assert_eq!(job.attempts, 2);
    assert_eq!(
        job.error.as_deref(),
        Some("worker lost 2 times (lease expired)")
    );
    assert!(job.finished_at.is_some());
}

#[tokio::test]
async fn cancelling_queued_and_running_jobs() {
    let app = spawn_app().await;
    let [queued, running, abandoned] = enqueue(&app.pool, 3).await[..] else {
        unreachable!()
    };
    // Queued: cancelled at once and never claimed.
    let job = jobs::cancel(&app.pool, queued).await.unwrap().unwrap();
    assert_eq!(job.state, "cancelled");
    assert!(job.cancel_requested && job.finished_at.is_some());
    assert_eq!(job.attempts, 0);

    // Running: its worker is asked to stop, and ends it as cancelled.
    let job = jobs::claim(&app.pool, "a", LEASE).await.unwrap().unwrap();
    assert_eq!(job.id, running, "the cancelled job is skipped");
    let job = jobs::cancel(&app.pool, running).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.cancel_requested),
        ("running", true)
    );
    assert_eq!(
        jobs::heartbeat(&app.pool, running, "a", LEASE, None)
            .await
            .unwrap(),
        Some(true)
    );
    jobs::finish_unsuccessfully(&app.pool, running, "a", true, "cancelled")
        .await
        .unwrap();
    let job = jobs::get(&app.pool, running).await.unwrap().unwrap();
    assert_eq!((job.state.as_str(), job.error), ("cancelled", None));

    // Running, cancelled, and its worker dies: it ends cancelled when the lease runs out
    // instead of staying "running" for ever.
    let job = jobs::claim(&app.pool, "b", LEASE).await.unwrap().unwrap();
    assert_eq!(job.id, abandoned);
    jobs::cancel(&app.pool, abandoned).await.unwrap();
    lease_runs_out(&app.pool, abandoned).await;
    assert!(jobs::claim(&app.pool, "c", LEASE).await.unwrap().is_none());
    let job = jobs::get(&app.pool, abandoned).await.unwrap().unwrap();
    assert_eq!((job.state.as_str(), job.attempts), ("cancelled", 1));
    assert!(job.finished_at.is_some());

    // Finished jobs stay as they are.
    let job = jobs::cancel(&app.pool, running).await.unwrap().unwrap();
    assert_eq!(job.state, "cancelled");
}
