//! `realtime doctor`: checks what the server would run on (configuration, keys, registry,
//! each tenant's secrets and database, optionally which tenant a Host reaches) and explains
//! each problem with its fix. The SQL lives with the rooms that own it:
//! `realtime_tenants::registry::diagnosis` and `realtime_cdc::tenant_diagnosis`.
//!
//! Layout: [`report`] (the model), [`config_checks`], [`registry_checks`], [`secret_checks`],
//! [`tenant_checks`] (the tenant database), [`host_check`], [`render`] (person and JSON).

pub mod config_checks;
pub mod host_check;
pub mod registry_checks;
pub mod render;
pub mod report;
pub mod secret_checks;
pub mod tenant_checks;

use std::time::Duration;

use realtime_tenants::registry::diagnosis::Limits;

use crate::config::Env;
use host_check::KnownTenant;
pub use report::{Check, Report, Status};

/// Limit for reaching a database (so an unreachable host is reported, not waited for).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit for each statement.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to check besides the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--host`: a Host header to resolve.
    pub host: Option<String>,
    /// `--json`: print JSON.
    pub json: bool,
}

/// Runs every check against the environment `env`.
pub async fn run(env: &Env, options: &Options) -> Report {
    let mut report = Report::default();
    let outcome = config_checks::check(env, &mut report);
    let config = &outcome.config;
    // `None` when the tenants could not be read.
    let mut known: Option<Vec<KnownTenant>> = None;
    if let Some(target) = &config.redis {
        report.push(match realtime_cluster::probe(target, CONNECT_TIMEOUT).await {
            Ok(version) => Check::ok(
                "cluster",
                format!(
                    "REDIS_URL: {} answers (Redis {version}); nodes with it act as one server",
                    target.shown()
                ),
            ),
            Err(e) => Check::fail(
                "cluster",
                format!("REDIS_URL: cannot reach {}: {e}", target.shown()),
                "Start Redis or fix REDIS_URL (redis://host:port/db); until it answers each node serves only its own sockets",
            ),
        });
    }
    if config.standalone {
        known = Some(vec![KnownTenant {
            external_id: config.self_host_tenant_name.clone(),
            suspend: false,
        }]);
    } else if !outcome.bad_db_variables.is_empty() {
        report.push(Check::fail(
            "registry",
            format!(
                "not checked: {} must be fixed first",
                outcome.bad_db_variables.join(", ")
            ),
            "Fix the variables above, then run `realtime doctor` again",
        ));
    } else {
        let limits = Limits {
            connect: CONNECT_TIMEOUT,
            statement: STATEMENT_TIMEOUT,
        };
        if let Some(registry) = registry_checks::check(config, limits, &mut report).await {
            for tenant in &registry.tenants {
                match &outcome.crypto {
                    Some(crypto) => {
                        secret_checks::check(&registry.schema, tenant, crypto, &mut report);
                        tenant_checks::database(
                            tenant,
                            crypto,
                            CONNECT_TIMEOUT,
                            STATEMENT_TIMEOUT,
                            &mut report,
                        )
                        .await;
                    }
                    None => report.push(Check::fail(
                        format!("tenant.{}.secrets", tenant.external_id),
                        "not checked: the encryption keys are unusable",
                        "Fix DB_ENC_KEY as said above, then run `realtime doctor` again",
                    )),
                }
            }
            known = Some(
                registry
                    .tenants
                    .iter()
                    .map(|t| KnownTenant {
                        external_id: t.external_id.clone(),
                        suspend: t.suspend,
                    })
                    .collect(),
            );
        }
    }
    match (&options.host, &known) {
        (Some(host), Some(known)) => {
            host_check::check(
                host,
                known,
                config.default_tenant.as_deref(),
                config.standalone,
                &mut report,
            )
            .await
        }
        (Some(host), None) => report.push(Check::fail(
            "host",
            format!("Host `{host}` not resolved: the tenants could not be read"),
            "Fix the registry problems above, then run `realtime doctor --host` again",
        )),
        (None, _) => {}
    }
    report
}

/// The report rendered as asked.
pub fn render(report: &Report, options: &Options) -> String {
    if options.json {
        render::json(report)
    } else {
        render::human(report)
    }
}
