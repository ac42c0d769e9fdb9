//! Extractors that reject into the API's [`Error`] (problem+json), so that handlers take the
//! value itself instead of a `Result<_, XRejection>`, and [`Strict`] query parameters.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::error::{Error, Result};

/// Path parameters; 400 when one does not parse.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct Path<T>(pub T);

/// Query parameters, one value per name; 400 when one does not parse.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct Query<T>(pub T);

/// Query parameters where a name may repeat (`?benchmark=a&benchmark=b` fills a `Vec`).
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum_extra::extract::Query), rejection(Error))]
pub struct MultiQuery<T>(pub T);

/// A JSON body; 400 when it is not JSON, 415 without a JSON type, 422 when it has the wrong
/// shape.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct JsonBody<T>(pub T);

/// Query parameters (repeatable, as [`MultiQuery`]) that must all be declared by one of the
/// parameter sets of `T`, a tuple of [`IntoParams`] types: an unknown name is a 400, since a
/// typo would otherwise silently widen the answer.
#[derive(Debug)]
pub struct Strict<T>(pub T);

/// A tuple of parameter sets that [`Strict`] parses from one query string.
pub trait ParamSets: Sized {
    /// Every declared parameter name.
    fn names() -> Vec<String>;
    fn parse(parts: &mut Parts) -> Result<Self>;
}

fn names_of<T: IntoParams>() -> impl Iterator<Item = String> {
    T::into_params(|| None).into_iter().map(|p| p.name)
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
            fn names() -> Vec<String> {
                let mut names = Vec::new();
                $(names.extend(names_of::<$t>());)+
                names
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
        let names = T::names();
        if let Some((unknown, _)) = given.iter().find(|(k, _)| !names.contains(k)) {
            return Err(Error::BadRequest(format!(
                "unknown parameter `{unknown}` (known: {})",
                names.join(", ")
            )));
        }
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
}
