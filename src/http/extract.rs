//! Extractors that reject into the API's [`Error`] (problem+json), so that handlers take the
//! value itself instead of a `Result<_, XRejection>`, and [`Strict`] query parameters.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::Parameter;
use utoipa::openapi::schema::{ArrayItems, Schema, SchemaType, Type};

use super::error::{Error, Result};

/// Path parameters; 400 when one does not parse.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct Path<T>(pub T);

/// Query parameters, one value per name; 400 when one does not parse.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct Query<T>(pub T);

/// Query parameters where a name may repeat (`?benchmark=a&benchmark=b` fills a `Vec`); 400
/// when one does not parse, or is given empty where its schema does not admit `""` (the form
/// parser would read `?format=` as an absent `format`).
#[derive(Debug)]
pub struct MultiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + IntoParams> FromRequestParts<S> for MultiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        let given =
            axum_extra::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)?.0;
        refuse_empty(&given, &T::into_params(|| None))?;
        multi_query(parts).map(MultiQuery)
    }
}

/// A JSON body; 400 when it is not JSON, 415 without a JSON type, 422 when it has the wrong
/// shape. A whole number written with a fraction (`50.0`) is an integer, as in JSON Schema.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let axum::Json(mut value) =
            axum::Json::<serde_json::Value>::from_request(req, state).await?;
        whole_numbers_as_integers(&mut value);
        serde_json::from_value(value).map(JsonBody).map_err(|e| {
            Error::Rejection(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Failed to deserialize the JSON body into the target type: {e}"),
            )
        })
    }
}

/// Rewrites floats without a fraction that an `f64` holds exactly (|x| ≤ 2^53) as integers, so
/// that integer fields take them; float fields take integers anyway.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0)
                && f.abs() <= 9_007_199_254_740_992.0
            {
                *n = (f as i64).into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// Query parameters (repeatable, as [`MultiQuery`]) that must all be declared by one of the
/// parameter sets of `T`, a tuple of [`IntoParams`] types: an unknown name is a 400, since a
/// typo would otherwise silently widen the answer.
#[derive(Debug)]
pub struct Strict<T>(pub T);

/// A tuple of parameter sets that [`Strict`] parses from one query string.
pub trait ParamSets: Sized {
    /// Every declared parameter.
    fn declared() -> Vec<Parameter>;
    fn parse(parts: &mut Parts) -> Result<Self>;
}

/// A 400 for the first parameter given with an empty value that its schema does not admit (an
/// enum without `""`, a number, a boolean, a string with a minimum length): the form parser
/// would read it as absent, so a value outside the schema would be accepted.
fn refuse_empty(given: &[(String, String)], declared: &[Parameter]) -> Result<()> {
    for (name, value) in given {
        if !value.is_empty() {
            continue;
        }
        let schema = declared
            .iter()
            .find(|p| &p.name == name)
            .and_then(|p| p.schema.as_ref());
        if schema.is_some_and(|s| !admits_empty(s)) {
            return Err(Error::BadRequest(format!(
                "parameter `{name}` is empty; give a value or leave it out"
            )));
        }
    }
    Ok(())
}

/// Whether `""` is a valid value of a query parameter with this schema (of each value, for an
/// array). A reference is not followed, and admits it.
fn admits_empty(schema: &RefOr<Schema>) -> bool {
    let RefOr::T(schema) = schema else {
        return true;
    };
    match schema {
        Schema::Object(o) => match &o.enum_values {
            Some(values) => values.iter().any(|v| v.as_str() == Some("")),
            None => {
                let string = match &o.schema_type {
                    SchemaType::Type(t) => *t == Type::String,
                    SchemaType::Array(types) => types.contains(&Type::String),
                    SchemaType::AnyValue => true,
                };
                string && o.min_length.unwrap_or(0) == 0
            }
        },
        Schema::Array(a) => match &a.items {
            ArrayItems::RefOrSchema(items) => admits_empty(items),
            ArrayItems::False => false,
        },
        Schema::OneOf(s) => s.items.iter().any(admits_empty),
        Schema::AnyOf(s) => s.items.iter().any(admits_empty),
        Schema::AllOf(s) => s.items.iter().all(admits_empty),
        _ => true,
    }
}

/// One parameter set, through [`axum_extra::extract::Query`]'s extractor (its errors name the
/// parameter; `try_from_uri`'s do not). It never waits, so its future is ready at once.
fn multi_query<T: DeserializeOwned>(parts: &mut Parts) -> Result<T> {
    let query = axum_extra::extract::Query::<T>::from_request_parts(parts, &())
        .now_or_never()
        .expect("the query extractor does not wait")?;
    Ok(query.0)
}

macro_rules! param_sets {
    ($($t:ident),+) => {
        impl<$($t: DeserializeOwned + IntoParams),+> ParamSets for ($($t,)+) {
            fn declared() -> Vec<Parameter> {
                let mut declared = Vec::new();
                $(declared.extend($t::into_params(|| None));)+
                declared
            }

            fn parse(parts: &mut Parts) -> Result<Self> {
                Ok(($(multi_query::<$t>(parts)?,)+))
            }
        }
    };
}
param_sets!(A);
param_sets!(A, B);
param_sets!(A, B, C);
param_sets!(A, B, C, D);
param_sets!(A, B, C, D, E);

impl<S: Send + Sync, T: ParamSets> FromRequestParts<S> for Strict<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        let given =
            axum_extra::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)?.0;
        let declared = T::declared();
        if let Some((unknown, _)) = given
            .iter()
            .find(|(k, _)| !declared.iter().any(|p| &p.name == k))
        {
            let names: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::BadRequest(format!(
                "unknown parameter `{unknown}` (known: {})",
                names.join(", ")
            )));
        }
        refuse_empty(&given, &declared)?;
        T::parse(parts).map(Strict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    struct Page {
        limit: Option<i64>,
    }

    #[derive(Debug, Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    struct Names {
        #[serde(default)]
        nn: Vec<String>,
    }

    async fn strict(uri: &str) -> Result<(Page, Names)> {
        let (mut parts, ()) = axum::http::Request::get(uri).body(()).unwrap().into_parts();
        Strict::<(Page, Names)>::from_request_parts(&mut parts, &())
            .await
            .map(|s| s.0)
    }

    #[tokio::test]
    async fn json_bodies_take_whole_floats_as_integers() {
        #[derive(Debug, Deserialize)]
        struct Body {
            samples: usize,
            rate: f64,
        }
        let body = |json: &str| {
            axum::http::Request::post("/x")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(json.to_string()))
                .unwrap()
        };
        let JsonBody(b) =
            JsonBody::<Body>::from_request(body(r#"{"samples": 50.0, "rate": 1}"#), &())
                .await
                .unwrap();
        assert_eq!((b.samples, b.rate), (50, 1.0));
        let err = JsonBody::<Body>::from_request(body(r#"{"samples": 50.5, "rate": 1}"#), &())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Rejection(s, _) if s == 422), "{err:?}");
    }

    #[tokio::test]
    async fn strict_parses_every_set_and_refuses_unknown_names() {
        let (page, names) = strict("/x?limit=3&nn=a&nn=b").await.unwrap();
        assert_eq!(page.limit, Some(3));
        assert_eq!(names.nn, ["a", "b"]);
        let err = strict("/x?limit=3&nnn=a").await.unwrap_err();
        assert!(
            matches!(&err, Error::BadRequest(m) if m.starts_with("unknown parameter `nnn`")),
            "{err:?}"
        );
        let err = strict("/x?limit=many").await.unwrap_err();
        assert!(
            matches!(&err, Error::Rejection(s, m) if *s == 400 && m.contains("limit")),
            "the error names the parameter: {err:?}"
        );
    }

    #[tokio::test]
    async fn an_empty_value_outside_the_schema_is_refused() {
        #[derive(Debug, Deserialize, IntoParams)]
        #[into_params(parameter_in = Query)]
        struct Choice {
            #[param(inline)]
            format: Option<Format>,
        }
        #[derive(Debug, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        enum Format {
            Json,
        }
        let err = strict("/x?limit=").await.unwrap_err();
        assert!(
            matches!(&err, Error::BadRequest(m) if m.contains("`limit` is empty")),
            "{err:?}"
        );
        strict("/x?nn=").await.expect("an empty string is a string");
        let multi = |uri: &str| {
            let (mut parts, ()) = axum::http::Request::get(uri).body(()).unwrap().into_parts();
            MultiQuery::<Choice>::from_request_parts(&mut parts, &())
                .now_or_never()
                .unwrap()
        };
        assert!(matches!(
            multi("/x?format=json").unwrap().0.format,
            Some(Format::Json)
        ));
        assert!(multi("/x").unwrap().0.format.is_none());
        let err = multi("/x?format=").unwrap_err();
        assert!(
            matches!(&err, Error::BadRequest(m) if m.contains("`format` is empty")),
            "{err:?}"
        );
    }
}
