//! The REST API: one module per resource, each with its own `router()`, one [`error::Error`]
//! type rendered as problem+json, and one shared [`ApiContext`]. The OpenAPI document is
//! generated from the handlers (utoipa) and served at `/openapi.json`, with Swagger UI (vendored,
//! works offline) at `/docs`.

pub mod architectures;
pub mod auth;
pub mod benchmarks;
pub mod cache;
pub mod calibration;
pub mod error;
pub mod extract;
mod health;
pub mod ingest;
pub mod metrics;
pub mod predictions;
pub mod predictors;
pub mod registry;
pub mod results;
pub mod server;
mod spec;
pub mod stats;
pub mod svg;
pub mod text;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use sqlx::PgPool;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_swagger_ui::SwaggerUi;

use error::Error;
use registry::Registry;

/// HTTP server settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "ARCHDB_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The admin token: when set, every write (POST/PUT/PATCH/DELETE) needs
    /// `Authorization: Bearer <token>`.
    #[arg(long, env = "ARCHDB_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// When set, reads and compute-only POSTs (predictions, calibration metrics) need this
    /// token or the admin token. Needs `--api-token`.
    #[arg(long, env = "ARCHDB_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
    /// Listen on a non-loopback address without a token (every write open to the network).
    #[arg(long)]
    pub insecure_no_token: bool,
    /// Largest request body in bytes (ONNX uploads); some endpoints allow less (`body_limit`).
    #[arg(long, env = "ARCHDB_MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Most ONNX nodes accepted per model (after inlining local functions).
    #[arg(long, env = "ARCHDB_MAX_NODES", default_value_t = 200_000)]
    pub max_nodes: usize,
    /// Most files in one batch upload (`POST /v1/architectures/batch`).
    #[arg(long, env = "ARCHDB_MAX_BATCH_FILES", default_value_t = 1000)]
    pub max_batch_files: usize,
    /// Seconds before a request is answered 408.
    #[arg(long, env = "ARCHDB_REQUEST_TIMEOUT_SECS", default_value_t = 120)]
    pub request_timeout_secs: u64,
    /// Requests processed at once; more wait.
    #[arg(long, env = "ARCHDB_CONCURRENCY_LIMIT", default_value_t = 256)]
    pub concurrency_limit: usize,
    /// Open connections at most; more wait in the listen backlog.
    #[arg(long, env = "ARCHDB_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's headers before it is closed.
    #[arg(long, env = "ARCHDB_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a request body may take to arrive whole (408 after).
    #[arg(long, env = "ARCHDB_BODY_TIMEOUT_SECS", default_value_t = 60)]
    pub body_timeout_secs: u64,
    /// Heavy requests (uploads, predictions, analyses, similarity) run at once; 0: one per core.
    #[arg(long, env = "ARCHDB_HEAVY_LIMIT", default_value_t = 0)]
    pub heavy_limit: usize,
    /// Seconds a request's database statement may run (`statement_timeout`; 503 after).
    #[arg(long, env = "ARCHDB_STATEMENT_TIMEOUT_SECS", default_value_t = 10)]
    pub statement_timeout_secs: u64,
    /// Database connections for streamed answers (`/v1/results` and the other row dumps),
    /// apart from the request pool so that slow readers cannot take it.
    #[arg(long, env = "ARCHDB_STREAM_POOL", default_value_t = 4)]
    pub stream_pool_size: u32,
    /// Seconds a streamed answer may wait for the client to take the next chunk before it is
    /// cut off and its query cancelled.
    #[arg(long, env = "ARCHDB_STREAM_STALL_SECS", default_value_t = 10)]
    pub stream_stall_secs: u64,
    /// Seconds a streamed answer's query may run in all.
    #[arg(long, env = "ARCHDB_STREAM_TIMEOUT_SECS", default_value_t = 300)]
    pub stream_timeout_secs: u64,
    /// Rows a dump (`/v1/results`, `/v1/lemur/runs`) returns when `max_rows` is absent; asking
    /// for more (or `max_rows=0`, all) needs a token when the server has one.
    #[arg(long, env = "ARCHDB_DUMP_ROWS", default_value_t = 100_000)]
    pub dump_rows: i64,
    /// Bytes of aggregate answers kept in memory, by data version (0: none; src/http/cache.rs).
    #[arg(long, env = "ARCHDB_CACHE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub cache_bytes: usize,
    /// Threads of the CPU pool that predictions and analyses run on; 0: the process's pool,
    /// one thread per core, shared with imports.
    #[arg(long, env = "ARCHDB_CPU_THREADS", default_value_t = 0)]
    pub cpu_threads: usize,
    /// Heavy requests (see `--heavy-limit`) per second that one caller (token, or client
    /// address without one) may make on average; 0: no limit. 429 beyond it.
    #[arg(long, env = "ARCHDB_RATE_PER_SEC", default_value_t = 50.0)]
    pub rate_per_sec: f64,
    /// Heavy requests one caller may make at once above that rate.
    #[arg(long, env = "ARCHDB_RATE_BURST", default_value_t = 500)]
    pub rate_burst: u32,
    /// Training and fine-tuning jobs one caller may have queued or running; 0: no cap.
    #[arg(long, env = "ARCHDB_MAX_QUEUED_JOBS", default_value_t = 8)]
    pub max_queued_jobs: i64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".parse().expect("valid address"),
            api_token: None,
            read_token: None,
            insecure_no_token: false,
            max_upload_bytes: 64 * 1024 * 1024,
            max_nodes: 200_000,
            max_batch_files: 1000,
            request_timeout_secs: 120,
            concurrency_limit: 256,
            max_connections: 1024,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            heavy_limit: 0,
            statement_timeout_secs: 10,
            stream_pool_size: 4,
            stream_stall_secs: 10,
            stream_timeout_secs: 300,
            dump_rows: 100_000,
            cache_bytes: 64 * 1024 * 1024,
            cpu_threads: 0,
            rate_per_sec: 50.0,
            rate_burst: 500,
            max_queued_jobs: 8,
        }
    }
}

impl ServeConfig {
    /// Refuses settings that would expose the service: a read token without an admin token,
    /// or a non-loopback address without any token (unless `--insecure-no-token`).
    pub fn check(&self) -> anyhow::Result<()> {
        let (admin, read) = self.tokens();
        if read.is_some() && admin.is_none() {
            anyhow::bail!(
                "ARCHDB_READ_TOKEN is set but ARCHDB_API_TOKEN is not: set an admin token too, \
                 or writes would be open"
            );
        }
        if !self.addr.ip().is_loopback() && admin.is_none() && !self.insecure_no_token {
            anyhow::bail!(
                "refusing to listen on {} without a token: set ARCHDB_API_TOKEN (or pass \
                 --insecure-no-token to open every write to the network)",
                self.addr
            );
        }
        Ok(())
    }

    /// The admin and read tokens; an empty value (as compose passes an unset one) is none.
    pub fn tokens(&self) -> (Option<&str>, Option<&str>) {
        fn given(t: &Option<String>) -> Option<&str> {
            t.as_deref().filter(|t| !t.is_empty())
        }
        (given(&self.api_token), given(&self.read_token))
    }
}

/// State shared by all handlers.
#[derive(Clone)]
pub struct ApiContext {
    /// Request queries, each bounded by `statement_timeout`.
    pub pool: PgPool,
    /// Streamed answers only (see `results::stream_rows`).
    pub stream_pool: PgPool,
    pub config: Arc<ServeConfig>,
    /// The active accuracy predictors (swapped when another is activated).
    pub predictors: Arc<Registry>,
    pub tokens: auth::Tokens,
    pub heavy: Arc<server::HeavyGate>,
    /// Per-caller rate limit on heavy requests.
    pub rate: Arc<server::RateLimit>,
    /// Where predictions and analyses run (see [`crate::cpu`]).
    pub cpu: crate::cpu::CpuPool,
    /// The LISTEN task that keeps `predictors` current; stopped on shutdown before the pool.
    pub watcher: tokio::task::AbortHandle,
    pub cache: Arc<cache::ResponseCache>,
    pub metrics: Arc<metrics::Metrics>,
}

impl ApiContext {
    /// A context on the database of `pool` with the active predictors loaded, kept current by a
    /// LISTEN task. Requests get their own pools (as large as `pool`, and the small streaming
    /// one) with the configured time limits; `pool` itself keeps serving the background tasks.
    pub async fn new(pool: PgPool, config: ServeConfig) -> Self {
        let predictors = Arc::new(Registry::default());
        if let Err(e) = predictors.reload(&pool).await {
            tracing::error!("loading the active predictors failed: {e:#}");
        }
        let watcher = predictors.watch(pool.clone()).abort_handle();
        // The bundled recipe predictor is parsed once; start now rather than on the first request.
        tokio::task::spawn_blocking(crate::predict::recipe::bundled);
        let heavy_limit = match config.heavy_limit {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Self {
            pool: crate::db::request_pool(
                &pool,
                pool.options().get_max_connections(),
                Duration::from_secs(config.statement_timeout_secs),
                Duration::from_secs(30),
            ),
            stream_pool: crate::db::request_pool(
                &pool,
                config.stream_pool_size,
                Duration::from_secs(config.stream_timeout_secs),
                Duration::from_secs(2),
            ),
            tokens: {
                let (admin, read) = config.tokens();
                auth::Tokens::new(admin, read)
            },
            heavy: Arc::new(server::HeavyGate::new(heavy_limit)),
            cache: Arc::new(cache::ResponseCache::new(config.cache_bytes)),
            metrics: Arc::default(),
            rate: Arc::new(server::RateLimit::new(
                config.rate_per_sec,
                config.rate_burst,
            )),
            cpu: match config.cpu_threads {
                0 => crate::cpu::CpuPool::app().clone(),
                n => crate::cpu::CpuPool::new(n),
            },
            config: Arc::new(config),
            predictors,
            watcher,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "archdb", description = "Store, query and predict the performance of neural architectures. \
        ONNX models become GENNAPE-style computation graphs stored in PostgreSQL, deduplicated by a canonical graph hash. \
        Errors are RFC 7807 `application/problem+json`. When the server has an admin token, writes need `Authorization: Bearer <token>`; \
        when it also has a read token, reads and the compute-only POSTs (predictions, calibration metrics) need either token. \
        POSTs need a JSON or upload body type, or an `X-Requested-With` header.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")),
    tags(
        (name = "architectures", description = "ONNX upload, computation graphs, listing"),
        (name = "calibration", description = "Calibration metrics: compute, store, list, analyse"),
        (name = "benchmarks", description = "Benchmark holdings and NAS-Bench-201 cells"),
        (name = "stats", description = "Result distributions and Pareto fronts"),
        (name = "predictions", description = "Accuracy prediction, predictors, training jobs"),
        (name = "health", description = "Probes")),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the bearer-token scheme used for writes.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API routes and the OpenAPI document generated from them.
fn api() -> (Router<ApiContext>, utoipa::openapi::OpenApi) {
    let (routes, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(architectures::router())
        .merge(ingest::router())
        .merge(calibration::router())
        .merge(benchmarks::router())
        .merge(stats::router())
        .merge(results::router())
        .merge(predictions::router())
        .merge(predictors::router())
        .merge(text::router())
        .merge(metrics::router())
        .split_for_parts();
    spec::complete(&mut spec);
    (routes, spec)
}

/// The OpenAPI 3.1 document (what `archdb openapi` prints and `openapi/archdb.json` holds).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The complete application: routes, docs, auth, limits, request ids and tracing.
pub fn app(ctx: ApiContext) -> Router {
    let (routes, spec) = api();
    let config = ctx.config.clone();
    let declared = Arc::new(spec::Declared::new(&spec));
    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .fallback(|| async { Error::NotFound("no such route; see /docs for the API".into()) })
        .layer(middleware::from_fn_with_state(ctx.clone(), server::heavy_gate))
        .layer(middleware::from_fn_with_state(ctx.clone(), cache::serve_cached))
        .layer(middleware::from_fn(auth::reject_cross_site))
        .layer(middleware::from_fn_with_state(ctx.clone(), auth::authorize))
        .layer(middleware::from_fn_with_state(declared, spec::reject_undeclared_method))
        // After the auth layers: each MCP tool call is replayed through the routes above, which
        // apply the token rule per call (reads open, writes need the token).
        .route_service("/mcp", crate::mcp::http_service(ctx.clone()))
        .layer(DefaultBodyLimit::max(config.max_upload_bytes))
        .layer(middleware::from_fn_with_state(ctx.clone(), server::body_deadline))
        .layer(axum::Extension(MaxBody(config.max_upload_bytes)))
        .layer(GlobalConcurrencyLimitLayer::new(config.concurrency_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(config.request_timeout_secs)))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn_with_state(ctx.clone(), metrics::track))
        .with_state(ctx)
}

/// The server-wide body limit (`--max-upload-bytes`), in every request's extensions so that
/// [`body_limit`] can only lower it.
#[derive(Debug, Clone, Copy)]
struct MaxBody(usize);

/// Caps the request body of one route's handlers at `max` bytes (or the server-wide limit when
/// that is lower): a 413 problem before a larger body is buffered. Wraps a `routes!(…)`.
pub fn body_limit<S>(max: usize, route: UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let (schemas, paths, router) = route;
    let router = router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let limit = body_limit_of(&req, max);
        tower::ServiceExt::oneshot(
            tower::Layer::layer(&DefaultBodyLimit::max(limit), next),
            req,
        )
    }));
    (schemas, paths, router)
}

/// The body limit of a route wrapped in [`body_limit`]`(max, …)`, for handlers that read the
/// body as a stream (the extractors apply it themselves).
fn body_limit_of(request: &Request, max: usize) -> usize {
    request
        .extensions()
        .get::<MaxBody>()
        .map_or(max, |m| m.0.min(max))
}

/// The request's `Content-Length`, when it has a valid one.
fn content_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Whether the request's `Content-Type` is `mime` (parameters such as `; charset` allowed).
fn has_content_type(request: &Request, mime: &str) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(mime))
}

/// Serves until `shutdown` completes (see [`shutdown_signal`]), then finishes in-flight requests.
pub async fn serve(
    ctx: ApiContext,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(ctx.config.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "archdb listening; API docs at /docs");
    serve_on(listener, ctx, shutdown).await?;
    Ok(())
}

/// Serves the application on `listener` until `shutdown` completes, with the connection cap
/// and header deadline of the configuration.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    ctx: ApiContext,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let (max_connections, header_timeout) = (
        ctx.config.max_connections,
        Duration::from_secs(ctx.config.header_timeout_secs),
    );
    server::serve(
        listener,
        app(ctx),
        max_connections,
        header_timeout,
        shutdown,
    )
    .await
}

/// SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
