//! Body parsing before routing, as Plug.Parsers does upstream: bodies are limited to 8 MB
//! (413 beyond), and a JSON body that does not parse is refused with 400 whatever the route.
//! The parsed document is kept in the request extensions as [`JsonBody`] so handlers do not
//! parse it twice; the raw bytes stay available as the body.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use crate::http::response;

/// Upstream's parser limit (`length: 8_000_000`).
pub const MAX_BODY_BYTES: usize = 8_000_000;

/// A request body with a JSON content type, parsed. Empty bodies parse to `{}`.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Value);

/// Whether a content type is JSON (`application/json`, `application/*+json`).
pub fn is_json_content_type(value: &str) -> bool {
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The middleware.
pub async fn layer(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_BODY_BYTES as u64 {
            return response::text(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        }
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_content_type);
    let (mut parts, body) = req.into_parts();
    // A declared oversize was refused above; an error here is a chunked body over the limit
    // (or a client that vanished mid-body, which gets no answer anyway).
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return response::text(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    if json {
        let value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => v,
                Err(_) => return response::text(StatusCode::BAD_REQUEST, "Bad Request"),
            }
        };
        parts.extensions.insert(JsonBody(value));
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::is_json_content_type;

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("Application/JSON"));
        assert!(is_json_content_type("application/vnd.api+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/octet-stream"));
    }
}
