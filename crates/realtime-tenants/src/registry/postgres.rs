//! The registry in PostgreSQL: unqualified table names, resolved through the search_path.

use std::collections::HashMap;

use serde_json::Value;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::crypto::Crypto;
use crate::extension::Extension;
use crate::feature_flags::FeatureFlag;
use crate::registry::pool::{Pool, INITIAL_CONNECT_DEADLINE};
use crate::registry::{RegistryConfig, RegistryError, TenantDefaults, UpsertError, Upserted};
use crate::registry_migrations::{MigrationReport, RegistryMigrationError};
use crate::tenant::Tenant;
use crate::upsert::{now_utc_seconds, prepare};

const TENANT_COLUMNS: &str = "id, name, external_id, jwt_secret, jwt_jwks, max_concurrent_users, \
    max_events_per_second, max_bytes_per_second, max_channels_per_client, max_joins_per_second, \
    postgres_cdc_default, suspend, notify_private_alpha, private_only, migrations_ran, \
    broadcast_adapter, max_presence_events_per_second, max_payload_size_in_kb, \
    max_client_presence_events_per_window, client_presence_window_ms, presence_enabled, \
    feature_flags, gcm_migrated_at, inserted_at, updated_at";

const EXTENSION_COLUMNS: &str = "id, type, settings, tenant_external_id, inserted_at, updated_at";

/// Registry tables reached through a small connection pool.
pub struct PgRegistry {
    pool: Pool,
}

fn tenant_from_row(row: &Row) -> Result<Tenant, RegistryError> {
    let bad = |e: tokio_postgres::Error| RegistryError::Row(e.to_string());
    let external_id: Option<String> = row.try_get("external_id").map_err(bad)?;
    Ok(Tenant {
        id: row.try_get("id").map_err(bad)?,
        name: row.try_get("name").map_err(bad)?,
        external_id: external_id.unwrap_or_default(),
        jwt_secret: row.try_get("jwt_secret").map_err(bad)?,
        jwt_jwks: row.try_get("jwt_jwks").map_err(bad)?,
        max_concurrent_users: row.try_get("max_concurrent_users").map_err(bad)?,
        max_events_per_second: row.try_get("max_events_per_second").map_err(bad)?,
        max_bytes_per_second: row.try_get("max_bytes_per_second").map_err(bad)?,
        max_channels_per_client: row.try_get("max_channels_per_client").map_err(bad)?,
        max_joins_per_second: row.try_get("max_joins_per_second").map_err(bad)?,
        postgres_cdc_default: row.try_get("postgres_cdc_default").map_err(bad)?,
        suspend: row
            .try_get::<_, Option<bool>>("suspend")
            .map_err(bad)?
            .unwrap_or(false),
        notify_private_alpha: row
            .try_get::<_, Option<bool>>("notify_private_alpha")
            .map_err(bad)?
            .unwrap_or(false),
        private_only: row.try_get("private_only").map_err(bad)?,
        migrations_ran: row
            .try_get::<_, Option<i32>>("migrations_ran")
            .map_err(bad)?
            .unwrap_or(0),
        broadcast_adapter: row.try_get("broadcast_adapter").map_err(bad)?,
        max_presence_events_per_second: row
            .try_get("max_presence_events_per_second")
            .map_err(bad)?,
        max_payload_size_in_kb: row.try_get("max_payload_size_in_kb").map_err(bad)?,
        max_client_presence_events_per_window: row
            .try_get("max_client_presence_events_per_window")
            .map_err(bad)?,
        client_presence_window_ms: row.try_get("client_presence_window_ms").map_err(bad)?,
        presence_enabled: row.try_get("presence_enabled").map_err(bad)?,
        feature_flags: row.try_get("feature_flags").map_err(bad)?,
        gcm_migrated_at: row.try_get("gcm_migrated_at").map_err(bad)?,
        inserted_at: row.try_get("inserted_at").map_err(bad)?,
        updated_at: row.try_get("updated_at").map_err(bad)?,
        extensions: Vec::new(),
    })
}

fn extension_from_row(row: &Row) -> Result<Extension, RegistryError> {
    let bad = |e: tokio_postgres::Error| RegistryError::Row(e.to_string());
    Ok(Extension {
        id: row.try_get("id").map_err(bad)?,
        r#type: row.try_get("type").map_err(bad)?,
        settings: row
            .try_get::<_, Option<Value>>("settings")
            .map_err(bad)?
            .unwrap_or(Value::Null),
        tenant_external_id: row
            .try_get::<_, Option<String>>("tenant_external_id")
            .map_err(bad)?
            .unwrap_or_default(),
        inserted_at: row.try_get("inserted_at").map_err(bad)?,
        updated_at: row.try_get("updated_at").map_err(bad)?,
    })
}

/// Reads one tenant with its extensions on `client` (optionally locking the row).
async fn load_tenant<C: GenericClient>(
    client: &C,
    external_id: &str,
    for_update: bool,
) -> Result<Option<Tenant>, RegistryError> {
    let sql = format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE external_id = $1{}",
        if for_update { " FOR UPDATE" } else { "" }
    );
    let Some(row) = client.query_opt(&sql, &[&external_id]).await? else {
        return Ok(None);
    };
    let mut tenant = tenant_from_row(&row)?;
    let rows = client
        .query(
            &format!(
                "SELECT {EXTENSION_COLUMNS} FROM extensions WHERE tenant_external_id = $1 ORDER BY inserted_at, id"
            ),
            &[&external_id],
        )
        .await?;
    tenant.extensions = rows
        .iter()
        .map(extension_from_row)
        .collect::<Result<_, _>>()?;
    Ok(Some(tenant))
}

/// Reads every tenant with its extensions on `client`.
pub(crate) async fn load_all<C: GenericClient>(client: &C) -> Result<Vec<Tenant>, RegistryError> {
    let rows = client
        .query(
            &format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY inserted_at, external_id"),
            &[],
        )
        .await?;
    let mut tenants = rows
        .iter()
        .map(tenant_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let rows = client
        .query(
            &format!("SELECT {EXTENSION_COLUMNS} FROM extensions ORDER BY inserted_at, id"),
            &[],
        )
        .await?;
    let mut by_tenant: HashMap<String, Vec<Extension>> = HashMap::new();
    for row in &rows {
        let e = extension_from_row(row)?;
        by_tenant
            .entry(e.tenant_external_id.clone())
            .or_default()
            .push(e);
    }
    for t in &mut tenants {
        t.extensions = by_tenant.remove(&t.external_id).unwrap_or_default();
    }
    Ok(tenants)
}

async fn insert_tenant<C: GenericClient>(
    client: &C,
    t: &Tenant,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                  $19, $20, $21, $22, $23, $24, $25)"
            ),
            &[
                &t.id,
                &t.name,
                &t.external_id,
                &t.jwt_secret,
                &t.jwt_jwks,
                &t.max_concurrent_users,
                &t.max_events_per_second,
                &t.max_bytes_per_second,
                &t.max_channels_per_client,
                &t.max_joins_per_second,
                &t.postgres_cdc_default,
                &t.suspend,
                &t.notify_private_alpha,
                &t.private_only,
                &t.migrations_ran,
                &t.broadcast_adapter,
                &t.max_presence_events_per_second,
                &t.max_payload_size_in_kb,
                &t.max_client_presence_events_per_window,
                &t.client_presence_window_ms,
                &t.presence_enabled,
                &t.feature_flags,
                &t.gcm_migrated_at,
                &t.inserted_at,
                &t.updated_at,
            ],
        )
        .await?;
    Ok(())
}

async fn update_tenant<C: GenericClient>(
    client: &C,
    t: &Tenant,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE tenants SET name = $2, jwt_secret = $3, jwt_jwks = $4, max_concurrent_users = $5, \
             max_events_per_second = $6, max_bytes_per_second = $7, max_channels_per_client = $8, \
             max_joins_per_second = $9, postgres_cdc_default = $10, suspend = $11, private_only = $12, \
             migrations_ran = $13, broadcast_adapter = $14, max_presence_events_per_second = $15, \
             max_payload_size_in_kb = $16, max_client_presence_events_per_window = $17, \
             client_presence_window_ms = $18, presence_enabled = $19, feature_flags = $20, \
             updated_at = $21 WHERE id = $1",
            &[
                &t.id,
                &t.name,
                &t.jwt_secret,
                &t.jwt_jwks,
                &t.max_concurrent_users,
                &t.max_events_per_second,
                &t.max_bytes_per_second,
                &t.max_channels_per_client,
                &t.max_joins_per_second,
                &t.postgres_cdc_default,
                &t.suspend,
                &t.private_only,
                &t.migrations_ran,
                &t.broadcast_adapter,
                &t.max_presence_events_per_second,
                &t.max_payload_size_in_kb,
                &t.max_client_presence_events_per_window,
                &t.client_presence_window_ms,
                &t.presence_enabled,
                &t.feature_flags,
                &t.updated_at,
            ],
        )
        .await?;
    Ok(())
}

async fn insert_extensions<C: GenericClient>(
    client: &C,
    t: &Tenant,
) -> Result<(), tokio_postgres::Error> {
    for e in &t.extensions {
        client
            .execute(
                &format!(
                    "INSERT INTO extensions ({EXTENSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                ),
                &[
                    &e.id,
                    &e.r#type,
                    &e.settings,
                    &e.tenant_external_id,
                    &e.inserted_at,
                    &e.updated_at,
                ],
            )
            .await?;
    }
    Ok(())
}

/// Maps constraint violations that upstream reports as validation errors to a 422 body.
fn constraint_error(e: &tokio_postgres::Error) -> Option<Value> {
    let db = e.as_db_error()?;
    match db.constraint()? {
        "jwt_secret_or_jwt_jwks_required" => Some(serde_json::json!({
            "errors": {"jwt_secret": ["either jwt_secret or jwt_jwks must be provided"]}
        })),
        "tenants_external_id_index" => Some(serde_json::json!({
            "errors": {"external_id": ["has already been taken"]}
        })),
        "extensions_tenant_external_id_type_index" => Some(serde_json::json!({
            "errors": {"extensions": [{"tenant_external_id": ["has already been taken"]}]}
        })),
        _ => None,
    }
}

impl PgRegistry {
    pub(crate) async fn connect(config: &RegistryConfig) -> Result<PgRegistry, RegistryError> {
        Self::connect_within(config, INITIAL_CONNECT_DEADLINE).await
    }

    /// Like [`PgRegistry::connect`] with a custom retry deadline.
    pub(crate) async fn connect_within(
        config: &RegistryConfig,
        deadline: std::time::Duration,
    ) -> Result<PgRegistry, RegistryError> {
        Ok(PgRegistry {
            pool: Pool::connect(config, deadline).await?,
        })
    }

    pub(crate) async fn migrate(&self) -> Result<MigrationReport, RegistryMigrationError> {
        let mut conn = self.pool.get().await?;
        let after = self.pool.config().after_connect_query.clone();
        crate::registry_migrations::run(&mut conn, after.as_deref()).await
    }

    pub(crate) async fn get(&self, external_id: &str) -> Result<Option<Tenant>, RegistryError> {
        let mut retried = false;
        loop {
            let conn = self.pool.get().await?;
            match load_tenant(&*conn, external_id, false).await {
                // An idle connection the server closed (restart, idle timeout): one retry on
                // a fresh connection.
                Err(RegistryError::Query(e)) if e.is_closed() && !retried => retried = true,
                other => return other,
            }
        }
    }

    pub(crate) async fn list(&self) -> Result<Vec<Tenant>, RegistryError> {
        let conn = self.pool.get().await?;
        load_all(&*conn).await
    }

    pub(crate) async fn upsert(
        &self,
        external_id: &str,
        params: &Value,
        defaults: &TenantDefaults,
        crypto: &Crypto,
    ) -> Result<Upserted, UpsertError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        let existing = load_tenant(&tx, external_id, true).await?;
        let created = existing.is_none();
        let prepared = prepare(
            existing.as_ref(),
            external_id,
            params,
            defaults,
            crypto,
            now_utc_seconds(),
        )?;
        let t = &prepared.tenant;
        let write = async {
            if created {
                insert_tenant(&tx, t).await?;
            } else {
                update_tenant(&tx, t).await?;
            }
            if prepared.replace_extensions {
                tx.execute(
                    "DELETE FROM extensions WHERE tenant_external_id = $1",
                    &[&t.external_id],
                )
                .await?;
                insert_extensions(&tx, t).await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        };
        if let Err(e) = write.await {
            return Err(match constraint_error(&e) {
                Some(body) => UpsertError::Invalid(body),
                None => e.into(),
            });
        }
        tx.commit().await?;
        Ok(Upserted {
            tenant: prepared.tenant,
            created,
        })
    }

    /// Deletes the tenant named like `tenant` and inserts `tenant` instead, in one transaction.
    pub(crate) async fn replace(&self, tenant: &Tenant) -> Result<(), RegistryError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        tx.execute(
            "DELETE FROM tenants WHERE external_id = $1",
            &[&tenant.external_id],
        )
        .await?;
        insert_tenant(&tx, tenant).await?;
        insert_extensions(&tx, tenant).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn delete(&self, external_id: &str) -> Result<bool, RegistryError> {
        let conn = self.pool.get().await?;
        let n = conn
            .execute(
                "DELETE FROM tenants WHERE external_id = $1",
                &[&external_id],
            )
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn set_migrations_ran(
        &self,
        external_id: &str,
        n: i32,
    ) -> Result<(), RegistryError> {
        let conn = self.pool.get().await?;
        conn.execute(
            "UPDATE tenants SET migrations_ran = $2 WHERE external_id = $1",
            &[&external_id, &n],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn feature_flag(
        &self,
        name: &str,
    ) -> Result<Option<FeatureFlag>, RegistryError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT name::text, enabled, rollout_percentage, bucket_key::text FROM feature_flags WHERE name = $1",
                &[&name],
            )
            .await?;
        Ok(row.map(|r| FeatureFlag {
            name: r.get(0),
            enabled: r.get(1),
            rollout_percentage: r.get(2),
            bucket_key: r.get(3),
        }))
    }

    pub(crate) async fn upsert_feature_flag(
        &self,
        flag: &FeatureFlag,
    ) -> Result<(), RegistryError> {
        let conn = self.pool.get().await?;
        let now = now_utc_seconds();
        conn.execute(
            "INSERT INTO feature_flags (id, name, enabled, rollout_percentage, bucket_key, inserted_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (name) DO UPDATE SET enabled = EXCLUDED.enabled, \
               rollout_percentage = EXCLUDED.rollout_percentage, bucket_key = EXCLUDED.bucket_key, \
               updated_at = EXCLUDED.updated_at",
            &[&Uuid::new_v4(), &flag.name, &flag.enabled, &flag.rollout_percentage, &flag.bucket_key, &now],
        )
        .await?;
        Ok(())
    }

    /// Compare-and-set of a tenant's `jwt_secret` (GCM backfill). Returns whether it changed.
    pub(crate) async fn cas_jwt_secret(
        &self,
        external_id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, RegistryError> {
        let conn = self.pool.get().await?;
        let n = conn
            .execute(
                "UPDATE tenants SET jwt_secret = $3 WHERE external_id = $1 AND jwt_secret = $2",
                &[&external_id, &old, &new],
            )
            .await?;
        Ok(n == 1)
    }

    /// Compare-and-set of one extension's settings (GCM backfill). Returns whether it changed.
    pub(crate) async fn cas_extension_settings(
        &self,
        id: Uuid,
        external_id: &str,
        old: &Value,
        new: &Value,
    ) -> Result<bool, RegistryError> {
        let conn = self.pool.get().await?;
        let n = conn
            .execute(
                "UPDATE extensions SET settings = $4 WHERE id = $1 AND tenant_external_id = $2 AND settings = $3",
                &[&id, &external_id, old, new],
            )
            .await?;
        Ok(n == 1)
    }

    /// Marks every secret of the tenant as moved to GCM.
    pub(crate) async fn set_gcm_migrated_at(&self, external_id: &str) -> Result<(), RegistryError> {
        let conn = self.pool.get().await?;
        conn.execute(
            "UPDATE tenants SET gcm_migrated_at = $2 WHERE external_id = $1",
            &[&external_id, &now_utc_seconds()],
        )
        .await?;
        Ok(())
    }
}
