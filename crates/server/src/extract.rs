//! Extractors whose rejections are [`ApiError`]s: axum's own answer a
//! malformed path, query or form in plain text, and a client must get the
//! API's JSON error for every refusal.

use axum::extract::{FromRequest, FromRequestParts, Multipart, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::ApiError;

/// The path's parameters as `T`; 400 when they do not fit.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// The id of the `{id}` path segment; 400 when it is not a uuid.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ApiPath(text) = ApiPath::<String>::from_request_parts(parts, state).await?;
        Uuid::parse_str(&text)
            .map(IdPath)
            .map_err(|_| ApiError::bad_request(format!("{text:?} is not an id")))
    }
}

/// The query string as `T`; 400 when it does not fit.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A `multipart/form-data` body; 400 when the request is not one.
pub struct ApiMultipart(pub Multipart);

impl<S: Send + Sync> FromRequest<S> for ApiMultipart {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Multipart::from_request(request, state)
            .await
            .map(ApiMultipart)
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}
