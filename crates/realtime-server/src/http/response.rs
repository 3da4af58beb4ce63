//! Response helpers and the error type every HTTP handler returns: JSON bodies with
//! `application/json; charset=utf-8`, upstream's status codes and bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// The content type of every JSON response.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A JSON response.
pub fn json(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    res
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// An empty response.
pub fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// Why a request failed, rendered as upstream renders it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `Bad Request` (missing `tenant` wrapper, unparsable body).
    #[error("bad request")]
    BadRequest,
    /// 403 with an empty body (admin or metrics auth failed).
    #[error("forbidden")]
    Forbidden,
    /// 404 `{"message":"not found"}`.
    #[error("not found")]
    NotFound,
    /// 406: the Accept header does not allow JSON.
    #[error("not acceptable")]
    NotAcceptable,
    /// 422 with the given `{"errors": …}` body.
    #[error("unprocessable entity: {0}")]
    Unprocessable(Value),
    /// 500 `Internal Server Error`; the detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest => text(StatusCode::BAD_REQUEST, "Bad Request"),
            ApiError::Forbidden => empty(StatusCode::FORBIDDEN),
            ApiError::NotFound => json(StatusCode::NOT_FOUND, &json!({"message": "not found"})),
            ApiError::NotAcceptable => text(StatusCode::NOT_ACCEPTABLE, "Not Acceptable"),
            ApiError::Unprocessable(body) => json(StatusCode::UNPROCESSABLE_ENTITY, &body),
            ApiError::Internal(detail) => {
                tracing::error!(
                    error_code = "UnknownErrorOnController",
                    "UnknownErrorOnController: {detail}"
                );
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}
