//! Admin tenant routes (§5.3/§5.4): list, create/update, show, delete, reload, shutdown.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::http::admin::authorize;
use crate::http::admin_auth::AdminAccess;
use crate::http::body::JsonBody;
use crate::http::response::{self, ApiError};
use realtime_cdc::tenant_admin;
use realtime_tenants::{Tenant, UpsertError};

/// `GET /api/tenants`
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers, AdminAccess::Read)?;
    let tenants = state.registry.list().await.map_err(internal)?;
    let data: Vec<Value> = tenants.iter().map(Tenant::to_api_json).collect();
    Ok(response::json(StatusCode::OK, &json!({ "data": data })))
}

/// `GET /api/tenants/:tenant_id`
pub async fn show(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, AdminAccess::Read)?;
    let tenant = find_fresh(&state, &tenant_id).await?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "data": tenant.to_api_json() }),
    ))
}

/// `POST /api/tenants`: upsert by `tenant.external_id`.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Option<Extension<JsonBody>>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, AdminAccess::Write)?;
    let params = tenant_params(body)?;
    let external_id =
        realtime_tenants::upsert::external_id_for_create(&params).map_err(upsert_error)?;
    upsert(&state, &external_id, &params).await
}

/// `PUT|PATCH /api/tenants/:tenant_id`: upsert by path id.
pub async fn update(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Option<Extension<JsonBody>>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, AdminAccess::Write)?;
    let params = tenant_params(body)?;
    upsert(&state, &tenant_id, &params).await
}

/// `DELETE /api/tenants/:tenant_id`: 204 whether or not it existed.
pub async fn delete(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, AdminAccess::Write)?;
    let Some(tenant) = state.registry.get(&tenant_id).await.map_err(internal)? else {
        return Ok(response::empty(StatusCode::NO_CONTENT));
    };
    state.disconnect_tenant(&tenant_id).await;
    state.registry.delete(&tenant_id).await.map_err(internal)?;
    state.tenants.invalidate(&tenant_id);
    state.stop_tenant_work(&tenant_id).await;
    // The row is gone; teardown problems are logged, the answer stays 204.
    let teardown = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tenant_admin::drop_replication_slot(&state.crypto, &tenant),
    )
    .await;
    let failure = match teardown {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".to_string()),
    };
    if let Some(reason) = failure {
        tracing::error!(
            external_id = %tenant_id,
            project = %tenant_id,
            error_code = "UnableToDeleteTenant",
            "UnableToDeleteTenant: {reason}"
        );
    }
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `POST /api/tenants/:tenant_id/reload`: stop the tenant's database work, drop its sockets.
pub async fn reload(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, AdminAccess::Write)?;
    find_fresh(&state, &tenant_id).await?;
    state.tenants.invalidate(&tenant_id);
    state.stop_tenant_work(&tenant_id).await;
    state.disconnect_tenant(&tenant_id).await;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `POST /api/tenants/:tenant_id/shutdown`: stop the tenant's database connections (they
/// reopen on demand; sockets stay).
pub async fn shutdown(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, AdminAccess::Write)?;
    find_fresh(&state, &tenant_id).await?;
    state.stop_tenant_work(&tenant_id).await;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// The `tenant` object of the body; a missing wrapper is a 400 (upstream's action clause).
fn tenant_params(body: Option<Extension<JsonBody>>) -> Result<Value, ApiError> {
    match body {
        Some(Extension(JsonBody(Value::Object(mut map)))) => match map.remove("tenant") {
            Some(Value::Object(t)) => Ok(Value::Object(t)),
            _ => Err(ApiError::BadRequest),
        },
        _ => Err(ApiError::BadRequest),
    }
}

/// Reads the tenant from the registry (not the cache), 404 when absent.
async fn find_fresh(state: &AppState, tenant_id: &str) -> Result<Tenant, ApiError> {
    match state.registry.get(tenant_id).await.map_err(internal)? {
        Some(t) => Ok(t),
        None => Err(not_found()),
    }
}

fn not_found() -> ApiError {
    tracing::error!(
        error_code = "TenantNotFound",
        "TenantNotFound: Tenant not found"
    );
    ApiError::NotFound
}

async fn upsert(state: &AppState, external_id: &str, params: &Value) -> Result<Response, ApiError> {
    let before = state.registry.get(external_id).await.map_err(internal)?;
    let upserted = state
        .registry
        .upsert(external_id, params, &state.tenant_defaults(), &state.crypto)
        .await
        .map_err(upsert_error)?;
    let mut tenant = upserted.tenant;

    if upserted.created {
        match tenant_admin::migrate(&state.registry, &state.crypto, &tenant).await {
            Ok(applied) => tenant.migrations_ran = applied,
            Err(tenant_admin::TenantAdminError::NoDatabase) => {}
            Err(e) => tracing::error!(
                external_id = %external_id,
                project = %external_id,
                error_code = "MigrationsFailedToRun",
                "{e}"
            ),
        }
    } else if let Some(before) = &before {
        if needs_restart(before, &tenant) {
            // Database settings or the tokens subscriptions were checked with changed.
            state.tenants.invalidate(external_id);
            state.stop_tenant_work(external_id).await;
        }
        if needs_disconnect(before, &tenant) {
            state.disconnect_tenant(external_id).await;
        }
    }

    let location = format!("/api/tenants/{}", tenant.id);
    let body = json!({ "data": tenant.to_api_json() });
    state.tenants.put(tenant);

    let status = if upserted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut res = response::json(status, &body);
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Whether an update invalidates the tenant's database work: its extensions (connection
/// settings), the keys its subscriptions' tokens were verified with, or its suspension.
fn needs_restart(before: &Tenant, after: &Tenant) -> bool {
    before.suspend != after.suspend
        || before.jwt_secret != after.jwt_secret
        || before.jwt_jwks != after.jwt_jwks
        || extensions_changed(before, after)
}

fn extensions_changed(before: &Tenant, after: &Tenant) -> bool {
    before.extensions.len() != after.extensions.len()
        || before
            .extensions
            .iter()
            .zip(&after.extensions)
            .any(|(a, b)| a.r#type != b.r#type || a.settings != b.settings)
}

/// Whether an update changes what every open socket of the tenant was admitted under.
fn needs_disconnect(before: &Tenant, after: &Tenant) -> bool {
    before.suspend != after.suspend
        || before.jwt_secret != after.jwt_secret
        || before.jwt_jwks != after.jwt_jwks
        || before.private_only != after.private_only
        || extensions_changed(before, after)
}

fn upsert_error(e: UpsertError) -> ApiError {
    match e {
        UpsertError::Invalid(body) => {
            tracing::error!(
                error_code = "UnprocessableEntity",
                "UnprocessableEntity: {}",
                body.get("errors").unwrap_or(&body)
            );
            ApiError::Unprocessable(body)
        }
        other => internal(other),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}
