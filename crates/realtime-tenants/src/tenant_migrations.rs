//! Installs and upgrades the `realtime` schema in a tenant database (SQL in `migrations/tenant/`).
//!
//! The database ends in the state upstream's Elixir server leaves it in, with upstream's 81
//! version numbers in `realtime.schema_migrations`, so either server can take over from the
//! other.
//!
//! How a run works ([`migrate`]):
//! - One transaction holds the whole run: an advisory lock (two of our servers), then
//!   `LOCK TABLE realtime.schema_migrations IN SHARE UPDATE EXCLUSIVE MODE` (the lock Ecto's
//!   migrator takes, so the Elixir server waits too). The schema and the ledger are created
//!   when missing.
//! - Every version not yet recorded runs in upstream's order, then its row is inserted. A fresh
//!   database therefore goes through all 81 versions; there is no separate fresh-install script.
//! - Each version file (`migrations/tenant/<version>_<name>.sql`) carries that version's
//!   structural change (types, tables, columns, indexes, grants, drops) and guards it so it
//!   also runs on objects that already exist, e.g. a schema migrated by the Elixir server.
//! - Function bodies are not replayed version by version: the final definition of every
//!   function (`migrations/tenant/functions/`) and the final owners and grants
//!   (`final_grants.sql`) are installed after the pending versions, inside the same
//!   transaction. Versions that only redefined a function are therefore comment-only files.
//!   Two versions install the function their own objects depend on first (the filter trigger,
//!   the generated `claims_role` column).
//! - Any error rolls the whole run back, so a database is never left between versions.
//!
//! The partition helpers keep `realtime.messages` covered for yesterday through three days
//! ahead and drop partitions older than three days (the janitor's 72-hour rule).

mod catalog;
mod error;
mod partitions;
mod preflight;
mod runner;

use chrono::NaiveDate;
use tokio_postgres::Client;

pub use error::TenantMigrationError;
pub use preflight::REQUIRED_ROLES;

/// Number of upstream tenant migration versions (20211116024918 … 20260709120000).
pub const TENANT_MIGRATION_COUNT: i32 = 81;

/// What a [`migrate`] run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMigrationReport {
    /// Versions applied by this run, in order; empty when the schema was up to date.
    pub applied: Vec<i64>,
    /// Number of known versions ([`TENANT_MIGRATION_COUNT`]).
    pub total: i32,
}

/// Brings the `realtime` schema to upstream's final state, applying every version not yet in
/// `realtime.schema_migrations`. All-or-nothing; safe to call concurrently from several servers.
pub async fn migrate(client: &Client) -> Result<TenantMigrationReport, TenantMigrationError> {
    runner::migrate(client, None).await
}

/// Like [`migrate`], but applies the pending versions up to and including `last_version` only.
/// Function bodies are installed in their final form by the run that completes the schema, so
/// a schema stopped earlier has only the functions its own objects need. Meant for rehearsing
/// upgrades from older schemas (tests, tooling), not for serving.
pub async fn migrate_until(
    client: &Client,
    last_version: i64,
) -> Result<TenantMigrationReport, TenantMigrationError> {
    runner::migrate(client, Some(last_version)).await
}

/// Checks, without changing anything, that the database can host Realtime: `wal_level` is
/// `logical`, the roles the schema refers to exist, the connection user has the privileges
/// Realtime needs (a superuser always has), and `publication` exists.
pub async fn preflight(client: &Client, publication: &str) -> Result<(), TenantMigrationError> {
    preflight::preflight(client, publication).await
}

/// Creates `realtime.messages_YYYY_MM_DD` for `today - 1` through `today + 3` (each range is
/// `[day, day + 1)`), owned by `supabase_realtime_admin`. Existing partitions are kept.
pub async fn create_partitions(
    client: &Client,
    today: NaiveDate,
) -> Result<(), TenantMigrationError> {
    partitions::create_partitions(client, today).await
}

/// Drops the `realtime.messages` partitions whose day is before `today - 3` and returns their
/// names, oldest first.
pub async fn drop_old_partitions(
    client: &Client,
    today: NaiveDate,
) -> Result<Vec<String>, TenantMigrationError> {
    partitions::drop_old_partitions(client, today).await
}

/// Versions in upstream order, for callers that compare ledgers.
pub fn versions() -> impl Iterator<Item = i64> {
    catalog::MIGRATIONS.iter().map(|m| m.version)
}

/// Roles named in `roles` that do not exist in the cluster (used by [`preflight`]).
pub async fn missing_roles(
    client: &Client,
    roles: &[&str],
) -> Result<Vec<String>, TenantMigrationError> {
    preflight::missing_roles(client, roles).await
}
