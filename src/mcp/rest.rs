//! How a tool call reaches the REST API: an HTTP request run through archdb's own router
//! in-process, so that a tool answers exactly what the endpoint answers (same validation, same
//! bearer-token rule, same problem+json errors).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::http::error::Problem;

/// The REST application and the caller's credentials.
pub struct Rest {
    pub app: Router,
    /// The MCP request's `Authorization` header, replayed on every REST request.
    pub auth: Option<HeaderValue>,
}

/// A request body.
pub enum Payload {
    Empty,
    Json(Value),
    /// A raw ONNX file.
    Onnx(Vec<u8>),
}

/// A failed call: the problem document and how to fix the call.
#[derive(Debug)]
pub struct Failure {
    pub problem: Value,
    pub hint: String,
}

impl Failure {
    /// A call refused before it reached the API (bad arguments).
    pub fn invalid(detail: impl Into<String>, hint: impl Into<String>) -> Self {
        let problem = Problem {
            kind: "urn:archdb:problem:invalid-arguments".into(),
            title: "Bad Request".into(),
            status: 400,
            detail: detail.into(),
        };
        Self {
            problem: serde_json::to_value(problem).expect("a problem is JSON"),
            hint: hint.into(),
        }
    }

    pub fn status(&self) -> u64 {
        self.problem["status"].as_u64().unwrap_or(500)
    }

    pub fn detail(&self) -> &str {
        self.problem["detail"].as_str().unwrap_or_default()
    }
}

impl Rest {
    /// Runs one request; a non-2xx answer becomes a [`Failure`] carrying its problem document
    /// (the hint is filled in by the tool).
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        payload: Payload,
    ) -> Result<(StatusCode, Body), Failure> {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(auth) = &self.auth {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        let request = match payload {
            Payload::Empty => request.body(Body::empty()),
            Payload::Json(v) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            Payload::Onnx(bytes) => request
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::from(bytes)),
        }
        .map_err(|e| Failure::invalid(format!("cannot build the request {uri}: {e}"), ""))?;
        let response = match self.app.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let body = response.into_body();
        if status.is_success() {
            return Ok((status, body));
        }
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let problem = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| {
                json!({"type": "about:blank", "title": status.canonical_reason().unwrap_or("Error"),
                       "status": status.as_u16(), "detail": String::from_utf8_lossy(&bytes)})
            });
        Err(Failure {
            problem,
            hint: String::new(),
        })
    }

    /// Runs one request and parses its JSON answer.
    pub async fn json(
        &self,
        method: Method,
        uri: &str,
        payload: Payload,
    ) -> Result<(StatusCode, Value), Failure> {
        let (status, body) = self.send(method, uri, payload).await?;
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|e| Failure::invalid(format!("reading {uri}: {e}"), ""))?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::invalid(format!("{uri} did not answer JSON: {e}"), ""))?;
        Ok((status, value))
    }

    pub async fn get(&self, uri: &str) -> Result<Value, Failure> {
        Ok(self.json(Method::GET, uri, Payload::Empty).await?.1)
    }

    /// Counts the lines of an answer without keeping it (rows of a `format=jsonl` query).
    pub async fn count_lines(&self, uri: &str) -> Result<u64, Failure> {
        let (_, body) = self.send(Method::GET, uri, Payload::Empty).await?;
        let mut stream = body.into_data_stream();
        let mut lines = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Failure::invalid(format!("reading {uri}: {e}"), ""))?;
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        Ok(lines)
    }
}

/// `path?query` from arguments named as the endpoint's query parameters (lists repeat the name,
/// nulls are left out).
pub fn uri(path: &str, query: &Map<String, Value>) -> Result<String, Failure> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (name, value) in query {
        let values = match value {
            Value::Array(items) => items.iter().collect(),
            Value::Null => vec![],
            v => vec![v],
        };
        for v in values {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(Failure::invalid(
                        format!(
                            "argument `{name}` must be a string, number or boolean, or a list of them"
                        ),
                        "pass scalar values as the tool's inputSchema shows",
                    ));
                }
            };
            q.append_pair(name, &text);
        }
    }
    let q = q.finish();
    Ok(if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    })
}

/// One path segment, percent-encoded (NB201 arch strings hold `|`, `+` and `~`).
pub fn segment(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_repeat_and_nulls_vanish_in_query_strings() {
        let args = json!({"op": ["Conv", "ReLU"], "limit": 5, "family": null, "unique_nn": true, "nn_prefix": "rag-"});
        let uri = uri("/v1/x", args.as_object().unwrap()).unwrap();
        assert_eq!(
            uri,
            "/v1/x?limit=5&nn_prefix=rag-&op=Conv&op=ReLU&unique_nn=true"
        );
        assert_eq!(uri_of(json!({})), "/v1/x");
        assert!(super::uri("/v1/x", json!({"a": {"b": 1}}).as_object().unwrap()).is_err());
        assert_eq!(segment("|a~0|+|b~1|"), "%7Ca%7E0%7C%2B%7Cb%7E1%7C");
    }

    fn uri_of(v: Value) -> String {
        uri("/v1/x", v.as_object().unwrap()).unwrap()
    }
}
