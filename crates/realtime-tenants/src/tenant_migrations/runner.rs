//! Applies the pending versions, then the final functions and grants, in one transaction.

use tokio_postgres::Client;

use super::catalog::{FINAL_GRANTS, FUNCTIONS, MIGRATIONS};
use super::error::TenantMigrationError;
use super::preflight::{missing_roles, REQUIRED_ROLES};
use super::{TenantMigrationReport, TENANT_MIGRATION_COUNT};

/// Serialises runners of this server across processes ("realtime" in ASCII). The Elixir server
/// does not take it; the table lock below is what both agree on.
const MIGRATION_LOCK_KEY: i64 = 0x7265_616c_7469_6d65;

/// Creates the schema and the ledger when missing, then takes the lock Ecto's migrator takes,
/// so this server and the Elixir one never migrate the same database at once. The existence
/// checks come first because `CREATE ... IF NOT EXISTS` still demands the CREATE privilege.
const LEDGER_SQL: &str = "
do $$
begin
    if to_regnamespace('realtime') is null then
        create schema realtime;
    end if;
end $$;
do $$
begin
    if to_regclass('realtime.schema_migrations') is null then
        create table realtime.schema_migrations (
            version bigint primary key,
            inserted_at timestamp(0) without time zone default now()
        );
    end if;
end $$;
lock table realtime.schema_migrations in share update exclusive mode;
set local client_min_messages = warning;
";

/// Ecto stores the UTC wall clock truncated to seconds.
const RECORD_VERSION_SQL: &str = "insert into realtime.schema_migrations (version, inserted_at) \
     values ($1, date_trunc('second', now() at time zone 'utc'))";

/// Applies every pending version up to `last_version` (all of them with `None`).
pub(super) async fn migrate(
    client: &Client,
    last_version: Option<i64>,
) -> Result<TenantMigrationReport, TenantMigrationError> {
    client
        .batch_execute("begin")
        .await
        .map_err(TenantMigrationError::database(
            "starting the migration transaction",
        ))?;
    match apply_pending(client, last_version).await {
        Ok(report) => {
            client
                .batch_execute("commit")
                .await
                .map_err(TenantMigrationError::database("committing the migrations"))?;
            if report.applied.is_empty() {
                tracing::debug!("realtime schema is up to date");
            } else {
                tracing::info!(
                    applied = report.applied.len(),
                    total = report.total,
                    "realtime schema migrated"
                );
            }
            Ok(report)
        }
        Err(error) => {
            // The connection may be gone; the server rolls back on its own then.
            if let Err(rollback) = client.batch_execute("rollback").await {
                tracing::debug!(error = %rollback, "rollback after failed migration");
            }
            // The caller reports the failure with the tenant it concerns.
            tracing::debug!(error = %error, "realtime schema migration failed");
            Err(error)
        }
    }
}

async fn apply_pending(
    client: &Client,
    last_version: Option<i64>,
) -> Result<TenantMigrationReport, TenantMigrationError> {
    client
        .execute("select pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(TenantMigrationError::database("taking the migration lock"))?;
    client
        .batch_execute(LEDGER_SQL)
        .await
        .map_err(TenantMigrationError::database(
            "preparing realtime.schema_migrations",
        ))?;
    let wanted = |version: i64| last_version.is_none_or(|last| version <= last);
    let recorded: Vec<i64> = client
        .query("select version from realtime.schema_migrations", &[])
        .await
        .map_err(TenantMigrationError::database(
            "reading realtime.schema_migrations",
        ))?
        .iter()
        .map(|row| row.get(0))
        .collect();

    let pending = MIGRATIONS
        .iter()
        .filter(|m| wanted(m.version) && !recorded.contains(&m.version));
    if pending.clone().next().is_some() {
        check_roles(client).await?;
    }

    let mut applied = Vec::new();
    for migration in pending {
        let failed = |source| TenantMigrationError::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        for script in migration.sql {
            client.batch_execute(script).await.map_err(failed)?;
        }
        client
            .execute(RECORD_VERSION_SQL, &[&migration.version])
            .await
            .map_err(failed)?;
        tracing::debug!(
            version = migration.version,
            name = migration.name,
            "tenant migration applied"
        );
        applied.push(migration.version);
    }

    // Final functions and grants once the run completes the schema; a run that stops early
    // leaves functions as its versions left them.
    let complete = MIGRATIONS
        .iter()
        .all(|m| recorded.contains(&m.version) || applied.contains(&m.version));
    if !applied.is_empty() && complete {
        for script in FUNCTIONS.iter().chain(std::iter::once(&FINAL_GRANTS)) {
            client
                .batch_execute(script)
                .await
                .map_err(|source| TenantMigrationError::FinalState { source })?;
        }
    }

    Ok(TenantMigrationReport {
        applied,
        total: TENANT_MIGRATION_COUNT,
    })
}

/// The scripts grant to and revoke from these roles by name; a missing one would fail deep in
/// a version with a bare "role does not exist". supabase_realtime_admin is created by the
/// scripts when the user may create roles.
async fn check_roles(client: &Client) -> Result<(), TenantMigrationError> {
    let mut roles = missing_roles(client, &REQUIRED_ROLES).await?;
    if roles.iter().any(|r| r == "supabase_realtime_admin") {
        let may_create: bool = client
            .query_one(
                "select rolsuper or rolcreaterole from pg_catalog.pg_roles where rolname = current_user",
                &[],
            )
            .await
            .map_err(TenantMigrationError::database("reading the connection role"))?
            .get(0);
        if may_create {
            roles.retain(|r| r != "supabase_realtime_admin");
        }
    }
    if roles.is_empty() {
        Ok(())
    } else {
        Err(TenantMigrationError::MissingRoles { roles })
    }
}
