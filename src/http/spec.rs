//! Completes the generated OpenAPI document with what the framework and the middleware add to
//! every operation (the security scheme, the statuses of the guards and of the extractors'
//! rejections), the links between operations, and a description for each bare response, which
//! OpenAPI requires. Also answers 405 for the methods the document does not declare.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response as HttpResponse};
use utoipa::openapi::encoding::EncodingBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, ArrayItems, ObjectBuilder, OneOfBuilder, Schema,
    SchemaType, Type,
};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder};

use super::auth::{Scope, required_scope};

/// Adds security requirements, guard and rejection statuses, links and missing response
/// descriptions.
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
                let scope = required_scope(&method, path);
                guard(operation, &method, scope);
                rejections(operation, scope);
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
                if method == Method::GET {
                    super::cache::declare(operation);
                }
            }
        }
    }
    link(spec);
    // Body rules a struct's fields cannot say.
    some_of(
        spec,
        "PredictionRequest",
        &["architecture_ids", "nb201", "onnx_base64"],
        false,
    );
    some_of(spec, "PredictionsBody", &["probs", "logits"], true);
    predictions_or_figures(spec);
    file_part_encoding(spec);
    // The bodies stored as a job's parameters (jsonb, which cannot hold NUL: the server answers
    // 400).
    for component in ["TrainRequest", "FinetuneRequest", "Target"] {
        no_nul_in_properties(spec, component);
    }
}

/// `PUT …/calibration/{dataset}` reads a JSON body with `pre` as given figures and any other as
/// predictions; the macro keeps one schema per media type, so both are stated here.
fn predictions_or_figures(spec: &mut OpenApi) {
    let Some(json) = spec
        .paths
        .paths
        .get_mut("/v1/architectures/{id}/calibration/{dataset}")
        .and_then(|item| item.put.as_mut())
        .and_then(|operation| operation.request_body.as_mut())
        .and_then(|body| match body {
            RefOr::T(body) => body.content.get_mut("application/json"),
            RefOr::Ref(_) => None,
        })
        .and_then(|content| match content {
            RefOr::T(content) => Some(content),
            RefOr::Ref(_) => None,
        })
    else {
        return;
    };
    let predictions = AllOfBuilder::new()
        .item(Ref::from_schema_name("PredictionsBody"))
        .item(ObjectBuilder::new().property("pre", ObjectBuilder::new().schema_type(Type::Null)));
    let either = OneOfBuilder::new()
        .item(predictions)
        .item(Ref::from_schema_name("GivenFigures"))
        .description(Some(
            "Predictions (without `pre`), or given figures (with `pre`).",
        ));
    json.schema = Some(either.into());
}

/// Declares the media type of each file part of a multipart form (a property with a
/// `contentMediaType`, or an array of them) in the form's `encoding`, where OpenAPI reads a
/// part's `Content-Type` from.
fn file_part_encoding(spec: &mut OpenApi) {
    let Some(components) = spec.components.as_ref().map(|c| c.schemas.clone()) else {
        return;
    };
    let media_type = |schema: &RefOr<Schema>| {
        match schema {
            RefOr::T(Schema::Object(o)) => Some(o.content_media_type.clone()),
            RefOr::T(Schema::Array(a)) => match &a.items {
                ArrayItems::RefOrSchema(items) => match items.as_ref() {
                    RefOr::T(Schema::Object(o)) => Some(o.content_media_type.clone()),
                    _ => None,
                },
                ArrayItems::False => None,
            },
            _ => None,
        }
        .filter(|m| !m.is_empty())
    };
    for item in spec.paths.paths.values_mut() {
        for operation in [&mut item.post, &mut item.put].into_iter().flatten() {
            let Some(form) = operation
                .request_body
                .as_mut()
                .and_then(|body| match body {
                    RefOr::T(body) => body.content.get_mut("multipart/form-data"),
                    RefOr::Ref(_) => None,
                })
                .and_then(|content| match content {
                    RefOr::T(content) => Some(content),
                    RefOr::Ref(_) => None,
                })
            else {
                continue;
            };
            let Some(RefOr::Ref(form_ref)) = &form.schema else {
                continue;
            };
            let name = form_ref.ref_location.rsplit('/').next().unwrap_or_default();
            let Some(RefOr::T(Schema::Object(object))) = components.get(name) else {
                continue;
            };
            for (property, schema) in &object.properties {
                if let Some(media_type) = media_type(schema) {
                    form.encoding.insert(
                        property.clone(),
                        EncodingBuilder::new()
                            .content_type(Some(media_type))
                            .build(),
                    );
                }
            }
        }
    }
}

/// [`no_nul`] on each property of a component schema.
fn no_nul_in_properties(spec: &mut OpenApi, component: &str) {
    let Some(RefOr::T(Schema::Object(object))) = spec
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(component))
    else {
        return;
    };
    for property in object.properties.values_mut() {
        let mut schema = Some(property.clone());
        no_nul(&mut schema);
        if let Some(schema) = schema {
            *property = schema;
        }
    }
}

/// Requires at least one (or, with `exactly_one`, exactly one) of the array `fields` of the
/// component schema to be present and non-empty.
fn some_of(spec: &mut OpenApi, component: &str, fields: &[&str], exactly_one: bool) {
    let Some(schemas) = spec.components.as_mut().map(|c| &mut c.schemas) else {
        return;
    };
    let Some(original) = schemas.get(component).cloned() else {
        return;
    };
    let branch = |f: &str| {
        ObjectBuilder::new()
            .required(f)
            .property(f, ArrayBuilder::new().min_items(Some(1)))
            .build()
    };
    let rule: Schema = if exactly_one {
        fields
            .iter()
            .fold(OneOfBuilder::new(), |b, f| b.item(branch(f)))
            .into()
    } else {
        fields
            .iter()
            .fold(AnyOfBuilder::new(), |b, f| b.item(branch(f)))
            .into()
    };
    let schema = AllOfBuilder::new().item(original).item(rule).build();
    schemas.insert(component.to_string(), RefOr::T(Schema::AllOf(schema)));
}

/// What the extractors and the shared limits answer before a handler runs: 400 for a
/// malformed parameter, 400/413/415/422 for a body that is malformed, too large, of another
/// type or of the wrong shape, and 503 when the database is saturated or a query times out.
fn rejections(operation: &mut Operation, scope: Scope) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter {
            no_nul(&mut parameter.schema);
            // A repeatable parameter that needs a value is required (utoipa drops `required`
            // next to `schema_with`).
            if let Some(RefOr::T(Schema::Array(array))) = &parameter.schema
                && array.min_items.is_some_and(|n| n > 0)
            {
                parameter.required = Required::True;
            }
        }
    }
    if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        add(
            operation,
            StatusCode::BAD_REQUEST,
            "a malformed or out-of-range parameter",
        );
    }
    if operation.request_body.is_some() {
        add(operation, StatusCode::BAD_REQUEST, "a malformed body");
        add(
            operation,
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is over the size limit",
        );
        add(
            operation,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a body type this operation does not take",
        );
        add(
            operation,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a well-formed body with invalid content",
        );
    }
    if scope != Scope::Public {
        add(
            operation,
            StatusCode::SERVICE_UNAVAILABLE,
            "busy (every database connection or heavy-work slot in use) or the query took too \
             long; retry later",
        );
    }
}

/// Text parameters (and nullable text) exclude NUL, which PostgreSQL text cannot hold (the server
/// answers 400).
fn no_nul(schema: &mut Option<RefOr<Schema>>) {
    let Some(RefOr::T(schema)) = schema else {
        return;
    };
    match schema {
        Schema::Object(object)
            if (object.schema_type == SchemaType::Type(Type::String)
                || object.schema_type == SchemaType::Array(vec![Type::String, Type::Null]))
                && object.pattern.is_none()
                && object.enum_values.is_none()
                && object.format.is_none() =>
        {
            object.pattern = Some(NO_NUL.into());
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                let mut items_schema = Some((**items).clone());
                no_nul(&mut items_schema);
                if let Some(new) = items_schema {
                    **items = new;
                }
            }
        }
        _ => {}
    }
}

const NO_NUL: &str = "^[^\\u0000]*$";

/// `(operation with the response, status, link name, target operation, target parameter,
/// runtime expression)`: where a response names a resource another operation takes.
const LINKS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "create_architecture",
        "201",
        "GetArchitecture",
        "get_architecture",
        "id",
        "$response.body#/id",
    ),
    (
        "create_architecture",
        "200",
        "GetArchitecture",
        "get_architecture",
        "id",
        "$response.body#/id",
    ),
    (
        "create_architecture",
        "201",
        "GetGraph",
        "get_graph",
        "id",
        "$response.body#/id",
    ),
    (
        "create_architecture",
        "201",
        "GetOnnx",
        "get_onnx",
        "id",
        "$response.body#/id",
    ),
    (
        "create_architecture",
        "201",
        "GetText",
        "get_text",
        "id",
        "$response.body#/id",
    ),
    (
        "create_architecture",
        "201",
        "Similar",
        "similar",
        "id",
        "$response.body#/id",
    ),
    (
        "create_architecture",
        "201",
        "Calibration",
        "architecture_datasets",
        "id",
        "$response.body#/id",
    ),
    (
        "create_architecture",
        "201",
        "DeleteArchitecture",
        "delete_architecture",
        "id",
        "$response.body#/id",
    ),
    (
        "get_architecture",
        "200",
        "DeleteArchitecture",
        "delete_architecture",
        "id",
        "$request.path.id",
    ),
    (
        "create_predictor",
        "202",
        "GetJob",
        "get_job",
        "id",
        "$response.body#/job_id",
    ),
    (
        "create_predictor",
        "202",
        "CancelJob",
        "cancel_job",
        "id",
        "$response.body#/job_id",
    ),
    (
        "finetune_predictor",
        "202",
        "GetJob",
        "get_job",
        "id",
        "$response.body#/job_id",
    ),
    (
        "get_predictor",
        "200",
        "ActivatePredictor",
        "activate_predictor",
        "id",
        "$request.path.id",
    ),
    (
        "get_predictor",
        "200",
        "Finetune",
        "finetune_predictor",
        "id",
        "$request.path.id",
    ),
];

/// Adds [`LINKS`] to the responses they start from.
fn link(spec: &mut OpenApi) {
    for item in spec.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let id = operation.operation_id.clone().unwrap_or_default();
            for (_, status, name, target, parameter, value) in LINKS.iter().filter(|l| l.0 == id) {
                if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status) {
                    let link = LinkBuilder::new()
                        .operation_id(*target)
                        .parameter(*parameter, *value)
                        .build();
                    response.links.insert(name.to_string(), link.into());
                }
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
        // Without a body there is no body type to show the request is not cross-site.
        if operation.request_body.is_none() {
            let header = ParameterBuilder::new()
                .name("X-Requested-With")
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some(
                    "any value: a web page on another site cannot set it without a preflight",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build();
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(header.into());
        }
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

/// The methods the document declares for each path template, to tell a wrong method (405)
/// from a wrong path (404) before the guards answer 401 or 415.
#[derive(Debug, Clone, Default)]
pub struct Declared(Vec<(Vec<String>, Vec<Method>)>);

impl Declared {
    pub fn new(spec: &OpenApi) -> Self {
        let routes = spec
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path.split('/').map(str::to_string).collect();
                let mut methods = Vec::new();
                for (method, declared) in [
                    (Method::GET, item.get.is_some()),
                    (Method::PUT, item.put.is_some()),
                    (Method::POST, item.post.is_some()),
                    (Method::DELETE, item.delete.is_some()),
                    (Method::PATCH, item.patch.is_some()),
                ] {
                    if declared {
                        methods.push(method);
                    }
                }
                if methods.contains(&Method::GET) {
                    methods.push(Method::HEAD);
                }
                (segments, methods)
            })
            .collect();
        Self(routes)
    }

    /// The methods of the template `path` matches, if one does.
    fn methods(&self, path: &str) -> Option<&[Method]> {
        let given: Vec<&str> = path.split('/').collect();
        self.0.iter().find_map(|(segments, methods)| {
            let matches = segments.len() == given.len()
                && segments.iter().zip(&given).all(|(s, g)| {
                    s == g || (s.starts_with('{') && s.ends_with('}') && !g.is_empty())
                });
            matches.then_some(methods.as_slice())
        })
    }
}

/// Answers 405 with `Allow` for a method the document does not declare on a path it does.
pub async fn reject_undeclared_method(
    axum::extract::State(declared): axum::extract::State<std::sync::Arc<Declared>>,
    req: Request,
    next: Next,
) -> HttpResponse {
    match declared.methods(req.uri().path()) {
        Some(methods) if !methods.contains(req.method()) => {
            let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
            let mut response = super::error::Error::Rejection(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{} is not allowed here (allowed: {})",
                    req.method(),
                    allow.join(", ")
                ),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        _ => next.run(req).await,
    }
}
