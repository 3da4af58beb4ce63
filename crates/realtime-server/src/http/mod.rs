//! The HTTP API: admin tenant routes, tenant health, `/healthcheck`, and the server-wide
//! behaviour of §5.1 (request ids, request logs, body parsing before routing, 404 fallback).
//!
//! Layout:
//! - [`health`]: `/healthcheck` and `/api/tenants/:id/health`.
//! - [`tenants`]: the admin tenant routes.
//! - [`admin`] / [`admin_auth`]: the admin bearer check and its pure token rules.
//! - [`inspector`]: the `/inspector` page (`INSPECTOR_ENABLED`).
//! - [`metrics`]: `/metrics` and `/metrics/{region}` (Prometheus text).
//! - [`accept`]: `Accept` negotiation (406).
//! - [`body`]: the 8 MB limit and JSON parsing before routing.
//! - [`request_id`] / [`request_log`]: `x-request-id` and request log lines.
//! - [`response`]: JSON responses and the error type.

pub mod accept;
pub mod admin;
pub mod admin_auth;
pub mod body;
pub mod health;
pub mod inspector;
pub mod metrics;
pub mod request_id;
pub mod request_log;
pub mod response;
pub mod tenants;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::compression::CompressionLayer;

use crate::app::AppState;

/// The control-plane routes, gzip-compressed when the client accepts it.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthcheck", get(health::healthcheck))
        .route("/metrics", get(metrics::all))
        .route("/metrics/{region}", get(metrics::region))
        .route("/api/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/api/tenants/{tenant_id}",
            get(tenants::show)
                .put(tenants::update)
                .patch(tenants::update)
                .delete(tenants::delete),
        )
        .route("/api/tenants/{tenant_id}/reload", post(tenants::reload))
        .route("/api/tenants/{tenant_id}/shutdown", post(tenants::shutdown))
        .route(
            "/api/tenants/{tenant_id}/health",
            get(health::tenant_health),
        )
        .layer(CompressionLayer::new().gzip(true))
}

/// Every route of the server (HTTP API and gateway) with the server-wide layers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(routes())
        .merge(crate::app::gateway_routes())
        .merge(inspector::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(middleware::from_fn(body::layer))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_log::layer,
        ))
        .with_state(state)
}

/// Unmatched routes: 404 `Not Found`, as a JSON string when the client asks for JSON.
pub async fn not_found(headers: HeaderMap) -> Response {
    if accept::prefers_json(&headers) {
        response::json(StatusCode::NOT_FOUND, &serde_json::json!("Not Found"))
    } else {
        response::text(StatusCode::NOT_FOUND, "Not Found")
    }
}
