//! Request ids and request logs: every response carries `x-request-id`; every request is
//! logged as `GET /path` when it starts and `Sent <status> in <n>ms` when it ends (info below
//! 400, warning for 4xx, error for 5xx, health routes always info), with `request_id` as
//! metadata. `DISABLE_HEALTHCHECK_LOGGING` silences the health routes.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::app::AppState;
use crate::http::request_id;

/// The id chosen for the request, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Whether a path is one of the health routes.
pub fn is_health_path(path: &str) -> bool {
    if path == "/healthcheck" {
        return true;
    }
    let mut parts = path.trim_end_matches('/').split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(""), Some("api"), Some("tenants"), Some(id), Some("health"), None) if !id.is_empty()
    )
}

/// The middleware.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = request_id::choose(req.headers());
    req.extensions_mut().insert(RequestId(id.clone()));
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let health = is_health_path(&path);
    // WebSocket upgrades are not request-logged (Phoenix sockets bypass the request logger).
    let silenced = health && state.config.disable_healthcheck_logging;
    let log = !(silenced || path.starts_with("/socket"));

    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let mut res = async {
        if log {
            tracing::info!("{method} {path}");
        }
        let res = next.run(req).await;
        if log {
            let status = res.status().as_u16();
            let ms = started.elapsed().as_millis();
            if health || status < 400 {
                tracing::info!("Sent {status} in {ms}ms");
            } else if status < 500 {
                tracing::warn!("Sent {status} in {ms}ms");
            } else {
                tracing::error!("Sent {status} in {ms}ms");
            }
        }
        res
    }
    .instrument(span)
    .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::is_health_path;

    #[test]
    fn health_paths() {
        assert!(is_health_path("/healthcheck"));
        assert!(is_health_path("/api/tenants/realtime-dev/health"));
        assert!(!is_health_path("/api/tenants/realtime-dev"));
        assert!(!is_health_path("/api/tenants//health"));
        assert!(!is_health_path("/api/tenants/x/health/more"));
    }
}
