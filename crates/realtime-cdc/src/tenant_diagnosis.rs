//! Read-only inspection of a tenant database for `realtime doctor`: WAL settings and
//! replication headroom, the slots of the database and their lag, the publication's tables
//! and how row level security treats `authenticated` on each, the roles the `realtime` schema
//! needs and the connection user's privileges. Returns plain data; judging is the caller's.

use std::time::Duration;

use realtime_pg::connect::{connect, ConnectOptions};
use realtime_tenants::tenant_migrations::{self, TenantMigrationError, REQUIRED_ROLES};
use realtime_tenants::CdcSettings;
use tokio_postgres::Client;

use crate::rls_policy::{self, AllReason, Rule};

/// Application name of the doctor's connections.
const APPLICATION_NAME: &str = "realtime_doctor";

/// The role whose view of published tables is judged (signed-in users).
pub const SUBSCRIBER_ROLE: &str = "authenticated";

/// Why a tenant database could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum TenantDiagnosisError {
    /// Connecting failed.
    #[error("cannot reach {target}: {reason}")]
    Connect {
        /// `host:port/dbname`.
        target: String,
        /// The connection error (never the password).
        reason: String,
    },
    /// A query failed.
    #[error("{context}: {reason}")]
    Query {
        /// What was being read.
        context: &'static str,
        /// The database error.
        reason: String,
    },
}

/// One replication slot of the tenant's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// `slot_name`.
    pub name: String,
    /// Output plugin (`pgoutput`, `wal2json`), `None` for physical slots.
    pub plugin: Option<String>,
    /// Whether a walsender holds it.
    pub active: bool,
    /// Bytes between the slot's confirmed position and the current WAL position.
    pub lag_bytes: Option<i64>,
    /// Bytes of WAL the slot keeps on disk (from its `restart_lsn`).
    pub retained_bytes: Option<i64>,
    /// `wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub wal_status: Option<String>,
}

/// How `authenticated` sees a published table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Row level security is off: every subscriber sees every row.
    RlsOff,
    /// Every row, for another reason (owner, BYPASSRLS, a `USING (true)` policy).
    AllRows,
    /// Rows the policies allow.
    ByPolicy,
    /// No permissive SELECT or ALL policy applies: every change is hidden.
    NoPolicy,
    /// The role does not exist.
    RoleMissing,
}

/// A table of the publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTable {
    /// Schema.
    pub schema: String,
    /// Table.
    pub name: String,
    /// How [`SUBSCRIBER_ROLE`] sees its rows.
    pub visibility: Visibility,
}

/// The publication Postgres Changes reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationInfo {
    /// Its name.
    pub name: String,
    /// `FOR ALL TABLES`.
    pub all_tables: bool,
    /// Its tables, by schema and name.
    pub tables: Vec<PublishedTable>,
}

/// What a tenant database looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDbDiagnosis {
    /// `host:port/dbname`.
    pub target: String,
    /// `wal_level`.
    pub wal_level: String,
    /// `max_replication_slots`.
    pub max_replication_slots: i64,
    /// Slots in the whole cluster.
    pub slots_used: i64,
    /// `max_wal_senders`.
    pub max_wal_senders: i64,
    /// Walsenders running.
    pub wal_senders_used: i64,
    /// The slots of this database.
    pub slots: Vec<SlotInfo>,
    /// The publication, `None` when it does not exist.
    pub publication: Option<PublicationInfo>,
    /// Roles of [`REQUIRED_ROLES`] that do not exist.
    pub missing_roles: Vec<String>,
    /// What the connection user lacks, with the SQL that grants it.
    pub missing_privileges: Option<(Vec<String>, String)>,
}

/// Connection options for inspecting a tenant database: its own settings with the given
/// connect limit.
pub fn options(settings: &CdcSettings, connect_timeout: Duration) -> ConnectOptions {
    let mut opts = crate::tenant_conn::connect_options(settings, APPLICATION_NAME);
    opts.connect_timeout = connect_timeout;
    opts
}

/// Connects once and inspects the database, each statement limited to `statement`;
/// `publication` is the tenant's setting.
pub async fn diagnose(
    opts: &ConnectOptions,
    statement: Duration,
    publication: &str,
) -> Result<TenantDbDiagnosis, TenantDiagnosisError> {
    let target = format!("{}:{}/{}", opts.host, opts.port, opts.dbname);
    let client = connect(opts)
        .await
        .map_err(|e| TenantDiagnosisError::Connect {
            target: target.clone(),
            reason: e.to_string(),
        })?;
    let q = |context: &'static str| {
        move |e: tokio_postgres::Error| TenantDiagnosisError::Query {
            context,
            reason: db_error_text(&e),
        }
    };
    // Set after connecting rather than in the startup packet, which poolers may refuse.
    client
        .batch_execute(&format!(
            "set statement_timeout = {}",
            statement.as_millis().max(1)
        ))
        .await
        .map_err(q("setting statement_timeout"))?;
    let row = client
        .query_one(
            "select current_setting('wal_level'),
                    current_setting('max_replication_slots')::bigint,
                    (select count(*) from pg_catalog.pg_replication_slots),
                    current_setting('max_wal_senders')::bigint,
                    (select count(*) from pg_catalog.pg_stat_replication)",
            &[],
        )
        .await
        .map_err(q("reading the WAL settings"))?;
    let slots = read_slots(&client)
        .await
        .map_err(q("reading the replication slots"))?;
    let publication = read_publication(&client, publication)
        .await
        .map_err(q("reading the publication"))?;
    let missing_roles = tenant_migrations::missing_roles(&client, &REQUIRED_ROLES)
        .await
        .map_err(|e| TenantDiagnosisError::Query {
            context: "looking up roles",
            reason: e.to_string(),
        })?;
    // The migrations' own preflight judges privileges (it stops at a wal_level other than
    // `logical` or missing roles, which are reported above).
    let missing_privileges = match tenant_migrations::preflight(
        &client,
        &publication_name(publication.as_ref()),
    )
    .await
    {
        Err(TenantMigrationError::InsufficientPrivilege { missing, fix, .. }) => {
            Some((missing, fix))
        }
        _ => None,
    };
    Ok(TenantDbDiagnosis {
        target,
        wal_level: row.get(0),
        max_replication_slots: row.get(1),
        slots_used: row.get(2),
        max_wal_senders: row.get(3),
        wal_senders_used: row.get(4),
        slots,
        publication,
        missing_roles,
        missing_privileges,
    })
}

fn publication_name(p: Option<&PublicationInfo>) -> String {
    p.map(|p| p.name.clone()).unwrap_or_default()
}

async fn read_slots(client: &Client) -> Result<Vec<SlotInfo>, tokio_postgres::Error> {
    let rows = client
        .query(
            "with now(lsn) as (
               select case when pg_is_in_recovery() then pg_last_wal_replay_lsn()
                           else pg_current_wal_lsn() end)
             select s.slot_name::text, s.plugin::text, s.active,
                    pg_wal_lsn_diff(now.lsn, coalesce(s.confirmed_flush_lsn, s.restart_lsn))::bigint,
                    pg_wal_lsn_diff(now.lsn, s.restart_lsn)::bigint,
                    s.wal_status
               from pg_catalog.pg_replication_slots s, now
              where s.database = current_database() or s.database is null
              order by s.slot_name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SlotInfo {
            name: r.get(0),
            plugin: r.get(1),
            active: r.get(2),
            lag_bytes: r.get(3),
            retained_bytes: r.get(4),
            wal_status: r.get(5),
        })
        .collect())
}

async fn read_publication(
    client: &Client,
    name: &str,
) -> Result<Option<PublicationInfo>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "select puballtables from pg_catalog.pg_publication where pubname = $1",
            &[&name],
        )
        .await?
    else {
        return Ok(None);
    };
    let rows = client
        .query(
            "select c.oid, p.schemaname::text, p.tablename::text
               from pg_catalog.pg_publication_tables p
               join pg_catalog.pg_namespace n on n.nspname = p.schemaname
               join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = p.tablename
              where p.pubname = $1
              order by 2, 3",
            &[&name],
        )
        .await?;
    let mut tables = Vec::with_capacity(rows.len());
    for r in &rows {
        let oid: u32 = r.get(0);
        let visibility = match rls_policy::read_facts(client, oid, SUBSCRIBER_ROLE).await? {
            None => continue,
            Some(facts) if !facts.role_exists => Visibility::RoleMissing,
            Some(facts) => match rls_policy::rule(&facts) {
                Rule::All(AllReason::RlsOff) => Visibility::RlsOff,
                Rule::All(_) => Visibility::AllRows,
                Rule::None => Visibility::NoPolicy,
                Rule::Check { .. } => Visibility::ByPolicy,
            },
        };
        tables.push(PublishedTable {
            schema: r.get(1),
            name: r.get(2),
            visibility,
        });
    }
    Ok(Some(PublicationInfo {
        name: name.to_string(),
        all_tables: row.get(0),
        tables,
    }))
}

fn db_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
