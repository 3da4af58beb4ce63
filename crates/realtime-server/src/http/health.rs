//! `GET /healthcheck` (process liveness, no database) and `GET /api/tenants/:id/health`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::app::AppState;
use crate::http::admin::authorize;
use crate::http::admin_auth::AdminAccess;
use crate::http::response::{self, ApiError};
use realtime_cdc::tenant_admin;

/// `GET /healthcheck`: 200 `ok`.
pub async fn healthcheck() -> Response {
    response::text(StatusCode::OK, "ok")
}

/// `GET /api/tenants/:tenant_id/health`: 200 with the health body whenever the tenant exists.
///
/// With the tenant's replication connection up, the tenant is healthy and connected. Without
/// it, a tenant with connected clients is unhealthy, and one without is healthy once its
/// tenant migrations are all applied (otherwise they are started in the background). A tenant
/// with no database extension has nothing to migrate. The route never opens a database
/// connection itself.
pub async fn tenant_health(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, AdminAccess::Read)?;
    let tenant = match state.tenants.get(&tenant_id).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            tracing::error!(
                error_code = "TenantNotFound",
                "TenantNotFound: Tenant not found"
            );
            return Err(ApiError::NotFound);
        }
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    };
    let connected = state.connected_count(&tenant_id);
    // The tenant's replication connection (broadcast from the database) stands for upstream's
    // registered database connection.
    let replication = state.gateway.replication_ready(&tenant_id);
    let healthy = if replication {
        true
    } else if connected > 0 {
        false
    } else {
        let migrated = tenant.migrations_ran >= tenant_admin::TENANT_MIGRATIONS
            || tenant.cdc_extension().is_none();
        if !migrated {
            state.migrate_in_background(&tenant);
        }
        migrated
    };
    let body = json!({"data": {
        "healthy": healthy,
        "db_connected": replication,
        "replication_connected": replication,
        "connected_cluster": connected,
        "region": state.config.region,
        "node": state.config.node_name,
    }});
    Ok(response::json(StatusCode::OK, &body))
}
