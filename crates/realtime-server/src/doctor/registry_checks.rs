//! Registry checks: reachability, the registry schema, `schema_migrations` (judged by the
//! migration runner's rules) and the tenant list.

use realtime_tenants::registry::diagnosis::{self, Limits, SchemaMigrations};
use realtime_tenants::registry_migrations::{search_path_schema, MIGRATIONS};
use realtime_tenants::{RegistryError, Tenant};

use super::report::{Check, Report, Status};
use crate::config::Config;
use crate::startup;

/// What the registry checks leave for the tenant checks.
pub struct RegistryOutcome {
    /// The registry schema (for the statements the fixes print).
    pub schema: String,
    /// The tenants.
    pub tenants: Vec<Tenant>,
}

/// Inspects the registry; `None` when the tenants could not be read.
pub async fn check(
    config: &Config,
    limits: Limits,
    report: &mut Report,
) -> Option<RegistryOutcome> {
    let registry_config = startup::registry_config(config);
    // Every statement has its own limit; this bounds the whole inspection as well.
    let bound = limits.connect + limits.statement * 4;
    let diag = match tokio::time::timeout(bound, diagnosis::diagnose(&registry_config, limits))
        .await
    {
        Err(_) => {
            report.push(Check::fail(
                "registry",
                format!(
                    "cannot reach {}:{}: no answer within {}s",
                    config.db.host,
                    config.db.port,
                    bound.as_secs()
                ),
                "Check that the registry database is up and reachable from this container",
            ));
            return None;
        }
        Ok(Ok(d)) => d,
        Ok(Err(RegistryError::Connect { target, reason })) => {
            report.push(Check::fail(
                "registry",
                format!("cannot reach {target}: {reason}"),
                "Check DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD and DB_SSL, and that the database accepts connections from this container",
            ));
            return None;
        }
        Ok(Err(e)) => {
            report.push(Check::from_error_text(
                "registry",
                Status::Fail,
                &e.to_string(),
            ));
            return None;
        }
    };
    report.push(Check::ok(
        "registry",
        format!(
            "reached {} as {}{}",
            diag.target,
            config.db.user,
            diag.schema
                .as_deref()
                .map(|s| format!(", registry schema `{s}`"))
                .unwrap_or_default()
        ),
    ));
    let schema = match diag.schema.clone() {
        Some(s) => s,
        None => {
            let named = config
                .db
                .after_connect_query
                .as_deref()
                .and_then(search_path_schema);
            match named {
                Some(s) => {
                    report.push(Check::warn(
                        "registry.schema",
                        format!("schema `{s}` named by DB_AFTER_CONNECT_QUERY does not exist yet"),
                        "Nothing to do: the server creates it at start (or run `realtime migrate`)",
                    ));
                    s
                }
                None => {
                    report.push(Check::fail(
                        "registry.schema",
                        "no schema of the search_path exists, so the registry tables have nowhere to go",
                        "Create the schema (`CREATE SCHEMA _realtime;`) and set DB_AFTER_CONNECT_QUERY='SET search_path TO _realtime'",
                    ));
                    return None;
                }
            }
        }
    };
    let total = MIGRATIONS.len();
    let migrated = match &diag.schema_migrations {
        SchemaMigrations::Missing => {
            report.push(Check::warn(
                "registry.schema_migrations",
                format!(
                    "{schema}.schema_migrations does not exist: the registry has not been migrated"
                ),
                "Run `realtime migrate` (the server also migrates at start)",
            ));
            false
        }
        SchemaMigrations::Incompatible(text) => {
            report.push(Check::from_error_text(
                "registry.schema_migrations",
                Status::Fail,
                text,
            ));
            false
        }
        SchemaMigrations::Unreadable(text) => {
            report.push(Check::fail(
                "registry.schema_migrations",
                format!("cannot read {schema}.schema_migrations: {text}"),
                "Check that DB_USER may read the registry schema",
            ));
            false
        }
        SchemaMigrations::Usable {
            shape,
            applied,
            pending,
        } => {
            if !shape.has_inserted_at {
                report.push(Check::warn(
                    "registry.schema_migrations.inserted_at",
                    format!("{schema}.schema_migrations has no inserted_at column (it was made by another tool)"),
                    "Nothing to do: the server adds the column at start (or run `realtime migrate`)",
                ));
            }
            if let Some(first) = pending.first() {
                report.push(Check::warn(
                    "registry.schema_migrations",
                    format!(
                        "{applied} of {total} registry migrations applied; {} pending, from {first}",
                        pending.len()
                    ),
                    "Run `realtime migrate` (the server also applies them at start)",
                ));
                false
            } else {
                report.push(Check::ok(
                    "registry.schema_migrations",
                    format!(
                        "{schema}.schema_migrations (version {}): {applied} of {total} migrations applied",
                        shape.version_type
                    ),
                ));
                true
            }
        }
    };
    match diag.tenants {
        Ok(tenants) => {
            let names: Vec<&str> = tenants.iter().map(|t| t.external_id.as_str()).collect();
            if tenants.is_empty() {
                report.push(Check::warn(
                    "registry.tenants",
                    "the registry holds no tenant: every socket is refused (TenantNotFound)",
                    "Create a tenant (POST /api/tenants) or set SEED_SELF_HOST=true",
                ));
            } else {
                report.push(Check::ok(
                    "registry.tenants",
                    format!("{} tenant(s): {}", tenants.len(), names.join(", ")),
                ));
            }
            Some(RegistryOutcome { schema, tenants })
        }
        Err(e) => {
            report.push(Check::fail(
                "registry.tenants",
                format!("cannot read the tenants: {e}"),
                if migrated {
                    "Check that DB_USER may read the registry tables"
                } else {
                    "Fix schema_migrations as said above, then run `realtime migrate`"
                },
            ));
            None
        }
    }
}
