//! Completes the generated OpenAPI document with what the middleware adds to every operation
//! (the security scheme and the statuses of the guards) and with a description for each bare
//! response, which OpenAPI requires.

use axum::http::{Method, StatusCode};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

use super::auth::{Scope, required_scope};

/// Adds security requirements, guard statuses and missing response descriptions.
pub fn complete(spec: &mut OpenApi) {
    for (path, item) in spec.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                guard(operation, &method, required_scope(&method, path));
                if super::server::is_heavy(&method, path) {
                    add(
                        operation,
                        StatusCode::TOO_MANY_REQUESTS,
                        "this caller's rate limit on heavy requests is reached; see `Retry-After`",
                    );
                    add(
                        operation,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many heavy requests at once; see `Retry-After`",
                    );
                }
                describe(operation);
            }
        }
    }
}

/// What the auth and cross-site guards answer, and which token an operation takes.
fn guard(operation: &mut Operation, method: &Method, scope: Scope) {
    let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
    let (security, statuses): (_, &[(StatusCode, &str)]) = match scope {
        Scope::Public => return,
        // Open unless the server has a read token.
        Scope::Read => (
            vec![SecurityRequirement::default(), bearer],
            &[(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (when the server has a read token)",
            )],
        ),
        Scope::Write => (
            vec![bearer],
            &[
                (
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong bearer token (when the server has an admin token)",
                ),
                (
                    StatusCode::FORBIDDEN,
                    "the read token cannot write; this needs the admin token",
                ),
            ],
        ),
    };
    operation.security = Some(security);
    for (status, description) in statuses {
        add(operation, *status, description);
    }
    if method == Method::POST {
        add(
            operation,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a body type a web page could send cross-site (use JSON, an upload type, or \
             `X-Requested-With`)",
        );
    }
}

/// Adds a problem+json response for `status` unless the operation documents one.
fn add(operation: &mut Operation, status: StatusCode, description: &str) {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    operation
        .responses
        .responses
        .entry(status.as_str().to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", content)
                .build()
                .into()
        });
}

/// Gives every response without a description its status's reason phrase.
fn describe(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(Response { description, .. }) = response
            && description.is_empty()
        {
            *description = status
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("response")
                .to_string();
        }
    }
}
