//! `GET /metrics` in the Prometheus text format: requests and latencies per route template and
//! status, the response cache, the database pools, predictor inference time, the job queue and
//! the progress of the starter-set import this process runs. Each [`ApiContext`] has its own
//! registry (no global state), so several servers in one process keep their own figures.
//!
//! Pool, queue and cache figures are read when scraped; the rest are counted as things happen.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Error, Result};
use crate::import::{Progress, Unit};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Latency buckets in seconds: cache hits and lookups take well under a millisecond, cold
/// aggregates about a second.
const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The figures of one server.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub(super) cache_hits: IntCounterVec,
    pub(super) cache_misses: IntCounterVec,
    cache_entries: IntGauge,
    cache_bytes: IntGauge,
    data_version: IntGauge,
    /// Time of the model work of one `POST /v1/predictions` (all its architectures and targets).
    pub predictor_inference: Histogram,
    pool_connections: IntGaugeVec,
    pool_max: IntGaugeVec,
    jobs: IntGaugeVec,
    import_running: IntGauge,
    import_done: IntGaugeVec,
    import_size: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
            )
        };
        let gauge = |name: &str, help: &str| {
            register(&registry, IntGauge::new(name, help).expect("valid gauge"))
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge"),
            )
        };
        Self {
            requests: counter(
                "archdb_http_requests_total",
                "HTTP requests answered, by method, route template and status.",
                &["method", "route", "status"],
            ),
            latency: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "archdb_http_request_duration_seconds",
                        "Time from request to response headers (a streamed body may take longer).",
                    )
                    .buckets(BUCKETS.to_vec()),
                    &["method", "route", "status"],
                )
                .expect("valid histogram"),
            ),
            cache_hits: counter(
                "archdb_cache_hits_total",
                "GETs answered from the response cache, by route template.",
                &["route"],
            ),
            cache_misses: counter(
                "archdb_cache_misses_total",
                "Cacheable GETs computed because no current answer was kept, by route template.",
                &["route"],
            ),
            cache_entries: gauge("archdb_cache_entries", "Answers in the response cache."),
            cache_bytes: gauge(
                "archdb_cache_size_bytes",
                "Bytes of the answers in the response cache.",
            ),
            data_version: gauge(
                "archdb_data_version",
                "The database's data version (raised by every committed change to the data).",
            ),
            predictor_inference: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "archdb_predictor_inference_seconds",
                        "Model time of one prediction request (all its architectures and targets).",
                    )
                    .buckets(BUCKETS.to_vec()),
                )
                .expect("valid histogram"),
            ),
            pool_connections: gauges(
                "archdb_db_pool_connections",
                "Open database connections of a pool, in use or idle.",
                &["pool", "state"],
            ),
            pool_max: gauges(
                "archdb_db_pool_max_connections",
                "Most connections a pool opens.",
                &["pool"],
            ),
            jobs: gauges(
                "archdb_jobs",
                "Training jobs waiting (queued) or running, in the whole database.",
                &["state"],
            ),
            import_running: gauge(
                "archdb_import_running",
                "1 while this process imports the starter set.",
            ),
            import_done: gauges(
                "archdb_import_phase_done",
                "Units (bytes or items) done in the current import phase.",
                &["phase", "unit"],
            ),
            import_size: gauges(
                "archdb_import_phase_size",
                "Units (bytes or items) of the current import phase.",
                &["phase", "unit"],
            ),
            registry,
        }
    }

    fn observe(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let method = match *method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::PATCH => "PATCH",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    fn pool(&self, name: &str, pool: &PgPool) {
        let (size, idle) = (pool.size() as i64, pool.num_idle() as i64);
        self.pool_connections
            .with_label_values(&[name, "in_use"])
            .set(size - idle);
        self.pool_connections
            .with_label_values(&[name, "idle"])
            .set(idle);
        self.pool_max
            .with_label_values(&[name])
            .set(i64::from(pool.options().get_max_connections()));
    }

    /// A [`Progress`] that also publishes the import's phase and progress here.
    pub fn import_progress(self: &Arc<Self>, inner: Arc<dyn Progress>) -> Arc<dyn Progress> {
        Arc::new(ImportProgress {
            metrics: self.clone(),
            inner,
            phase: std::sync::Mutex::new(None),
        })
    }
}

/// Counts every request by the route it matched (`unmatched` for the fallback, so unknown paths
/// cannot add label values).
pub async fn track(State(ctx): State<ApiContext>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    ctx.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Metrics in the Prometheus text format
///
/// Needs a token only when the server has a read token, like every read.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4",
        content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics(State(ctx): State<ApiContext>) -> Result<Response> {
    let m = &ctx.metrics;
    m.pool("request", &ctx.pool);
    m.pool("stream", &ctx.stream_pool);
    let (entries, bytes) = ctx.cache.size();
    m.cache_entries.set(entries as i64);
    m.cache_bytes.set(bytes as i64);
    let (version, jobs) = tokio::try_join!(
        super::cache::data_version(&ctx.pool),
        sqlx::query_as::<_, (String, i64)>(
            "select state, count(*) from jobs where state in ('queued', 'running') group by state",
        )
        .fetch_all(&ctx.pool),
    )?;
    m.data_version.set(version);
    for state in ["queued", "running"] {
        let n = jobs.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
        m.jobs.with_label_values(&[state]).set(n);
    }
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&m.registry.gather(), &mut text)
        .map_err(|e| Error::Internal(e.into()))?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

/// Forwards to the progress it wraps and keeps the import gauges current.
struct ImportProgress {
    metrics: Arc<Metrics>,
    inner: Arc<dyn Progress>,
    /// The current phase's label values.
    phase: std::sync::Mutex<Option<[String; 2]>>,
}

impl ImportProgress {
    fn labels(&self) -> Option<[String; 2]> {
        self.phase.lock().expect("phase lock").clone()
    }
}

impl Progress for ImportProgress {
    fn phase(&self, name: &str, total: u64, unit: Unit) {
        let unit_name = match unit {
            Unit::Bytes => "bytes",
            Unit::Items => "items",
        };
        let m = &self.metrics;
        m.import_running.set(1);
        // Only the current phase is shown.
        m.import_done.reset();
        m.import_size.reset();
        let labels = [name, unit_name];
        m.import_done.with_label_values(&labels).set(0);
        m.import_size
            .with_label_values(&labels)
            .set(i64::try_from(total).unwrap_or(i64::MAX));
        *self.phase.lock().expect("phase lock") = Some([name.to_string(), unit_name.to_string()]);
        self.inner.phase(name, total, unit);
    }

    fn advance(&self, n: u64) {
        if let Some([phase, unit]) = self.labels() {
            self.metrics
                .import_done
                .with_label_values(&[phase.as_str(), unit.as_str()])
                .add(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.inner.advance(n);
    }

    fn done(&self) {
        self.metrics.import_running.set(0);
        self.inner.done();
    }
}

impl Drop for ImportProgress {
    /// A failed or cancelled import never reports `done`.
    fn drop(&mut self) {
        self.metrics.import_running.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::NoProgress;

    fn text(m: &Metrics) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&m.registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn import_progress_shows_the_current_phase() {
        let metrics = Arc::new(Metrics::new());
        let progress = metrics.import_progress(Arc::new(NoProgress));
        progress.phase("results", 100, Unit::Items);
        progress.advance(30);
        progress.advance(10);
        let t = text(&metrics);
        assert!(t.contains("archdb_import_running 1"), "{t}");
        assert!(
            t.contains(r#"archdb_import_phase_done{phase="results",unit="items"} 40"#),
            "{t}"
        );
        assert!(
            t.contains(r#"archdb_import_phase_size{phase="results",unit="items"} 100"#),
            "{t}"
        );
        progress.phase("graphs", 2048, Unit::Bytes);
        let t = text(&metrics);
        assert!(!t.contains(r#"phase="results""#), "{t}");
        assert!(
            t.contains(r#"archdb_import_phase_size{phase="graphs",unit="bytes"} 2048"#),
            "{t}"
        );
        progress.done();
        assert!(text(&metrics).contains("archdb_import_running 0"));
        progress.phase("more", 1, Unit::Items);
        drop(progress);
        assert!(
            text(&metrics).contains("archdb_import_running 0"),
            "a dropped import is over"
        );
    }
}
