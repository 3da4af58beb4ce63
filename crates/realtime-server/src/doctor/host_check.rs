//! `--host`: which tenant a Host header reaches, by the gateway's own resolution (first label
//! of the host, then `REALTIME_DEFAULT_TENANT`), and why.

use realtime_tenants::external_id_from_host;

use super::report::{Check, Report};
use crate::gateway::tenant_resolve::{resolve, StaticTenants};
use crate::gateway::TenantView;

/// A tenant as far as resolution cares.
pub struct KnownTenant {
    /// External id.
    pub external_id: String,
    /// `suspend`.
    pub suspend: bool,
}

/// Resolves `host` among `tenants` with `default_tenant`, as the gateway does.
pub async fn check(
    host: &str,
    tenants: &[KnownTenant],
    default_tenant: Option<&str>,
    standalone: bool,
    report: &mut Report,
) {
    let dir = StaticTenants::default();
    for t in tenants {
        let mut view = TenantView::new(&t.external_id, "");
        view.suspend = t.suspend;
        dir.put(view);
    }
    let label = external_id_from_host(host);
    let id = "host";
    let resolved = match resolve(&dir, host, default_tenant).await {
        Ok(r) => r,
        Err(e) => {
            report.push(Check::fail(
                id,
                e.to_string(),
                "Check the registry (see above)",
            ));
            return;
        }
    };
    let known: Vec<&str> = tenants.iter().map(|t| t.external_id.as_str()).collect();
    match resolved {
        Some(t) if t.external_id == label => {
            let why = format!(
                "Host `{host}` resolves to tenant `{label}`: the tenant is the first label of the host, lowercased, without the port"
            );
            if t.suspend {
                report.push(Check::warn(
                    id,
                    format!("{why}; the tenant is suspended, so its sockets are refused"),
                    format!("Unsuspend it: PUT /api/tenants/{label} with \"suspend\": false"),
                ));
            } else {
                report.push(Check::ok(id, why));
            }
        }
        Some(t) => {
            let reason = if standalone {
                "standalone mode sends every Host to its one tenant"
            } else {
                "REALTIME_DEFAULT_TENANT sends unknown hosts there"
            };
            report.push(Check::ok(
                id,
                format!(
                    "Host `{host}` names tenant `{label}` (its first label), which does not exist; it resolves to `{}` because {reason}",
                    t.external_id
                ),
            ));
        }
        None => report.push(Check::fail(
            id,
            format!(
                "Host `{host}` names tenant `{label}` (the first label of the host), which is not in the registry: its sockets are refused with TenantNotFound"
            ),
            format!(
                "Connect with a Host whose first label is a tenant's external id ({}), create tenant `{label}` (POST /api/tenants), or set REALTIME_DEFAULT_TENANT",
                if known.is_empty() {
                    "there are none yet".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )),
    }
}
