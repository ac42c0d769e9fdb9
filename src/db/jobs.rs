//! The training-job queue. Workers claim jobs with `FOR UPDATE SKIP LOCKED`, hold them by a
//! lease their heartbeat extends, and finish them; a job whose lease runs out (its worker died)
//! is claimable again until it has used `max_attempts`.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    /// `train` or `finetune`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub cancel_requested: bool,
    /// The worker holding (or that last held) the job.
    pub worker: Option<String>,
    pub lease_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Latest progress: stage, member, epoch, loss, validation_kendall, plus elapsed seconds.
    #[schema(value_type = Option<Object>)]
    pub progress: Option<serde_json::Value>,
    pub error: Option<String>,
    /// The predictor the job produced.
    pub predictor_id: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub heartbeat_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

const COLUMNS: &str = "id, kind, params, state, attempts, max_attempts, cancel_requested, worker,
    lease_until, progress, error, predictor_id, created_at, started_at, heartbeat_at, finished_at";

/// Queues a job; returns its id.
pub async fn enqueue(pool: &PgPool, kind: &str, params: &serde_json::Value) -> sqlx::Result<i64> {
    let mut tx = pool.begin().await?;
    let id = insert(&mut tx, kind, params, None).await?;
    tx.commit().await?;
    Ok(id)
}

/// Queues a job for `owner` unless it has `cap` jobs queued or running already (`cap` 0: no
/// cap). Returns the job's id, or `Err` with the owner's pending jobs at the cap.
pub async fn enqueue_capped(
    pool: &PgPool,
    kind: &str,
    params: &serde_json::Value,
    owner: &str,
    cap: i64,
) -> sqlx::Result<Result<i64, i64>> {
    let mut tx = pool.begin().await?;
    // One owner's jobs are queued one at a time, so that two cannot both pass the count.
    sqlx::query("select pg_advisory_xact_lock(hashtext('archdb_jobs:' || $1))")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    let pending: i64 = sqlx::query_scalar(
        "select count(*) from jobs where owner = $1 and state in ('queued', 'running')",
    )
    .bind(owner)
    .fetch_one(&mut *tx)
    .await?;
    if cap > 0 && pending >= cap {
        return Ok(Err(pending));
    }
    let id = insert(&mut tx, kind, params, Some(owner)).await?;
    tx.commit().await?;
    Ok(Ok(id))
}

async fn insert(
    conn: &mut PgConnection,
    kind: &str,
    params: &serde_json::Value,
    owner: Option<&str>,
) -> sqlx::Result<i64> {
    // Without an owner, the statement of a schema before `owner` (as the upgrade test runs it).
    let insert = match owner {
        None => sqlx::query_scalar("insert into jobs (kind, params) values ($1, $2) returning id")
            .bind(kind)
            .bind(params),
        Some(owner) => sqlx::query_scalar(
            "insert into jobs (kind, params, owner) values ($1, $2, $3) returning id",
        )
        .bind(kind)
        .bind(params)
        .bind(owner),
    };
    let id: i64 = insert.fetch_one(&mut *conn).await?;
    // Wakes idle workers at once, on commit (they also poll).
    sqlx::query("select pg_notify('archdb_jobs', $1)")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

pub async fn get(pool: &PgPool, id: i64) -> sqlx::Result<Option<Job>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from jobs where id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Claims the oldest queued job, or a running one whose lease expired, for `worker`.
pub async fn claim(pool: &PgPool, worker: &str, lease_secs: f64) -> sqlx::Result<Option<Job>> {
    // Jobs whose lease expired and that will not run again end first: those out of attempts
    // fail, those cancelled while running are cancelled (their worker died before it could
    // say so; they would otherwise stay `running` for ever).
    sqlx::query(
        "update jobs set finished_at = now(),
                state = case when cancel_requested then 'cancelled' else 'failed' end,
                error = case when cancel_requested then error
                             else coalesce(error, 'worker lost ' || attempts || ' times (lease expired)') end
          where state = 'running' and lease_until < now()
            and (attempts >= max_attempts or cancel_requested)",
    )
    .execute(pool)
    .await?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update jobs set state = 'running', attempts = attempts + 1, worker = $1,
                lease_until = now() + make_interval(secs => $2), heartbeat_at = now(),
                started_at = coalesce(started_at, now())
          where id = (select id from jobs
                       where (state = 'queued' or (state = 'running' and lease_until < now()))
                         and not cancel_requested and attempts < max_attempts
                       order by id
                       for update skip locked
                       limit 1)
          returning {COLUMNS}"
    )))
    .bind(worker)
    .bind(lease_secs)
    .fetch_optional(pool)
    .await
}

/// Extends the lease and records progress. Returns `None` when the job is no longer this
/// worker's (lease lost to another worker, or finished), else whether cancellation was asked.
pub async fn heartbeat(
    pool: &PgPool,
    id: i64,
    worker: &str,
    lease_secs: f64,
    progress: Option<&serde_json::Value>,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar(
        "update jobs set lease_until = now() + make_interval(secs => $3), heartbeat_at = now(),
                progress = coalesce($4, progress)
          where id = $1 and worker = $2 and state = 'running'
          returning cancel_requested",
    )
    .bind(id)
    .bind(worker)
    .bind(lease_secs)
    .bind(progress)
    .fetch_optional(pool)
    .await
}

/// Marks the job succeeded with its predictor, if `worker` still holds it (inside the
/// transaction that registered the predictor). Returns whether it did.
pub async fn succeed(
    conn: &mut PgConnection,
    id: i64,
    worker: &str,
    predictor_id: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "update jobs set state = 'succeeded', predictor_id = $3, finished_at = now(), error = null
          where id = $1 and worker = $2 and state = 'running'",
    )
    .bind(id)
    .bind(worker)
    .bind(predictor_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a job this worker holds: `cancelled`, or `failed` with the error. (A worker that dies
/// instead leaves the job to its lease: it is claimed again when the lease runs out.)
pub async fn finish_unsuccessfully(
    pool: &PgPool,
    id: i64,
    worker: &str,
    cancelled: bool,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "update jobs set state = case when $3 then 'cancelled' else 'failed' end,
                error = case when $3 then null else $4 end, finished_at = now()
          where id = $1 and worker = $2 and state = 'running'",
    )
    .bind(id)
    .bind(worker)
    .bind(cancelled)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Cancels a queued job at once, or asks the worker of a running one to stop. Returns the job.
pub async fn cancel(pool: &PgPool, id: i64) -> sqlx::Result<Option<Job>> {
    sqlx::query(
        "update jobs set cancel_requested = true,
                state = case when state = 'queued' then 'cancelled' else state end,
                finished_at = case when state = 'queued' then now() else finished_at end
          where id = $1 and state in ('queued', 'running')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    get(pool, id).await
}
