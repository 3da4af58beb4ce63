//! `GET /api/ping`: tenant from Host, the tenant REST rate limiter and its `x-rate-*` headers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use realtime_protocol::wording::rest;

use crate::gateway::socket::json_error;
use crate::gateway::tenant_resolve::{resolve, TenantView};
use crate::gateway::{Gateway, GatewayState};

/// Why a tenant REST request stopped before its handler.
pub(crate) enum Gate {
    /// Respond with this.
    Refused(Response),
}

/// Tenant from Host, request count, rate limiter; returns the tenant and the `x-rate-*` headers.
pub(crate) async fn tenant_gate(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<(Arc<TenantView>, Vec<(&'static str, HeaderValue)>), Gate> {
    if !crate::http::accept::accepts_json(headers) {
        return Err(Gate::Refused(not_acceptable()));
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let tenant = match resolve(&*gw.tenants, host, gw.settings.default_tenant.as_deref()).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(Gate::Refused(json_error(
                401,
                "message",
                rest::TENANT_NOT_FOUND_IN_DATABASE,
            )))
        }
        Err(e) => {
            tracing::error!(error = %e, "tenant lookup failed");
            return Err(Gate::Refused(json_error(
                500,
                "message",
                rest::INTERNAL_SERVER_ERROR,
            )));
        }
    };
    let rates = gw.limits.rates(&tenant.external_id);
    rates.requests.add(1);
    let limit = tenant.limits.max_events_per_second;
    let rolling = rates.requests.average().floor() as i64;
    let rate_headers = vec![
        ("x-rate-rolling", HeaderValue::from(rolling)),
        ("x-rate-limit", HeaderValue::from(limit)),
        (
            "x-rate-limit-remaining",
            HeaderValue::from(limit as i64 - rolling),
        ),
    ];
    if limit == 0 || rolling >= limit as i64 {
        let mut r = json_error(429, "message", rest::TOO_MANY_REQUESTS);
        add_headers(&mut r, &rate_headers);
        return Err(Gate::Refused(r));
    }
    Ok((tenant, rate_headers))
}

/// 406 for an `Accept` header that excludes the route's formats.
pub(crate) fn not_acceptable() -> Response {
    (axum::http::StatusCode::NOT_ACCEPTABLE, rest::NOT_ACCEPTABLE).into_response()
}

pub(crate) fn add_headers(r: &mut Response, h: &[(&'static str, HeaderValue)]) {
    for (k, v) in h {
        r.headers_mut().insert(*k, v.clone());
    }
}

/// `GET /api/ping` → 200 `{"message":"Success"}`.
pub async fn ping<S: GatewayState>(State(state): State<S>, headers: HeaderMap) -> Response {
    match tenant_gate(state.gateway(), &headers).await {
        Err(Gate::Refused(r)) => r,
        Ok((_, rate_headers)) => {
            let mut r = json_error(200, "message", rest::SUCCESS);
            add_headers(&mut r, &rate_headers);
            r
        }
    }
}
