//! The WebSocket upgrade: vsn negotiation, then the connect-time checks of PROTOCOL.md §1.5 in
//! upstream's order, each refusal answered after the connect backoff with `{"error": …}`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use realtime_protocol::wording::{http, socket};
use realtime_protocol::Vsn;
use serde_json::{json, Map, Value};

use crate::gateway::jwt;
use crate::gateway::session::{self, ConnectInfo};
use crate::gateway::socket_log;
use crate::gateway::tenant_resolve::resolve;
use crate::gateway::GatewayState;

/// Initial read buffer of a socket; it grows on demand up to the frame limit.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// A JSON error body with upstream's content type.
pub fn json_error(status: u16, key: &str, message: &str) -> Response {
    let body = json!({ key: message }).to_string();
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The close code for a read error that ends a socket, when it gets one: 1007 for a text frame
/// that is not UTF-8. The WebSocket layer refuses such a frame and ends the stream, so the
/// socket cannot go on as upstream's (which decodes text frames as JSON without checking UTF-8
/// and drops the frame); it closes with the RFC 6455 code instead of a bare reset.
pub(crate) fn read_error_close(tenant: &str, e: &axum::Error) -> Option<u16> {
    let text = e.to_string();
    if text.starts_with("UTF-8 encoding error") {
        tracing::error!(
            tenant,
            error_code = socket::MALFORMED_WEBSOCKET_MESSAGE,
            "{}",
            socket::INVALID_UTF8
        );
        return Some(1007);
    }
    None
}

fn bare(status: StatusCode) -> Response {
    status.into_response()
}

/// `GET /socket/websocket` (and its aliases).
pub async fn upgrade<S: GatewayState>(
    State(state): State<S>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if method != Method::GET {
        return bare(StatusCode::BAD_REQUEST);
    }
    let gw = state.gateway().clone();
    let params: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(p)| p)
        .unwrap_or_default();
    let vsn = match params.get("vsn") {
        None => Vsn::V1,
        Some(v) => match Vsn::parse(v) {
            Some(v) => v,
            None => return bare(StatusCode::FORBIDDEN),
        },
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host())
        .unwrap_or("");
    let token = headers
        .get("x-api-key")
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| params.get("apikey").cloned());

    let refuse = |status: u16, message: String| {
        let delay = gw.settings.connect_error_backoff;
        async move {
            tokio::time::sleep(delay).await;
            json_error(status, "error", &message)
        }
    };

    let tenant = match resolve(&*gw.tenants, host, gw.settings.default_tenant.as_deref()).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            tracing::info!(host, "TenantNotFound");
            return refuse(404, http::TENANT_NOT_FOUND.into()).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "tenant lookup failed");
            return refuse(500, http::ERROR_CONNECTING.into()).await;
        }
    };
    if tenant.suspend {
        tracing::info!(tenant = %tenant.external_id, "RealtimeDisabledForTenant");
        return refuse(403, http::REALTIME_DISABLED.into()).await;
    }
    let Some(token) = token else {
        return refuse(401, http::API_KEY_MISSING.into()).await;
    };
    if let Err(e) = jwt::verify(
        &token,
        tenant.keys(),
        &gw.settings.jwt_claim_validators,
        jwt::now_secs(),
    ) {
        let (status, message) = e.connect_refusal();
        tracing::info!(tenant = %tenant.external_id, error = %e, "connect token refused");
        return refuse(status, message).await;
    }
    let limits = &tenant.limits;
    if gw.users_everywhere(&tenant.external_id) >= limits.max_concurrent_users {
        return refuse(429, http::TOO_MANY_CONNECTED_USERS.into()).await;
    }
    if gw
        .limits
        .rates(&tenant.external_id)
        .joins
        .triggered(limits.max_joins_per_second)
    {
        return refuse(429, http::TOO_MANY_JOINS.into()).await;
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    let mut x_headers = Map::new();
    for (name, value) in headers.iter() {
        if name.as_str().starts_with("x-") {
            x_headers.insert(
                name.as_str().to_string(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            );
        }
    }
    let info = ConnectInfo {
        tenant,
        token,
        headers: x_headers,
        vsn,
    };
    let level = socket_log::parse(params.get("log_level").map(String::as_str));
    let max = gw.settings.max_message_size;
    // Frames may be larger than a message's limit: the whole oversized message is read, then
    // refused with 1009 at a frame boundary.
    // tungstenite reserves its whole read buffer per socket up front (128 KiB by default); a
    // small initial buffer that grows for large frames keeps idle sockets cheap. (Its write
    // buffer gives back the room a burst grew it to once written: `vendor/README.md`.)
    ws.max_message_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| socket_log::scope(level, session::run(gw, socket, info)))
}
