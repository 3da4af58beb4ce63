//! `GET /metrics` and `GET /metrics/{region}`: the Prometheus text of this node behind the
//! metrics bearer (`METRICS_JWT_SECRET`, `METRICS_TOKEN_BLOCKLIST`); 403 with an empty body
//! otherwise. The region route answers an empty body when this node is of another region.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::admin_auth::{bearer_token, now_secs, verify};
use crate::http::response::ApiError;

/// `GET /metrics`.
pub async fn all(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    body(state.gateway.render_metrics(state.config.max_connections))
}

/// `GET /metrics/{region}`.
pub async fn region(
    State(state): State<AppState>,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    if state.config.region.as_deref() != Some(region.as_str()) {
        return body(Vec::new());
    }
    body(state.gateway.render_metrics(state.config.max_connections))
}

fn body(text: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let config = &state.config;
    let secrets: Vec<&str> = config.metrics_jwt_secret.as_deref().into_iter().collect();
    bearer_token(headers)
        .and_then(|token| {
            verify(
                &token,
                &secrets,
                &config.metrics_token_blocklist,
                &config.jwt_claim_validators,
                now_secs(),
            )
        })
        .map(|_| ())
        .map_err(|e| {
            tracing::debug!("metrics token refused: {e}");
            ApiError::Forbidden
        })
}
