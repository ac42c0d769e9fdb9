//! Connection hygiene: the accept loop (a cap on open connections, a deadline for request
//! headers), a deadline for request bodies separate from the handler timeout, a bounded
//! number of heavy requests at once, and a per-caller rate limit on them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, Method};
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
use super::auth::Caller;
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
        let service = TowerToHyperService::new(app.clone().map_request(
            move |req: axum::http::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(remote));
                req
            },
        ));
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
pub(super) fn is_heavy(method: &Method, path: &str) -> bool {
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

/// Keeps heavy requests within their caller's [`RateLimit`] (429 beyond it) and the
/// [`HeavyGate`].
pub async fn heavy_gate(
    State(ctx): State<ApiContext>,
    req: Request,
    next: Next,
) -> Result<Response, Error> {
    if !is_heavy(req.method(), req.uri().path()) {
        return Ok(next.run(req).await);
    }
    let client = Client::of(req.extensions());
    if let Err(wait) = ctx.rate.take(&client, Instant::now()) {
        return Err(Error::TooMany {
            detail: format!(
                "rate limit: {client} may make {} heavy requests (uploads, predictions, \
                 analyses) per second, {} at once; retry in {:.1} s",
                ctx.rate.per_sec,
                ctx.rate.burst,
                wait.as_secs_f64()
            ),
            retry_after: Some(wait),
        });
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

/// Whom a request counts against for the rate limit and the job cap: the holder of the token
/// it presented, or its client address without one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    Admin,
    Reader,
    Address(IpAddr),
    /// No token and no address (a request replayed in-process, e.g. by MCP).
    Unknown,
}

impl Client {
    /// From the [`Caller`] that `auth::authorize` recorded and the connection's address.
    fn of(extensions: &Extensions) -> Self {
        match extensions.get::<Caller>() {
            Some(Caller::Admin) => Client::Admin,
            Some(Caller::Reader) => Client::Reader,
            _ => extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(Client::Unknown, |c| {
                    Client::Address(c.0.ip().to_canonical())
                }),
        }
    }
}

impl std::fmt::Display for Client {
    /// Also the `owner` stored with the jobs a client queues.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Admin => f.write_str("token:admin"),
            Client::Reader => f.write_str("token:read"),
            Client::Address(ip) => write!(f, "address:{ip}"),
            Client::Unknown => f.write_str("unknown"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Client::of(&parts.extensions))
    }
}

/// Clients remembered at most; past it, those with a full bucket (idle long enough to carry no
/// state) are forgotten, and if that is not enough, all are.
const MAX_CLIENTS: usize = 100_000;

/// A token bucket per [`Client`]: `burst` requests at once, refilled at `per_sec`.
pub struct RateLimit {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<Client, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// `per_sec` ≤ 0 (or not a number): no limit.
    pub fn new(per_sec: f64, burst: u32) -> Self {
        Self {
            per_sec: if per_sec > 0.0 { per_sec } else { 0.0 },
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket, or says how long until there is one.
    fn take(&self, client: &Client, now: Instant) -> Result<(), Duration> {
        if self.per_sec == 0.0 {
            return Ok(());
        }
        let level = |b: &Bucket| {
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_sec)
                .min(self.burst)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(client) {
            buckets.retain(|_, b| level(b) < self.burst);
            if buckets.len() >= MAX_CLIENTS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(client.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        *bucket = Bucket {
            tokens: level(bucket),
            at: now,
        };
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_sec,
            ))
        }
    }
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

    #[test]
    fn token_buckets_per_client() {
        let limit = RateLimit::new(2.0, 3);
        let (a, b) = (
            Client::Address("10.0.0.1".parse().unwrap()),
            Client::Address("10.0.0.2".parse().unwrap()),
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limit.take(&a, t0).is_ok());
        }
        let wait = limit.take(&a, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        // Another client has its own bucket.
        assert!(limit.take(&b, t0).is_ok());
        // Half a second refills one request, and no more than the burst ever accumulates.
        assert!(limit.take(&a, t0 + Duration::from_millis(500)).is_ok());
        assert!(limit.take(&a, t0 + Duration::from_millis(500)).is_err());
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(limit.take(&a, later).is_ok());
        }
        assert!(limit.take(&a, later).is_err());
        // Rate 0: no limit.
        let open = RateLimit::new(0.0, 1);
        for _ in 0..100 {
            assert!(open.take(&a, t0).is_ok());
        }
    }

    #[test]
    fn clients_are_named_by_token_or_address() {
        let mut extensions = Extensions::new();
        assert_eq!(Client::of(&extensions), Client::Unknown);
        extensions.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))));
        extensions.insert(Caller::Anonymous);
        assert_eq!(Client::of(&extensions).to_string(), "address:127.0.0.1");
        extensions.insert(Caller::Reader);
        assert_eq!(Client::of(&extensions), Client::Reader);
        extensions.insert(Caller::Admin);
        assert_eq!(Client::of(&extensions).to_string(), "token:admin");
    }
}
