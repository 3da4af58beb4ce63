//! The admin gate in front of every `/api/tenants…` route: Accept check (406), then the admin
//! bearer token (403), then — for changes — the `service_role` rule (403).

use axum::http::HeaderMap;

use crate::app::AppState;
use crate::http::accept::accepts_json;
use crate::http::admin_auth::{access, bearer_token, now_secs, verify, AdminAccess};
use crate::http::response::ApiError;

/// Checks the request may do `need` on the admin API.
pub fn authorize(state: &AppState, headers: &HeaderMap, need: AdminAccess) -> Result<(), ApiError> {
    if !accepts_json(headers) {
        return Err(ApiError::NotAcceptable);
    }
    let config = &state.config;
    let claims = bearer_token(headers)
        .and_then(|token| {
            verify(
                &token,
                &config.api_secrets(),
                &config.api_token_blocklist,
                &config.jwt_claim_validators,
                now_secs(),
            )
        })
        .map_err(|e| {
            tracing::debug!("admin token refused: {e}");
            ApiError::Forbidden
        })?;
    if need == AdminAccess::Write && access(&claims) != AdminAccess::Write {
        tracing::debug!("admin token refused: changes need role service_role");
        return Err(ApiError::Forbidden);
    }
    Ok(())
}
