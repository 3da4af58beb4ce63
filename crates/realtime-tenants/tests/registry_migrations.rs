//! Registry migrations against a real PostgreSQL: fresh install, takeover of registries
//! migrated by the Elixir server, and hostile pre-existing tables.

mod common;

use common::{config, fresh_db, versions};
use realtime_tenants::registry_migrations::MIGRATIONS;
use realtime_tenants::{Registry, RegistryMigrationError};
use realtime_testkit::Cluster;

fn all_versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

/// Columns, indexes and constraints of `_realtime`, one line each, sorted.
async fn schema_snapshot(client: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END \
           || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE n.nspname = '_realtime' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
        "SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = '_realtime'",
        "SELECT 'constraint ' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid) \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         WHERE k.connamespace = '_realtime'::regnamespace",
    ] {
        for row in client.query(sql, &[]).await.unwrap() {
            out.push(row.get::<_, String>(0));
        }
    }
    out.sort();
    out
}

/// §2.2, as PostgreSQL describes it.
const FINAL_SCHEMA: &[&str] = &[
    "constraint extensions.extensions_pkey PRIMARY KEY (id)",
    "constraint extensions.extensions_tenant_external_id_fkey FOREIGN KEY (tenant_external_id) REFERENCES _realtime.tenants(external_id) ON DELETE CASCADE",
    "constraint feature_flags.feature_flags_pkey PRIMARY KEY (id)",
    "constraint feature_flags.rollout_percentage_must_be_between_0_and_100 CHECK (((rollout_percentage >= 0) AND (rollout_percentage <= 100)))",
    "constraint schema_migrations.schema_migrations_pkey PRIMARY KEY (version)",
    "constraint tenants.jwt_secret_or_jwt_jwks_required CHECK (((jwt_secret IS NOT NULL) OR (jwt_jwks IS NOT NULL)))",
    "constraint tenants.tenants_pkey PRIMARY KEY (id)",
    "extensions.id uuid NOT NULL",
    "extensions.inserted_at timestamp(0) without time zone NOT NULL",
    "extensions.settings jsonb",
    "extensions.tenant_external_id text",
    "extensions.type text",
    "extensions.updated_at timestamp(0) without time zone NOT NULL",
    "feature_flags.bucket_key character varying(255)",
    "feature_flags.enabled boolean NOT NULL DEFAULT false",
    "feature_flags.id uuid NOT NULL",
    "feature_flags.inserted_at timestamp(0) without time zone NOT NULL",
    "feature_flags.name character varying(255) NOT NULL",
    "feature_flags.rollout_percentage integer NOT NULL DEFAULT 100",
    "feature_flags.updated_at timestamp(0) without time zone NOT NULL",
    "index CREATE INDEX extensions_tenant_external_id_index ON _realtime.extensions USING btree (tenant_external_id)",
    "index CREATE UNIQUE INDEX extensions_pkey ON _realtime.extensions USING btree (id)",
    "index CREATE UNIQUE INDEX extensions_tenant_external_id_type_index ON _realtime.extensions USING btree (tenant_external_id, type)",
    "index CREATE UNIQUE INDEX feature_flags_name_index ON _realtime.feature_flags USING btree (name)",
    "index CREATE UNIQUE INDEX feature_flags_pkey ON _realtime.feature_flags USING btree (id)",
    "index CREATE UNIQUE INDEX schema_migrations_pkey ON _realtime.schema_migrations USING btree (version)",
    "index CREATE UNIQUE INDEX tenants_external_id_index ON _realtime.tenants USING btree (external_id)",
    "index CREATE UNIQUE INDEX tenants_pkey ON _realtime.tenants USING btree (id)",
    "schema_migrations.inserted_at timestamp(0) without time zone",
    "schema_migrations.version bigint NOT NULL",
    "tenants.broadcast_adapter character varying(255) DEFAULT 'gen_rpc'::character varying",
    "tenants.client_presence_window_ms integer",
    "tenants.external_id text",
    "tenants.feature_flags jsonb NOT NULL DEFAULT '{}'::jsonb",
    "tenants.gcm_migrated_at timestamp(0) without time zone",
    "tenants.id uuid NOT NULL",
    "tenants.inserted_at timestamp(0) without time zone NOT NULL",
    "tenants.jwt_jwks jsonb",
    "tenants.jwt_secret text",
    "tenants.max_bytes_per_second integer NOT NULL DEFAULT 100000",
    "tenants.max_channels_per_client integer NOT NULL DEFAULT 100",
    "tenants.max_client_presence_events_per_window integer",
    "tenants.max_concurrent_users integer NOT NULL DEFAULT 200",
    "tenants.max_events_per_second integer NOT NULL DEFAULT 100",
    "tenants.max_joins_per_second integer NOT NULL DEFAULT 500",
    "tenants.max_payload_size_in_kb integer DEFAULT 3000",
    "tenants.max_presence_events_per_second integer DEFAULT 1000",
    "tenants.migrations_ran integer DEFAULT 0",
    "tenants.name text",
    "tenants.notify_private_alpha boolean DEFAULT false",
    "tenants.postgres_cdc_default text DEFAULT 'postgres_cdc_rls'::text",
    "tenants.presence_enabled boolean NOT NULL DEFAULT false",
    "tenants.private_only boolean NOT NULL DEFAULT false",
    "tenants.suspend boolean DEFAULT false",
    "tenants.updated_at timestamp(0) without time zone NOT NULL",
];

fn final_schema() -> Vec<String> {
    let mut v: Vec<String> = FINAL_SCHEMA.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn fresh_registry_gets_33_versions_and_the_final_schema() {
    let db = fresh_db().await;
    let registry = Registry::connect(&config(&db)).await.unwrap();
    let report = registry.migrate().await.unwrap();
    assert_eq!(report.applied, all_versions());
    assert_eq!(report.already_applied, 0);
    let client = db.connect().await;
    assert_eq!(versions(&client).await, all_versions());
    assert_eq!(schema_snapshot(&client).await, final_schema());
    let stray: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'uniq_external_id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stray, 0);
    // Nothing landed in public.
    let public: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('tenants', 'extensions', 'feature_flags', 'schema_migrations')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 0);
    let inserted_at_set: i64 = client
        .query_one(
            "SELECT count(*) FROM _realtime.schema_migrations WHERE inserted_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(inserted_at_set, 33);

    // A second run applies nothing and executes no DDL.
    let report = registry.migrate().await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.already_applied, 33);
}

/// The registry as the Elixir image v2.34.47 leaves it (21 migrations), written from the DDL
/// Ecto generates for upstream's migration files.
const UPSTREAM_21: &str = r#"
CREATE TABLE _realtime.schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp(0) without time zone);
CREATE TABLE _realtime.tenants (
  id uuid NOT NULL PRIMARY KEY,
  name text,
  external_id text,
  jwt_secret text,
  max_concurrent_users integer NOT NULL DEFAULT 200,
  inserted_at timestamp(0) without time zone NOT NULL,
  updated_at timestamp(0) without time zone NOT NULL,
  max_events_per_second integer NOT NULL DEFAULT 100,
  postgres_cdc_default text DEFAULT 'postgres_cdc_rls',
  max_bytes_per_second integer NOT NULL DEFAULT 100000,
  max_channels_per_client integer NOT NULL DEFAULT 100,
  max_joins_per_second integer NOT NULL DEFAULT 500,
  suspend boolean DEFAULT false,
  jwt_jwks jsonb DEFAULT NULL,
  notify_private_alpha boolean DEFAULT false,
  private_only boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX tenants_external_id_index ON _realtime.tenants (external_id);
CREATE TABLE _realtime.extensions (
  id uuid NOT NULL PRIMARY KEY,
  type text,
  settings jsonb,
  tenant_external_id text CONSTRAINT extensions_tenant_external_id_fkey
    REFERENCES _realtime.tenants (external_id) ON DELETE CASCADE,
  inserted_at timestamp(0) without time zone NOT NULL,
  updated_at timestamp(0) without time zone NOT NULL
);
CREATE UNIQUE INDEX extensions_tenant_external_id_type_index ON _realtime.extensions (tenant_external_id, type);
CREATE INDEX extensions_tenant_external_id_index ON _realtime.extensions (tenant_external_id);
INSERT INTO _realtime.tenants (id, name, external_id, jwt_secret, max_concurrent_users, inserted_at, updated_at, max_events_per_second, max_joins_per_second, suspend)
VALUES ('6f1a4c1e-6a0b-4c3d-9a59-1f2e3d4c5b6a', 'realtime-dev', 'realtime-dev',
        'eGxa2ZKVreSn7eWieRQdp60i5H6KJLiST7splFU6MVHylMSAoQ2SjsTrTTQo/+bmYjQcO4hNnGTU+D1wtlXreA==',
        7, '2025-03-01 10:00:00', '2025-03-01 10:00:00', 42, 100, true);
INSERT INTO _realtime.extensions (id, type, settings, tenant_external_id, inserted_at, updated_at)
VALUES ('0b5e2d7c-1f3a-4e6b-8c9d-0a1b2c3d4e5f', 'postgres_cdc_rls',
        '{"db_host": "QhixI0o7PYIABziLUL4f0A==", "db_port": "+enMDFi1J/3IrrquHHwUmA==", "db_name": "sWBpZNdjggEPTQVlI52Zfw==", "db_user": "uxbEq/zz8DXVD53TOI1zmw==", "db_password": "sWBpZNdjggEPTQVlI52Zfw==", "region": "us-east-1", "ssl_enforced": false}',
        'realtime-dev', '2025-03-01 10:00:00', '2025-03-01 10:00:00');
"#;

/// What v2.78.15 adds on top (migrations 22–30).
const UPSTREAM_22_TO_30: &str = r#"
ALTER TABLE _realtime.tenants ADD COLUMN migrations_ran integer DEFAULT 0;
ALTER TABLE _realtime.tenants ADD COLUMN broadcast_adapter varchar(255) DEFAULT 'gen_rpc';
ALTER TABLE _realtime.tenants ADD COLUMN max_presence_events_per_second integer DEFAULT 1000;
ALTER TABLE _realtime.tenants ADD COLUMN max_payload_size_in_kb integer DEFAULT 3000;
ALTER TABLE _realtime.tenants ADD CONSTRAINT jwt_secret_or_jwt_jwks_required CHECK (jwt_secret IS NOT NULL OR jwt_jwks IS NOT NULL);
ALTER TABLE _realtime.tenants ADD COLUMN max_client_presence_events_per_window integer NULL;
ALTER TABLE _realtime.tenants ADD COLUMN client_presence_window_ms integer NULL;
ALTER TABLE _realtime.tenants ADD COLUMN presence_enabled boolean NOT NULL DEFAULT false;
UPDATE _realtime.tenants SET migrations_ran = 65, broadcast_adapter = 'phoenix';
"#;

async fn record_versions(client: &tokio_postgres::Client, n: usize) {
    for m in &MIGRATIONS[..n] {
        client
            .execute(
                "INSERT INTO _realtime.schema_migrations (version, inserted_at) VALUES ($1, now()::timestamp(0))",
                &[&m.version],
            )
            .await
            .unwrap();
    }
}

async fn takeover(applied_by_upstream: usize) {
    let db = fresh_db().await;
    let client = db.connect().await;
    client.batch_execute(UPSTREAM_21).await.unwrap();
    if applied_by_upstream == 30 {
        client.batch_execute(UPSTREAM_22_TO_30).await.unwrap();
    }
    record_versions(&client, applied_by_upstream).await;

    let registry = Registry::connect(&config(&db)).await.unwrap();
    let report = registry.migrate().await.unwrap();
    assert_eq!(
        report.applied,
        all_versions()[applied_by_upstream..].to_vec()
    );
    assert_eq!(report.already_applied, applied_by_upstream);
    assert_eq!(versions(&client).await, all_versions());
    assert_eq!(schema_snapshot(&client).await, final_schema());

    // Existing rows keep their values; new NOT NULL columns get their defaults.
    let t = registry.get("realtime-dev").await.unwrap().unwrap();
    assert_eq!(t.max_concurrent_users, 7);
    assert_eq!(t.max_events_per_second, 42);
    assert!(t.suspend);
    assert_eq!(t.feature_flags, serde_json::json!({}));
    assert!(!t.presence_enabled);
    assert_eq!(t.gcm_migrated_at, None);
    if applied_by_upstream == 30 {
        assert_eq!(t.migrations_ran, 65);
        assert_eq!(t.broadcast_adapter.as_deref(), Some("phoenix"));
    } else {
        // Columns added with a default that a later migration changes keep the value the
        // row got when the column was added, as under upstream.
        assert_eq!(t.migrations_ran, 0);
        assert_eq!(t.broadcast_adapter.as_deref(), Some("phoenix"));
        assert_eq!(t.max_presence_events_per_second, Some(10000));
    }
    assert_eq!(t.extensions.len(), 1);
    let cdc = t.cdc_settings(&common::crypto()).unwrap().unwrap();
    assert_eq!((cdc.host.as_str(), cdc.port), ("db", 5432));
    assert_eq!(
        t.jwt_secret_plain(&common::crypto()).unwrap().as_deref(),
        Some("your-super-secret-jwt-token-with-at-least-32-characters-long")
    );
}

#[tokio::test]
async fn takeover_of_a_registry_at_21_versions() {
    takeover(21).await;
}

#[tokio::test]
async fn takeover_of_a_registry_at_30_versions() {
    takeover(30).await;
}

#[tokio::test]
async fn bigint_schema_migrations_without_inserted_at_gets_the_column() {
    let db = fresh_db().await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE _realtime.schema_migrations (version bigint PRIMARY KEY)")
        .await
        .unwrap();
    let registry = Registry::connect(&config(&db)).await.unwrap();
    let report = registry.migrate().await.unwrap();
    assert_eq!(report.applied.len(), 33);
    assert_eq!(versions(&client).await, all_versions());
    assert_eq!(schema_snapshot(&client).await, final_schema());
}

#[tokio::test]
async fn varchar_schema_migrations_with_all_versions_runs_no_ddl() {
    let db = fresh_db().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE _realtime.schema_migrations (version varchar PRIMARY KEY, inserted_at timestamp(0));
             INSERT INTO _realtime.schema_migrations VALUES ('not-a-version', now());",
        )
        .await
        .unwrap();
    for m in MIGRATIONS.iter() {
        client
            .execute(
                "INSERT INTO _realtime.schema_migrations (version) VALUES ($1)",
                &[&m.version.to_string()],
            )
            .await
            .unwrap();
    }
    let registry = Registry::connect(&config(&db)).await.unwrap();
    let report = registry.migrate().await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.already_applied, 33);
    // No DDL ran: the registry tables were never created.
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '_realtime' AND tablename = 'tenants'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}

#[tokio::test]
async fn varchar_schema_migrations_partially_filled_gets_text_versions() {
    let db = fresh_db().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE _realtime.schema_migrations (version varchar(255) PRIMARY KEY)",
        )
        .await
        .unwrap();
    let registry = Registry::connect(&config(&db)).await.unwrap();
    registry.migrate().await.unwrap();
    assert_eq!(versions(&client).await, all_versions());
}

#[tokio::test]
async fn extra_not_null_column_is_fatal_and_named() {
    let db = fresh_db().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE _realtime.schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)",
        )
        .await
        .unwrap();
    let registry = Registry::connect(&config(&db)).await.unwrap();
    let err = registry.migrate().await.unwrap_err();
    assert!(matches!(
        err,
        RegistryMigrationError::IncompatibleSchemaMigrations(_)
    ));
    let msg = err.to_string();
    assert!(msg.contains("dirty"), "{msg}");
    assert!(
        msg.contains(
            "ALTER TABLE \"_realtime\".schema_migrations ALTER COLUMN \"dirty\" DROP NOT NULL;"
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn missing_version_column_is_fatal_with_rename_hint() {
    let db = fresh_db().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE _realtime.schema_migrations (id serial PRIMARY KEY, name text)",
        )
        .await
        .unwrap();
    let registry = Registry::connect(&config(&db)).await.unwrap();
    let msg = registry.migrate().await.unwrap_err().to_string();
    assert!(msg.contains("no `version` column"), "{msg}");
    assert!(msg.contains("RENAME TO"), "{msg}");
}

#[tokio::test]
async fn hand_created_final_tenants_with_empty_schema_migrations_converges() {
    let db = fresh_db().await;
    let client = db.connect().await;
    // Build the final schema once, then forget the versions: only the tables stay.
    {
        let registry = Registry::connect(&config(&db)).await.unwrap();
        registry.migrate().await.unwrap();
    }
    client
        .batch_execute("DELETE FROM _realtime.schema_migrations")
        .await
        .unwrap();
    let registry = Registry::connect(&config(&db)).await.unwrap();
    let report = registry.migrate().await.unwrap();
    assert_eq!(report.applied.len(), 33);
    assert_eq!(versions(&client).await, all_versions());
    assert_eq!(schema_snapshot(&client).await, final_schema());
}

#[tokio::test]
async fn missing_schema_is_created() {
    let db = Cluster::shared().create_database().await;
    let registry = Registry::connect(&config(&db)).await.unwrap();
    let report = registry.migrate().await.unwrap();
    assert_eq!(report.applied.len(), 33);
    let client = db.connect().await;
    assert_eq!(versions(&client).await, all_versions());
}

#[tokio::test]
async fn unusable_search_path_without_single_schema_is_explained() {
    let db = Cluster::shared().create_database().await;
    let mut cfg = config(&db);
    cfg.after_connect_query = Some("SET search_path TO nope1, nope2".into());
    let registry = Registry::connect(&cfg).await.unwrap();
    let msg = registry.migrate().await.unwrap_err().to_string();
    assert!(msg.contains("no schema has been selected"), "{msg}");
}

#[tokio::test]
async fn after_connect_query_failure_is_reported() {
    let db = Cluster::shared().create_database().await;
    let mut cfg = config(&db);
    cfg.after_connect_query = Some("SELEC 1".into());
    let err = Registry::connect(&cfg).await.unwrap_err();
    assert!(
        err.to_string().starts_with("DB_AFTER_CONNECT_QUERY failed"),
        "{err}"
    );
}

#[tokio::test]
async fn tables_follow_the_search_path() {
    // Without an after-connect query the tables land in the default search path (public).
    let db = Cluster::shared().create_database().await;
    let mut cfg = config(&db);
    cfg.after_connect_query = None;
    let registry = Registry::connect(&cfg).await.unwrap();
    registry.migrate().await.unwrap();
    let client = db.connect().await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM public.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 33);
}

#[tokio::test]
async fn concurrent_runs_apply_each_version_once() {
    let db = Cluster::shared().create_database().await;
    let a = Registry::connect(&config(&db)).await.unwrap();
    let b = Registry::connect(&config(&db)).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.applied.len() + rb.applied.len(), 33);
    assert_eq!(ra.applied.len() + ra.already_applied, 33);
    assert_eq!(rb.applied.len() + rb.already_applied, 33);
    let client = db.connect().await;
    assert_eq!(versions(&client).await, all_versions());
    assert_eq!(schema_snapshot(&client).await, final_schema());
}
