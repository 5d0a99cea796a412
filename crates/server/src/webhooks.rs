//! Webhook deliveries over the API: listed, and sent again on request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pipeline_store::{DeliveryStatus, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{ApiPath, ApiQuery};
use crate::{ApiError, AppState};

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/webhooks/deliveries?status=&limit=`: newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(str::parse::<DeliveryStatus>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let deliveries = state.store.webhook_deliveries(status, limit).await?;
    Ok(Json(json!({"deliveries": deliveries})))
}

/// `POST /api/v1/webhooks/deliveries/{id}/retry`: queued for the relay
/// now; 409 when it was delivered already.
pub async fn retry(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a delivery id")))?;
    match state.store.retry_webhook_delivery(id).await {
        Ok(delivery) => Ok((StatusCode::ACCEPTED, Json(json!({"delivery": delivery})))),
        Err(StoreError::NotFoundDelivery(id)) => Err(ApiError::not_found(format!(
            "no webhook delivery with id {id}"
        ))),
        Err(StoreError::AlreadyDelivered(id)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_delivered",
            format!("webhook delivery {id} was delivered already"),
        )),
        Err(e) => Err(e.into()),
    }
}
