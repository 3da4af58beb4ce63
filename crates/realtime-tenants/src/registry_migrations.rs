//! The 33 registry migrations (SQL in `migrations/registry/`), applied incrementally and
//! idempotently, with upstream's version numbers in `schema_migrations`.
//!
//! Every statement is unqualified: the session search_path (usually set by
//! `DB_AFTER_CONNECT_QUERY`) decides the schema, exactly as for the Elixir server.

use tokio_postgres::{Client, GenericClient};

/// One registry migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Upstream's version number, recorded in `schema_migrations`.
    pub version: i64,
    /// Upstream's migration name.
    pub name: &'static str,
    /// Idempotent SQL.
    pub sql: &'static str,
    /// Run outside a transaction (upstream `@disable_ddl_transaction`).
    pub no_transaction: bool,
}

macro_rules! m {
    ($version:literal, $name:literal) => {
        m!($version, $name, false)
    };
    ($version:literal, $name:literal, $no_tx:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../migrations/registry/",
                $version,
                "_",
                $name,
                ".sql"
            )),
            no_transaction: $no_tx,
        }
    };
}

/// All registry migrations, ascending.
pub const MIGRATIONS: [Migration; 33] = [
    m!(20210706140551, "create_tenant"),
    m!(20220329161857, "add_extensions_table"),
    m!(20220410212326, "add_tenant_max_eps"),
    m!(20220506102948, "rename_poll_interval_to_poll_interval_ms"),
    m!(20220527210857, "add_external_id_uniq_index"),
    m!(20220815211129, "new_max_events_per_second_default"),
    m!(20220815215024, "set_current_max_events_per_second"),
    m!(20220818141501, "change_limits_defaults"),
    m!(20221018173709, "add_cdc_default"),
    m!(20221102172703, "rename_pg_type"),
    m!(20221223010058, "drop_tenants_uniq_external_id_index"),
    m!(20230110180046, "add_limits_fields_to_tenants"),
    m!(20230810220907, "alter_tenants_table_columns_to_text"),
    m!(20230810220924, "alter_extensions_table_columns_to_text"),
    m!(20231024094642, "add_tenant_suspend_flag"),
    m!(20240306114423, "add_tenant_jwt_jwks"),
    m!(20240418082835, "add_authorization_flag"),
    m!(20240625211759, "remove_enable_authorization_flag"),
    m!(20240704172020, "add_notify_private_alpha"),
    m!(20240902173232, "add_extension_external_id_index"),
    m!(20241106103258, "add_private_only_flag_column_to_tenant"),
    m!(20250424203323, "add_migrations_ran_to_tenant"),
    m!(20250613072131, "add_tenant_broadcast_adapter"),
    m!(
        20250711044927,
        "change_default_broadcast_adapter_to_gen_rpc"
    ),
    m!(20250811121559, "add_max_presence_events_per_second"),
    m!(20250926223044, "set_default_presence_value", true),
    m!(20251204170944, "nullable_jwt_secrets"),
    m!(20251218000543, "ensure_jwt_secret_is_text"),
    m!(20260209232800, "add_max_client_presence_events_per_second"),
    m!(20260304000000, "add_presence_enabled_to_tenants"),
    m!(20260422000000, "create_feature_flags"),
    m!(20260709151810, "add_feature_flag_rollout_percentage"),
    m!(20260805000000, "add_gcm_migrated_at_to_tenants"),
];

/// What a migration run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run, ascending.
    pub applied: Vec<i64>,
    /// Number of known versions that were already recorded.
    pub already_applied: usize,
}

/// Registry migration failures; each message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RegistryMigrationError {
    /// The registry could not be reached.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A migration step failed.
    #[error("registry migration {version} ({name}) failed: {reason}")]
    Step {
        /// The migration version.
        version: i64,
        /// The migration name.
        name: &'static str,
        /// The database error, with its detail.
        reason: String,
    },
    /// A query outside a step failed.
    #[error("registry migrations: {}", db_error_text(.0))]
    Query(#[from] tokio_postgres::Error),
    /// `schema_migrations` exists with a shape that cannot be used safely.
    #[error("{0}")]
    IncompatibleSchemaMigrations(String),
    /// No schema is selected for creating the tables.
    #[error("{0}")]
    NoSchema(String),
}

/// How the `version` column of an existing `schema_migrations` is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionKind {
    Integer,
    Text,
}

/// Full text of a database error (message plus detail), for error reports.
pub(crate) fn db_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}): {}", db.message(), db.code().code(), detail),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => e.to_string(),
    }
}

/// The schema named by `SET search_path TO <one identifier>` (any case, `=` or `TO`, optional
/// double quotes and trailing semicolon), if the query has exactly that form.
pub fn search_path_schema(query: &str) -> Option<String> {
    let q = query.trim().trim_end_matches(';').trim();
    let lower = q.to_ascii_lowercase();
    let rest = lower.strip_prefix("set")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("session")
        .map(str::trim_start)
        .unwrap_or(rest);
    let rest = rest.strip_prefix("search_path")?;
    if !rest.starts_with(|c: char| c.is_whitespace() || c == '=') {
        return None;
    }
    let rest = rest.trim_start();
    let rest = if let Some(r) = rest.strip_prefix('=') {
        r
    } else {
        let r = rest.strip_prefix("to")?;
        if !r.starts_with(char::is_whitespace) {
            return None;
        }
        r
    };
    let value_lower = rest.trim();
    // Take the identifier from the original text so a quoted name keeps its case.
    let value = &q[q.len() - value_lower.len()..];
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        if inner.is_empty() || inner.contains('"') {
            return None;
        }
        return Some(inner.to_string());
    }
    let ok = !value.is_empty()
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    ok.then(|| value.to_ascii_lowercase())
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Makes sure a schema is selected for creating tables: when the search_path names a schema
/// that does not exist (`SET search_path TO _realtime` on a database without the Supabase
/// bootstrap), it is created with a warning. Returns the current schema.
pub async fn ensure_schema(
    client: &Client,
    after_connect_query: Option<&str>,
) -> Result<String, RegistryMigrationError> {
    let row = client
        .query_one("SELECT current_schema()::text", &[])
        .await?;
    if let Some(schema) = row.get::<_, Option<String>>(0) {
        return Ok(schema);
    }
    let Some(schema) = after_connect_query.and_then(search_path_schema) else {
        let path: String = client
            .query_one("SELECT current_setting('search_path')", &[])
            .await?
            .get(0);
        return Err(RegistryMigrationError::NoSchema(format!(
            "no schema has been selected to create the registry tables in: none of the schemas of search_path `{path}` exists; create it (e.g. `CREATE SCHEMA _realtime;`) or fix DB_AFTER_CONNECT_QUERY"
        )));
    };
    tracing::warn!(
        schema = %schema,
        "schema {schema} named by DB_AFTER_CONNECT_QUERY does not exist; creating it"
    );
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&schema)
        ))
        .await?;
    Ok(schema)
}

/// The usable shape of an existing `schema_migrations`, read from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaMigrationsShape {
    /// The `version` column's type as PostgreSQL spells it (`bigint`, `character varying`).
    pub version_type: String,
    kind: VersionKind,
    /// Whether `inserted_at` exists (the runner adds it when missing).
    pub has_inserted_at: bool,
}

/// Reads the shape of `<schema>.schema_migrations` without changing anything: `None` when the
/// table does not exist, [`RegistryMigrationError::IncompatibleSchemaMigrations`] (naming the
/// fix) when another tool made it in a shape the runner cannot use.
pub async fn inspect_schema_migrations(
    client: &Client,
    schema: &str,
) -> Result<Option<SchemaMigrationsShape>, RegistryMigrationError> {
    let table = format!("{}.schema_migrations", quote_ident(schema));
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'schema_migrations' AND c.relkind IN ('r', 'p'))",
            &[&schema],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT a.attname::text, t.typcategory::text, a.attnotnull, a.atthasdef, \
                    format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&table],
        )
        .await?;
    let mut version = None;
    let mut has_inserted_at = false;
    let mut blocking = Vec::new();
    for row in &rows {
        let name: String = row.get(0);
        let category: String = row.get(1);
        let not_null: bool = row.get(2);
        let has_default: bool = row.get(3);
        let type_name: String = row.get(4);
        match name.as_str() {
            "version" => {
                let kind = match category.as_str() {
                    "N" => VersionKind::Integer,
                    "S" => VersionKind::Text,
                    _ => {
                        return Err(RegistryMigrationError::IncompatibleSchemaMigrations(format!(
                            "table {schema}.schema_migrations has a `version` column of type {type_name}, which cannot hold migration versions; it was created by another tool: rename it (`ALTER TABLE {table} RENAME TO schema_migrations_old;`) and restart"
                        )))
                    }
                };
                version = Some((kind, type_name));
            }
            "inserted_at" => has_inserted_at = true,
            _ if not_null && !has_default => blocking.push(name),
            _ => {}
        }
    }
    let Some((kind, version_type)) = version else {
        return Err(RegistryMigrationError::IncompatibleSchemaMigrations(format!(
            "table {schema}.schema_migrations has no `version` column; it was created by another tool: rename it (`ALTER TABLE {table} RENAME TO schema_migrations_old;`) or point DB_AFTER_CONNECT_QUERY at another schema, then restart"
        )));
    };
    if !blocking.is_empty() {
        let fixes: Vec<String> = blocking
            .iter()
            .map(|c| {
                format!(
                    "ALTER TABLE {table} ALTER COLUMN {} DROP NOT NULL;",
                    quote_ident(c)
                )
            })
            .collect();
        return Err(RegistryMigrationError::IncompatibleSchemaMigrations(format!(
            "table {schema}.schema_migrations has NOT NULL column(s) without a default that the registry migrations cannot fill: {}; it was probably created by another tool. Rename the table (`ALTER TABLE {table} RENAME TO schema_migrations_old;`) or run: {}",
            blocking.join(", "),
            fixes.join(" ")
        )));
    }
    Ok(Some(SchemaMigrationsShape {
        version_type,
        kind,
        has_inserted_at,
    }))
}

/// Versions recorded in `<schema>.schema_migrations` that are among [`MIGRATIONS`], and the
/// known versions still missing, ascending.
pub async fn applied_and_pending(
    client: &Client,
    schema: &str,
) -> Result<(usize, Vec<i64>), RegistryMigrationError> {
    let table = format!("{}.schema_migrations", quote_ident(schema));
    let recorded = recorded_versions(client, &table).await?;
    let (applied, pending): (Vec<i64>, Vec<i64>) = MIGRATIONS
        .iter()
        .map(|m| m.version)
        .partition(|v| recorded.contains(v));
    Ok((applied.len(), pending))
}

/// Creates or inspects `schema_migrations` and decides how to use it (§2.5).
async fn prepare_schema_migrations(
    client: &Client,
    schema: &str,
) -> Result<VersionKind, RegistryMigrationError> {
    let table = format!("{}.schema_migrations", quote_ident(schema));
    let Some(shape) = inspect_schema_migrations(client, schema).await? else {
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (version bigint PRIMARY KEY, inserted_at timestamp(0) without time zone)"
            ))
            .await?;
        return Ok(VersionKind::Integer);
    };
    if !shape.has_inserted_at {
        tracing::warn!(
            schema,
            "{schema}.schema_migrations has no inserted_at column; adding it"
        );
        client
            .batch_execute(&format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS inserted_at timestamp(0) without time zone"
            ))
            .await?;
    }
    Ok(shape.kind)
}

/// Versions recorded in `table`, read on a plain connection or inside the migration transaction.
async fn recorded_versions<C: GenericClient>(
    client: &C,
    table: &str,
) -> Result<std::collections::BTreeSet<i64>, RegistryMigrationError> {
    let rows = client
        .query(&format!("SELECT version::text FROM {table}"), &[])
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .collect())
}

/// Key of the session advisory lock that serialises registry migrations between our own
/// processes (the table lock only exists once `schema_migrations` does).
const ADVISORY_LOCK_KEY: i64 = 0x7265_616c_7469_6d65; // "realtime"

/// Applies every missing migration on `client` (whose after-connect query already ran).
pub async fn run(
    client: &mut Client,
    after_connect_query: Option<&str>,
) -> Result<MigrationReport, RegistryMigrationError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&ADVISORY_LOCK_KEY])
        .await?;
    let result = run_locked(client, after_connect_query).await;
    // Released explicitly because the connection goes back to the pool; a broken connection
    // releases it anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&ADVISORY_LOCK_KEY])
        .await;
    let report = result?;
    unlocked?;
    Ok(report)
}

async fn run_locked(
    client: &mut Client,
    after_connect_query: Option<&str>,
) -> Result<MigrationReport, RegistryMigrationError> {
    let schema = ensure_schema(client, after_connect_query).await?;
    let kind = prepare_schema_migrations(client, &schema).await?;
    let table = format!("{}.schema_migrations", quote_ident(&schema));
    let lock = format!("LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE");
    let initial = recorded_versions(client, &table).await?;
    let mut report = MigrationReport::default();
    for m in MIGRATIONS.iter() {
        if initial.contains(&m.version) {
            report.already_applied += 1;
            continue;
        }
        let insert = match kind {
            VersionKind::Integer => format!(
                "INSERT INTO {table} (version, inserted_at) VALUES ({}, timezone('utc', now())::timestamp(0))",
                m.version
            ),
            VersionKind::Text => format!(
                "INSERT INTO {table} (version, inserted_at) VALUES ('{}', timezone('utc', now())::timestamp(0))",
                m.version
            ),
        };
        let step_err = |e: tokio_postgres::Error| RegistryMigrationError::Step {
            version: m.version,
            name: m.name,
            reason: db_error_text(&e),
        };
        if m.no_transaction {
            client.batch_execute(m.sql).await.map_err(step_err)?;
        }
        let tx = client.transaction().await?;
        // The lock serialises with another server (Elixir or Rust) migrating concurrently;
        // re-reading under it avoids applying a step twice.
        tx.batch_execute(&lock).await?;
        let done = recorded_versions(&tx, &table).await?;
        if done.contains(&m.version) {
            tx.commit().await?;
            report.already_applied += 1;
            continue;
        }
        if !m.no_transaction {
            tx.batch_execute(m.sql).await.map_err(step_err)?;
        }
        tx.batch_execute(&insert).await?;
        tx.commit().await?;
        tracing::debug!(
            version = m.version,
            name = m.name,
            "registry migration applied"
        );
        report.applied.push(m.version);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_three_ascending_versions() {
        assert_eq!(MIGRATIONS.len(), 33);
        assert_eq!(MIGRATIONS[0].version, 20210706140551);
        assert_eq!(MIGRATIONS[20].version, 20241106103258);
        assert_eq!(MIGRATIONS[29].version, 20260304000000);
        assert_eq!(MIGRATIONS[32].version, 20260805000000);
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(MIGRATIONS.iter().all(|m| !m.sql.trim().is_empty()));
        assert_eq!(MIGRATIONS.iter().filter(|m| m.no_transaction).count(), 1);
    }

    #[test]
    fn search_path_forms() {
        for (q, want) in [
            ("SET search_path TO _realtime", Some("_realtime")),
            ("set search_path to _realtime;", Some("_realtime")),
            ("SET search_path = _Realtime ;", Some("_realtime")),
            ("SET SESSION search_path TO \"MySchema\"", Some("MySchema")),
            ("SET search_path TO _realtime, public", None),
            ("SELECT 1", None),
            ("SET search_pathTO x", None),
        ] {
            assert_eq!(search_path_schema(q).as_deref(), want, "{q}");
        }
    }
}
