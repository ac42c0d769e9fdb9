//! `archdb worker`: claims training (graph and recipe predictors) and fine-tuning jobs from the PostgreSQL queue, runs them on
//! the best device this build has, reports progress on the job (which also extends its lease)
//! and stops when the job is cancelled or the lease is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use sqlx::PgPool;

use crate::db::jobs::{self, Job};
use crate::predict::PredictError;
use crate::training::{self, JobParams, JobRef};

/// Worker settings.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerOptions {
    /// How long a claimed job stays this worker's without a heartbeat; a killed worker's job
    /// is claimed again after this.
    #[arg(long, env = "ARCHDB_JOB_LEASE_SECS", default_value_t = 60.0)]
    pub lease_secs: f64,
    /// Seconds between polls of the queue when idle (a NOTIFY also wakes the worker).
    #[arg(long, default_value_t = 5.0)]
    pub poll_secs: f64,
    /// Exit when the queue is empty instead of waiting for jobs.
    #[arg(long)]
    pub once: bool,
    /// Name recorded on claimed jobs (default: host name and process id).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub trainer: training::TrainerOptions,
}

impl WorkerOptions {
    fn worker_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}:{}", host.trim(), std::process::id())
        })
    }
}

/// Runs jobs until stopped (or, with `once`, until the queue is empty).
pub async fn run(pool: &PgPool, options: &WorkerOptions) -> Result<()> {
    let worker = options.worker_name();
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen("archdb_jobs").await?;
    tracing::info!(%worker, trainer = ?options.trainer.trainer, device = ?training::best_backend(), "worker ready");
    loop {
        match jobs::claim(pool, &worker, options.lease_secs).await? {
            Some(job) => execute(pool, job, &worker, options).await?,
            None if options.once => return Ok(()),
            None => {
                let wait = Duration::from_secs_f64(options.poll_secs);
                let _ = tokio::time::timeout(wait, listener.recv()).await;
            }
        }
    }
}

/// Runs one claimed job to its end state.
async fn execute(pool: &PgPool, job: Job, worker: &str, options: &WorkerOptions) -> Result<()> {
    let lease_secs = options.lease_secs;
    tracing::info!(job = job.id, kind = %job.kind, attempt = job.attempts, "job claimed");
    let latest: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (pool, worker, latest, stop) = (
            pool.clone(),
            worker.to_string(),
            latest.clone(),
            stop.clone(),
        );
        let id = job.id;
        tokio::spawn(async move {
            let period = Duration::from_secs_f64((lease_secs / 3.0).max(0.1));
            loop {
                tokio::time::sleep(period).await;
                let progress = latest.lock().expect("progress lock").clone();
                match jobs::heartbeat(&pool, id, &worker, lease_secs, progress.as_ref()).await {
                    Ok(Some(false)) => {}
                    Ok(Some(true)) | Ok(None) => stop.store(true, Ordering::Relaxed),
                    Err(e) => tracing::warn!(job = id, "heartbeat failed: {e}"),
                }
            }
        })
    };
    let started = std::time::Instant::now();
    let progress: training::ProgressFn = {
        let (latest, stop) = (latest.clone(), stop.clone());
        Box::new(move |report| {
            let mut value = serde_json::to_value(report).unwrap_or_default();
            value["elapsed_seconds"] = started.elapsed().as_secs_f64().into();
            *latest.lock().expect("progress lock") = Some(value);
            !stop.load(Ordering::Relaxed)
        })
    };
    let job_ref = JobRef {
        id: job.id,
        worker: worker.to_string(),
    };
    let outcome = match JobParams::from_columns(&job.kind, &job.params) {
        Ok(JobParams::Train(request)) => {
            training::train(pool, &request, Some(&job_ref), &options.trainer, progress).await
        }
        Ok(JobParams::Finetune(request)) => {
            training::finetune(pool, &request, Some(&job_ref)).await
        }
        Ok(JobParams::TrainRecipe(request)) => {
            training::recipe::train(pool, &request, Some(&job_ref)).await
        }
        Err(e) => Err(e),
    };
    heartbeat.abort();
    match outcome {
        Ok(predictor) => tracing::info!(job = job.id, predictor, "job succeeded"),
        Err(e) => {
            let cancelled = matches!(
                e.downcast_ref::<PredictError>(),
                Some(PredictError::Cancelled)
            );
            tracing::warn!(job = job.id, cancelled, "job ended: {e:#}");
            jobs::finish_unsuccessfully(pool, job.id, worker, cancelled, &format!("{e:#}")).await?;
        }
    }
    Ok(())
}
