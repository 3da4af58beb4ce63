//! `/inspector`: a page that joins a channel over `/socket/websocket` and shows what arrives.
//! Its HTML, CSS and JS are compiled into the binary; it is routed only when
//! `INSPECTOR_ENABLED`, and guarded by the dashboard credentials when they are configured.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;

use crate::app::AppState;
use crate::config::InspectorAccess;

const PAGE: &str = include_str!("inspector/inspector.html");
const SCRIPT: &str = include_str!("inspector/inspector.js");
const STYLE: &str = include_str!("inspector/inspector.css");

/// Everything the page loads comes from this server; the socket may point at any host (the
/// tenant is chosen by the socket URL's host name).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// The realm of the basic-auth challenge (Plug.BasicAuth's default, as upstream's dashboard).
const REALM: &str = "Basic realm=\"Application\"";

/// The inspector's routes, or none when it is disabled (the 404 fallback answers).
pub fn routes(state: &AppState) -> Router<AppState> {
    if !state.config.inspector.enabled {
        return Router::new();
    }
    Router::new()
        .route("/inspector", get(page))
        .route("/inspector/", get(page))
        .route("/inspector/inspector.js", get(script))
        .route("/inspector/inspector.css", get(style))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard))
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page's URL carries the API key: never send it on as a referrer, never cache it.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The dashboard protection in front of every inspector route.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match &state.config.inspector.access {
        InspectorAccess::Open => next.run(req).await,
        InspectorAccess::Refused => StatusCode::FORBIDDEN.into_response(),
        InspectorAccess::Basic { user, password } => {
            if basic_credentials_match(req.headers(), user, password) {
                next.run(req).await
            } else {
                let mut res = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
                res
            }
        }
    }
}

/// Whether `Authorization: Basic base64(user:password)` carries exactly these credentials.
pub fn basic_credentials_match(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let (given_user, given_password) = (&decoded[..colon], &decoded[colon + 1..]);
    // Both halves are always compared, so the time taken does not tell which one was wrong.
    let user_ok = constant_time_eq(given_user, user.as_bytes());
    let password_ok = constant_time_eq(given_password, password.as_bytes());
    user_ok & password_ok
}

/// Byte equality whose time depends on the lengths only, not on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(raw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn basic_credentials() {
        assert!(basic_credentials_match(
            &with_auth(&basic("ops:s3:cret")),
            "ops",
            "s3:cret"
        ));
        assert!(basic_credentials_match(
            &with_auth(&basic("ops:pw").replace("Basic", "basic")),
            "ops",
            "pw"
        ));
        assert!(!basic_credentials_match(
            &with_auth(&basic("ops:pw2")),
            "ops",
            "pw"
        ));
        assert!(!basic_credentials_match(
            &with_auth(&basic("op:pw")),
            "ops",
            "pw"
        ));
        assert!(!basic_credentials_match(
            &with_auth(&basic("opspw")),
            "ops",
            "pw"
        ));
        assert!(!basic_credentials_match(
            &with_auth("Bearer abc"),
            "ops",
            "pw"
        ));
        assert!(!basic_credentials_match(
            &with_auth("Basic !!!"),
            "ops",
            "pw"
        ));
        assert!(!basic_credentials_match(&HeaderMap::new(), "ops", "pw"));
    }
}
