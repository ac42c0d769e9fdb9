//! Who may call what: bearer tokens with two scopes, and the cross-site-request guard on writes.
//!
//! `ARCHDB_API_TOKEN` is the admin token (every scope); the optional `ARCHDB_READ_TOKEN` allows
//! reads and the compute-only POSTs, which write nothing. The scope an operation needs is
//! decided here from its method and path, so resource modules need not repeat it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiContext;
use super::error::Error;

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Probes and the API documents: open to everyone.
    Public,
    /// Reads and compute-only POSTs (predictions, calibration metrics).
    Read,
    /// Everything that changes state.
    Write,
}

/// Who is calling, as established by [`authorize`]; handlers read it from the request
/// extensions (e.g. to allow a full dump only to a known caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Caller {
    /// No token, on a server that has none configured for this scope, or a public route.
    Anonymous,
    /// Presented the read token.
    Reader,
    /// Presented the admin token.
    Admin,
}

/// POSTs that compute an answer and store nothing; they need only the read scope.
const COMPUTE_ONLY: [&str; 2] = ["/v1/predictions", "/v1/calibration/compute"];

/// The scope an operation needs.
pub fn required_scope(method: &Method, path: &str) -> Scope {
    let public = matches!(path, "/healthz" | "/readyz" | "/openapi.json")
        || path == "/docs"
        || path.starts_with("/docs/");
    match *method {
        _ if public => Scope::Public,
        Method::GET | Method::HEAD | Method::OPTIONS => Scope::Read,
        Method::POST if COMPUTE_ONLY.contains(&path) => Scope::Read,
        _ => Scope::Write,
    }
}

/// The configured tokens, kept as SHA-256 digests so that comparing them takes the same time
/// whatever the presented token's length.
#[derive(Clone, Default)]
pub struct Tokens {
    admin: Option<[u8; 32]>,
    read: Option<[u8; 32]>,
}

impl Tokens {
    pub fn new(admin: Option<&str>, read: Option<&str>) -> Self {
        Self {
            admin: admin.map(digest),
            read: read.map(digest),
        }
    }

    /// Whether any token is configured (an open server has none).
    pub fn any(&self) -> bool {
        self.admin.is_some() || self.read.is_some()
    }

    /// The caller a presented bearer token identifies, if any.
    fn caller(&self, presented: &str) -> Option<Caller> {
        let given = digest(presented);
        let is = |t: &Option<[u8; 32]>| t.as_ref().is_some_and(|t| bool::from(t.ct_eq(&given)));
        // Both comparisons always run.
        let (admin, read) = (is(&self.admin), is(&self.read));
        if admin {
            Some(Caller::Admin)
        } else if read {
            Some(Caller::Reader)
        } else {
            None
        }
    }

    /// Whether `scope` is open to callers without a token.
    fn open(&self, scope: Scope) -> bool {
        match scope {
            Scope::Public => true,
            Scope::Read => self.read.is_none(),
            Scope::Write => self.admin.is_none(),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Rejects requests without the scope their operation needs (401 without a valid token, 403
/// with a valid one that lacks the scope) and records the [`Caller`] for the handlers.
pub async fn authorize(
    State(ctx): State<ApiContext>,
    mut req: Request,
    next: Next,
) -> Result<Response, Error> {
    let scope = required_scope(req.method(), req.uri().path());
    if scope == Scope::Public {
        req.extensions_mut().insert(Caller::Anonymous);
        return Ok(next.run(req).await);
    }
    let caller = match bearer(req.headers()) {
        Some(token) => match ctx.tokens.caller(token) {
            Some(caller) => caller,
            // A wrong token is an error even where none is needed: the client means to be
            // someone it is not.
            None if ctx.tokens.any() => return Err(Error::Unauthorized),
            None => Caller::Anonymous,
        },
        None if ctx.tokens.open(scope) => Caller::Anonymous,
        None => return Err(Error::Unauthorized),
    };
    let allowed = match scope {
        Scope::Public | Scope::Read => caller >= Caller::Reader || ctx.tokens.open(Scope::Read),
        Scope::Write => caller == Caller::Admin || ctx.tokens.open(Scope::Write),
    };
    if !allowed {
        return Err(Error::Forbidden(format!(
            "{} {} needs the write token",
            req.method(),
            req.uri().path()
        )));
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// Body types a cross-site page cannot send without a CORS preflight, and the upload types.
const WRITE_TYPES: [&str; 7] = [
    "application/json",
    "application/octet-stream",
    "application/onnx",
    "application/x-onnx",
    "application/x-tar",
    "application/zip",
    "multipart/form-data",
];

/// Refuses state-changing requests that a web page on another site could send without a
/// preflight (`text/plain`, form-urlencoded, no body type at all) with 415, unless they carry
/// an `X-Requested-With` header, which such a page cannot set. `multipart/form-data` is let
/// through for uploads; it only adds architectures.
pub async fn reject_cross_site(req: Request, next: Next) -> Result<Response, Error> {
    // GET/HEAD/OPTIONS change nothing; DELETE/PUT/PATCH always need a preflight.
    if req.method() != Method::POST || req.headers().contains_key("x-requested-with") {
        return Ok(next.run(req).await);
    }
    let mime = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match mime {
        Some(m) if WRITE_TYPES.contains(&m.as_str()) || m.ends_with("+json") => {
            Ok(next.run(req).await)
        }
        given => Err(Error::UnsupportedMediaType(format!(
            "POST needs a body type of {} (or an `X-Requested-With` header for a request without \
             a body); got {}",
            WRITE_TYPES.join(", "),
            given.map_or("none".to_string(), |m| format!("`{m}`"))
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_by_method_and_path() {
        assert_eq!(required_scope(&Method::GET, "/healthz"), Scope::Public);
        assert_eq!(
            required_scope(&Method::GET, "/docs/index.html"),
            Scope::Public
        );
        assert_eq!(required_scope(&Method::GET, "/v1/results"), Scope::Read);
        assert_eq!(
            required_scope(&Method::POST, "/v1/predictions"),
            Scope::Read
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/calibration/compute"),
            Scope::Read
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/predictors"),
            Scope::Write
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/jobs/3/cancel"),
            Scope::Write
        );
        assert_eq!(
            required_scope(&Method::DELETE, "/v1/architectures/1"),
            Scope::Write
        );
    }

    #[test]
    fn tokens_identify_callers() {
        let tokens = Tokens::new(Some("admin-secret"), Some("read-secret"));
        assert_eq!(tokens.caller("admin-secret"), Some(Caller::Admin));
        assert_eq!(tokens.caller("read-secret"), Some(Caller::Reader));
        assert_eq!(tokens.caller("read-secre"), None);
        assert_eq!(tokens.caller(""), None);
        assert!(!tokens.open(Scope::Read));
        let admin_only = Tokens::new(Some("admin-secret"), None);
        assert!(admin_only.open(Scope::Read) && !admin_only.open(Scope::Write));
        assert!(Tokens::default().open(Scope::Write));
    }
}
