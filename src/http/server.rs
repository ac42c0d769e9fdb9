//! Connection hygiene: the accept loop (a cap on open connections, a deadline for request
//! headers), a deadline for request bodies separate from the handler timeout, and a bounded
//! number of heavy requests at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{StreamExt, stream};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::ApiContext;
use super::error::Error;

/// How long connections may take to finish their requests after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` completes. At most `max_connections` are open at
/// once (the next one waits in the listen backlog), and a connection that does not deliver a
/// request's headers within `header_timeout` is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|req: axum::http::Request<Incoming>| req.map(Body::new)),
        );
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

/// The error a request body yields once its deadline has passed.
#[derive(Debug)]
pub struct BodyTimedOut(Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

/// Gives every request body one deadline for arriving whole, so a slow sender cannot hold a
/// handler (and its concurrency permit) for the whole request timeout.
pub async fn body_deadline(State(ctx): State<ApiContext>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let limit = Duration::from_secs(ctx.config.body_timeout_secs);
    let deadline = tokio::time::Instant::now() + limit;
    let req = req.map(|body| {
        let chunks = body.into_data_stream();
        Body::from_stream(stream::unfold(Some(chunks), move |chunks| async move {
            let mut chunks = chunks?;
            match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(axum::BoxError::from), Some(chunks))),
                Ok(None) => None,
                Err(_) => Some((Err(BodyTimedOut(limit).into()), None)),
            }
        }))
    });
    next.run(req).await
}

/// Whether an extractor's rejection was caused by [`BodyTimedOut`].
pub fn body_timed_out(rejection: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(rejection);
    while let Some(e) = cause {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Requests that cost CPU or large queries: model uploads (one or a batch), predictions,
/// calibration metrics, similarity searches, pairs and the aggregates.
fn is_heavy(method: &Method, path: &str) -> bool {
    match *method {
        Method::POST => matches!(
            path,
            "/v1/architectures"
                | "/v1/architectures/batch"
                | "/v1/predictions"
                | "/v1/calibration/compute"
        ),
        Method::GET => {
            path.ends_with("/similar")
                || path.starts_with("/v1/stats/")
                || matches!(
                    path,
                    "/v1/results/pairs" | "/v1/calibration/analysis" | "/v1/benchmarks"
                )
        }
        _ => false,
    }
}

/// At most a fixed number of heavy requests run at once; a bounded number more wait, and any
/// beyond that are answered 503 with `Retry-After` at once.
pub struct HeavyGate {
    running: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl HeavyGate {
    pub fn new(permits: usize) -> Self {
        let permits = permits.max(1);
        Self {
            running: Semaphore::new(permits),
            waiting: AtomicUsize::new(0),
            max_waiting: 16 * permits,
        }
    }
}

/// A place in the [`HeavyGate`]'s queue, left when dropped (also when the request is).
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// Requests that were waiting already.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        Self { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Keeps heavy requests within the [`HeavyGate`].
pub async fn heavy_gate(
    State(ctx): State<ApiContext>,
    req: Request,
    next: Next,
) -> Result<Response, Error> {
    if !is_heavy(req.method(), req.uri().path()) {
        return Ok(next.run(req).await);
    }
    let gate = &ctx.heavy;
    let _permit = match gate.running.try_acquire() {
        Ok(permit) => permit,
        Err(_) => {
            let waiting = Waiting::enter(&gate.waiting);
            if waiting.ahead >= gate.max_waiting {
                return Err(Error::Busy(
                    "too many heavy requests (uploads, predictions, analyses) at once; retry \
                     shortly"
                        .into(),
                ));
            }
            gate.running.acquire().await.expect("never closed")
        }
    };
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_routes() {
        assert!(is_heavy(&Method::POST, "/v1/predictions"));
        assert!(is_heavy(&Method::POST, "/v1/architectures/batch"));
        assert!(is_heavy(&Method::GET, "/v1/architectures/3/similar"));
        assert!(is_heavy(&Method::GET, "/v1/stats/pareto"));
        assert!(!is_heavy(&Method::GET, "/v1/architectures/3"));
        assert!(!is_heavy(&Method::POST, "/v1/jobs/1/cancel"));
    }
}
