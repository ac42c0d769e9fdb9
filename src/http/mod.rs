//! The REST API: one module per resource, each with its own `router()`, one [`error::Error`]
//! type rendered as problem+json, and one shared [`ApiContext`]. The OpenAPI document is
//! generated from the handlers (utoipa) and served at `/openapi.json`, with Swagger UI (vendored,
//! works offline) at `/docs`.

pub mod architectures;
pub mod benchmarks;
pub mod calibration;
pub mod error;
mod health;
pub mod predictions;
pub mod predictors;
pub mod results;
pub mod stats;
pub mod svg;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use sqlx::PgPool;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::predict::registry::Registry;
use error::Error;

/// HTTP server settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "ARCHDB_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// When set, every write (POST/PUT/PATCH/DELETE) needs `Authorization: Bearer <token>`.
    #[arg(long, env = "ARCHDB_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Largest request body in bytes (ONNX uploads).
    #[arg(long, env = "ARCHDB_MAX_UPLOAD_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Most ONNX nodes accepted per model (after inlining local functions).
    #[arg(long, env = "ARCHDB_MAX_NODES", default_value_t = 200_000)]
    pub max_nodes: usize,
    /// Seconds before a request is answered 408.
    #[arg(long, env = "ARCHDB_REQUEST_TIMEOUT_SECS", default_value_t = 120)]
    pub request_timeout_secs: u64,
    /// Requests processed at once; more wait.
    #[arg(long, env = "ARCHDB_CONCURRENCY_LIMIT", default_value_t = 256)]
    pub concurrency_limit: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".parse().expect("valid address"),
            api_token: None,
            max_upload_bytes: 512 * 1024 * 1024,
            max_nodes: 200_000,
            request_timeout_secs: 120,
            concurrency_limit: 256,
        }
    }
}

/// State shared by all handlers.
#[derive(Clone)]
pub struct ApiContext {
    pub pool: PgPool,
    pub config: Arc<ServeConfig>,
    /// The active accuracy predictors (swapped when another is activated).
    pub predictors: Arc<Registry>,
    /// The LISTEN task that keeps `predictors` current; stopped on shutdown before the pool.
    pub watcher: tokio::task::AbortHandle,
}

impl ApiContext {
    /// A context over `pool` with the active predictors loaded, kept current by a LISTEN task.
    pub async fn new(pool: PgPool, config: ServeConfig) -> Self {
        let predictors = Arc::new(Registry::default());
        if let Err(e) = predictors.reload(&pool).await {
            tracing::error!("loading the active predictors failed: {e:#}");
        }
        let watcher = predictors.watch(pool.clone()).abort_handle();
        Self {
            pool,
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
        Errors are RFC 7807 `application/problem+json`. When the server has an API token, writes need `Authorization: Bearer <token>`.",
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
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(architectures::router())
        .merge(calibration::router())
        .merge(benchmarks::router())
        .merge(stats::router())
        .merge(results::router())
        .merge(predictions::router())
        .merge(predictors::router())
        .split_for_parts()
}

/// The OpenAPI 3.1 document (what `archdb openapi` prints and `openapi/archdb.json` holds).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The complete application: routes, docs, auth, limits, request ids and tracing.
pub fn app(ctx: ApiContext) -> Router {
    let (routes, spec) = api();
    let config = ctx.config.clone();
    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .fallback(|| async { Error::NotFound("no such route; see /docs for the API".into()) })
        .layer(middleware::from_fn_with_state(ctx.clone(), require_token))
        .layer(DefaultBodyLimit::max(config.max_upload_bytes))
        .layer(GlobalConcurrencyLimitLayer::new(config.concurrency_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(config.request_timeout_secs)))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(ctx)
}

/// Whether the request's `Content-Type` is `mime` (parameters such as `; charset` allowed).
fn has_content_type(request: &Request, mime: &str) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(mime))
}

/// Rejects writes without the configured bearer token.
async fn require_token(
    State(ctx): State<ApiContext>,
    req: Request,
    next: Next,
) -> Result<Response, Error> {
    let Some(token) = ctx.config.api_token.as_deref() else {
        return Ok(next.run(req).await);
    };
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(next.run(req).await);
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(next.run(req).await),
        _ => Err(Error::Unauthorized),
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves until `shutdown` completes (see [`shutdown_signal`]), then finishes in-flight requests.
pub async fn serve(
    ctx: ApiContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(ctx.config.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "archdb listening; API docs at /docs");
    axum::serve(listener, app(ctx))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
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
