//! Answers of the aggregate GETs (benchmarks, stats, results selections, LEMUR similarity,
//! calibration analyses) kept in memory by data version, with `ETag` / `If-None-Match`.
//!
//! The database keeps a data version that every committed change to the data raises in the
//! committing transaction (migrations/0009_data_version.sql). Each cacheable request reads the
//! version first, then serves a kept answer only if that answer was computed at this version or
//! later. Since the version is read after every earlier commit is visible, and an answer
//! computed after reading version `v` reflects at least the data of `v`, no answer older than
//! the last committed write is ever served, whichever process or tool made the write.
//!
//! Only complete 200 answers up to a size cap are kept; larger ones stream through untouched.
//! The key is the caller's token scope, the path and the query string (no cached route varies
//! by any other request header).
//!
//! Every other GET whose 200 answer is complete (a known length up to [`MAX_REVALIDATED`]) gets
//! an `ETag` too, the hash of its bytes, and a matching `If-None-Match` gets 304: the answer is
//! computed again but not sent, so a polling client re-reads nothing that has not changed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{StreamExt, stream};
use sqlx::PgPool;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::{HeaderBuilder, Object, RefOr, Required, ResponseBuilder, Type};

use super::ApiContext;
use super::auth::Caller;

/// Route templates whose GET answers are kept: they are computed from the database alone
/// (no in-process state such as the loaded predictors), deterministic, and costly.
pub const CACHED_ROUTES: [&str; 7] = [
    "/v1/benchmarks",
    "/v1/stats/summary",
    "/v1/stats/pareto",
    "/v1/results",
    "/v1/results/top-models",
    "/v1/lemur/similar",
    "/v1/calibration/analysis",
];

/// Largest uncached answer that gets an `ETag` (it is held whole to hash it).
pub const MAX_REVALIDATED: u64 = 8 << 20;

/// Says whether the answer came from the cache (`hit`) or was computed (`miss`).
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-archdb-cache");

/// The current data version.
pub async fn data_version(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("select version from data_version")
        .fetch_one(pool)
        .await
}

/// A kept 200 answer.
struct Entry {
    /// The data version read before it was computed (it reflects at least that data).
    version: i64,
    headers: HeaderMap,
    body: Bytes,
    etag: HeaderValue,
}

impl Entry {
    fn cost(&self, key: &str) -> usize {
        key.len() + self.body.len() + 256
    }
}

#[derive(Default)]
struct Kept {
    /// The newest data version seen; entries of older versions are dropped when it rises.
    version: i64,
    entries: HashMap<String, Arc<Entry>>,
    /// Keys in insertion order, for eviction.
    order: VecDeque<String>,
    bytes: usize,
}

/// The answers kept by this process, at most `max_bytes` in all and `max_entry` each.
pub struct ResponseCache {
    kept: Mutex<Kept>,
    max_bytes: usize,
    max_entry: usize,
    /// Keys being computed now: a second request for one waits for the first and takes its
    /// answer, instead of computing it again (many agents polling one aggregate after a write).
    computing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ResponseCache {
    /// A cache of `max_bytes` (0: none); one answer may take an eighth of it, at most 8 MiB.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            kept: Mutex::default(),
            max_bytes,
            max_entry: (max_bytes / 8).min(8 << 20),
            computing: Mutex::default(),
        }
    }

    /// Waits until no other request computes `key`; it is this one's until the turn drops.
    async fn turn(self: &Arc<Self>, key: &str) -> Turn {
        let lock = self
            .computing
            .lock()
            .expect("cache lock")
            .entry(key.to_string())
            .or_default()
            .clone();
        Turn {
            guard: Some(lock.lock_owned().await),
            cache: self.clone(),
            key: key.to_string(),
        }
    }

    /// Entries and their bytes.
    pub fn size(&self) -> (usize, usize) {
        let kept = self.kept.lock().expect("cache lock");
        (kept.entries.len(), kept.bytes)
    }

    /// The answer for `key` if it reflects at least the data of `version`.
    fn get(&self, key: &str, version: i64) -> Option<Arc<Entry>> {
        let mut kept = self.kept.lock().expect("cache lock");
        kept.advance(version);
        kept.entries
            .get(key)
            .filter(|e| e.version >= version)
            .cloned()
    }

    fn insert(&self, key: String, entry: Entry) {
        let cost = entry.cost(&key);
        if cost > self.max_entry {
            return;
        }
        let mut kept = self.kept.lock().expect("cache lock");
        kept.advance(entry.version);
        if entry.version < kept.version {
            // Computed before a newer commit: no later reader may take it.
            return;
        }
        match kept.entries.insert(key.clone(), Arc::new(entry)) {
            Some(old) => kept.bytes -= old.cost(&key),
            None => kept.order.push_back(key),
        }
        kept.bytes += cost;
        while kept.bytes > self.max_bytes {
            let Some(oldest) = kept.order.pop_front() else {
                break;
            };
            if let Some(old) = kept.entries.remove(&oldest) {
                kept.bytes -= old.cost(&oldest);
            }
        }
    }
}

/// The right to compute one key's answer (see [`ResponseCache::turn`]).
struct Turn {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    cache: Arc<ResponseCache>,
    key: String,
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut computing = self.cache.computing.lock().expect("cache lock");
        // Nobody waits for it any more (only the map holds it): forget the key.
        if computing
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            computing.remove(&self.key);
        }
    }
}

impl Kept {
    /// Forgets every answer once a newer data version is seen.
    fn advance(&mut self, version: i64) {
        if version > self.version {
            self.entries.clear();
            self.order.clear();
            self.bytes = 0;
            self.version = version;
        }
    }
}

/// Serves cacheable GETs from the cache, keeps their new answers, and answers `If-None-Match`
/// with 304. Placed after the auth layer (the caller is part of the key) and before the heavy
/// gate (a hit costs no heavy permit).
pub async fn serve_cached(State(ctx): State<ApiContext>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    let route = match route {
        Some(r) if req.method() == Method::GET => match CACHED_ROUTES.iter().find(|c| **c == r) {
            Some(route) if ctx.cache.max_bytes > 0 => *route,
            _ => return revalidate(req, next).await,
        },
        _ => return next.run(req).await,
    };
    let version = match data_version(&ctx.pool).await {
        Ok(v) => v,
        // The handler reports the database's trouble itself.
        Err(_) => return next.run(req).await,
    };
    let caller = req
        .extensions()
        .get::<Caller>()
        .copied()
        .unwrap_or(Caller::Anonymous);
    let key = format!(
        "{caller:?} {}?{}",
        req.uri().path(),
        req.uri().query().unwrap_or("")
    );
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    let hit = |entry: &Entry| {
        ctx.metrics.cache_hits.with_label_values(&[route]).inc();
        answer(entry, if_none_match.as_ref(), "hit")
    };
    if let Some(entry) = ctx.cache.get(&key, version) {
        return hit(&entry);
    }
    // Held until the answer is kept (or known not to be keepable).
    let _turn = ctx.cache.turn(&key).await;
    if let Some(entry) = ctx.cache.get(&key, version) {
        return hit(&entry);
    }
    ctx.metrics.cache_misses.with_label_values(&[route]).inc();
    let response = next.run(req).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match collect(body, ctx.cache.max_entry).await {
        Collected::Whole(body) => body,
        Collected::Partial(body) => return Response::from_parts(parts, body),
    };
    let mut headers = parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    let etag = etag_of(&body);
    let entry = Entry {
        version,
        headers,
        body,
        etag,
    };
    let response = answer(&entry, if_none_match.as_ref(), "miss");
    ctx.cache.insert(key, entry);
    response
}

/// A strong validator of `body`: its 128-bit xxh3 hash.
fn etag_of(body: &[u8]) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(body)))
        .expect("hex is a valid header value")
}

/// An uncached GET: its complete 200 answer gets an `ETag`, or is 304 when the client holds
/// it. Streamed answers (no known length) and large ones pass through untouched.
async fn revalidate(req: Request, next: Next) -> Response {
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    let response = next.run(req).await;
    let complete = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_REVALIDATED);
    if response.status() != StatusCode::OK
        || !complete
        || response.headers().contains_key(header::ETAG)
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match collect(body, MAX_REVALIDATED as usize).await {
        Collected::Whole(body) => body,
        Collected::Partial(body) => return Response::from_parts(parts, body),
    };
    let etag = etag_of(&body);
    let mut response = if if_none_match.is_some_and(|tags| matches(&tags, &etag)) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::from_parts(parts, Body::from(body))
    };
    response.headers_mut().insert(header::ETAG, etag);
    response
}

/// The kept answer, or 304 when the client holds it already.
fn answer(entry: &Entry, if_none_match: Option<&HeaderValue>, how: &'static str) -> Response {
    let mut response = if if_none_match.is_some_and(|tags| matches(tags, &entry.etag)) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(entry.body.clone()));
        *r.headers_mut() = entry.headers.clone();
        r
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, entry.etag.clone());
    headers.insert(CACHE_HEADER, HeaderValue::from_static(how));
    response
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 asks for it).
fn matches(tags: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(tags) = tags.to_str() else {
        return false;
    };
    let etag = etag.to_str().unwrap_or_default();
    tags.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Declares the `If-None-Match` header, the `ETag` of 200 answers and the 304 answer on a GET
/// operation (for `spec::complete`).
pub fn declare(operation: &mut Operation) {
    let etag = HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::String)))
        .description(Some(
            "identifies this answer; send it back in `If-None-Match` to get 304 while it is current",
        ))
        .build();
    for (status, response) in operation.responses.responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status == "200", response) {
            response
                .headers
                .insert("ETag".into(), RefOr::T(etag.clone()));
        }
    }
    operation.responses.responses.insert(
        StatusCode::NOT_MODIFIED.as_str().into(),
        RefOr::T(
            ResponseBuilder::new()
                .description("the answer whose `ETag` was sent in `If-None-Match` is current")
                .header("ETag", etag)
                .build(),
        ),
    );
    let parameter = ParameterBuilder::new()
        .name("If-None-Match")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some("`ETag`s of answers the client holds"))
        .schema(Some(Object::with_type(Type::String)))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(parameter));
}

enum Collected {
    /// The whole body, within the cap.
    Whole(Bytes),
    /// Over the cap or failed part-way: what was read, then the rest, as the client gets it.
    Partial(Body),
}

/// Reads `body` whole if it is at most `cap` bytes.
async fn collect(body: Body, cap: usize) -> Collected {
    let mut chunks = body.into_data_stream();
    let mut read: Vec<Bytes> = Vec::new();
    let mut len = 0;
    loop {
        match chunks.next().await {
            None => break,
            Some(Ok(chunk)) => {
                len += chunk.len();
                read.push(chunk);
                if len > cap {
                    break;
                }
            }
            Some(Err(e)) => {
                let failed = stream::iter(read.into_iter().map(Ok).chain([Err(e)]));
                return Collected::Partial(Body::from_stream(failed.chain(chunks)));
            }
        }
    }
    if len > cap {
        let read = stream::iter(read.into_iter().map(Ok::<_, axum::Error>));
        return Collected::Partial(Body::from_stream(read.chain(chunks)));
    }
    let mut whole = Vec::with_capacity(len);
    for chunk in read {
        whole.extend_from_slice(&chunk);
    }
    Collected::Whole(Bytes::from(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: i64, body: &'static str) -> Entry {
        Entry {
            version,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            etag: HeaderValue::from_static("\"e\""),
        }
    }

    #[test]
    fn answers_only_at_or_after_the_readers_version() {
        let cache = ResponseCache::new(1 << 20);
        cache.insert("k".into(), entry(3, "a"));
        assert!(cache.get("k", 3).is_some());
        assert!(cache.get("k", 2).is_some(), "newer than asked for is fine");
        assert!(cache.get("other", 3).is_none());
        assert!(cache.get("k", 4).is_none(), "a newer version drops it");
        assert_eq!(cache.size(), (0, 0));
        // Computed before the version the cache has seen: not kept.
        cache.insert("k".into(), entry(3, "a"));
        assert!(cache.get("k", 3).is_none());
    }

    #[test]
    fn stays_within_its_size() {
        let cache = ResponseCache::new(8 * 1024);
        let body: &'static str = Box::leak("x".repeat(600).into_boxed_str());
        for i in 0..20 {
            cache.insert(format!("k{i}"), entry(1, body));
        }
        let (entries, bytes) = cache.size();
        assert!(bytes <= 8 * 1024 && entries == 9, "{entries} {bytes}");
        // The oldest went first.
        assert!(cache.get("k0", 1).is_none() && cache.get("k19", 1).is_some());
        // Over an eighth of the cache: never kept.
        cache.insert(
            "big".into(),
            entry(1, Box::leak("y".repeat(1100).into_boxed_str())),
        );
        assert!(cache.get("big", 1).is_none());
    }

    #[tokio::test]
    async fn one_request_computes_a_key_at_a_time() {
        let cache = Arc::new(ResponseCache::new(1 << 20));
        let first = cache.turn("k").await;
        let other = cache.turn("other").await;
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move {
                let _turn = cache.turn("k").await;
                cache.get("k", 1).is_some()
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the second request waits for the first"
        );
        cache.insert("k".into(), entry(1, "a"));
        drop(first);
        assert!(waiting.await.unwrap(), "and takes its answer");
        drop(other);
        assert!(cache.computing.lock().unwrap().is_empty());
    }

    #[test]
    fn if_none_match_lists() {
        let etag = HeaderValue::from_static("\"abc\"");
        let m = |v: &'static str| matches(&HeaderValue::from_static(v), &etag);
        assert!(m("\"abc\""));
        assert!(m("W/\"abc\""));
        assert!(m("\"x\", \"abc\""));
        assert!(m("*"));
        assert!(!m("\"abcd\""));
        assert!(!m("abc"));
    }
}
