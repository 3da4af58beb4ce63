//! Tenants in a real registry: API create/update/delete with upstream's validation messages,
//! feature flags, and what the rest of the server reads from a tenant.

mod common;

use common::{crypto, migrated};
use realtime_tenants::{Registry, TenantDefaults, UpsertError};
use serde_json::{json, Value};

fn example_body() -> Value {
    json!({
        "external_id": "acme",
        "name": "something else",
        "jwt_secret": "acme-super-secret-at-least-32-characters",
        "max_concurrent_users": 500,
        "extensions": [{"type": "postgres_cdc_rls", "settings": {
            "db_host": "db", "db_port": "5432", "db_name": "postgres",
            "db_user": "supabase_admin", "db_password": "s3cret",
            "region": "us-east-1", "ssl_enforced": false}}]
    })
}

fn invalid(r: Result<realtime_tenants::Upserted, UpsertError>) -> Value {
    match r {
        Err(UpsertError::Invalid(body)) => body,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

async fn row_count(db: &realtime_testkit::TestDb, external_id: &str) -> i64 {
    db.connect()
        .await
        .query_one(
            "SELECT count(*) FROM _realtime.tenants WHERE external_id = $1",
            &[&external_id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn create_then_update_through_the_api_shape() {
    let (db, registry) = migrated().await;
    let c = crypto();
    let d = TenantDefaults::default();

    let created = registry
        .upsert("acme", &example_body(), &d, &c)
        .await
        .unwrap();
    assert!(created.created);
    let t = &created.tenant;
    assert_eq!(t.name.as_deref(), Some("acme"));
    assert_eq!(t.max_concurrent_users, 500);
    assert_eq!(t.max_events_per_second, 100);
    assert_eq!(t.max_joins_per_second, 100);
    assert_eq!(t.max_bytes_per_second, 100_000);
    assert_eq!(t.inserted_at.and_utc().timestamp_subsec_nanos(), 0);
    assert_eq!(t.id.get_version_num(), 4);

    let json = t.to_api_json();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "id",
        "external_id",
        "name",
        "max_concurrent_users",
        "max_channels_per_client",
        "max_events_per_second",
        "max_joins_per_second",
        "inserted_at",
        "extensions",
        "private_only",
        "max_client_presence_events_per_window",
        "client_presence_window_ms",
        "presence_enabled",
    ];
    want.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, want);
    assert_eq!(json["name"], "acme");
    let settings = &json["extensions"][0]["settings"];
    assert_eq!(settings["db_host"], "QhixI0o7PYIABziLUL4f0A==");
    assert!(settings.get("db_password").is_none());
    assert_eq!(settings["poll_max_changes"], 100);
    assert_eq!(settings["publication"], "supabase_realtime");
    assert_eq!(settings["slot_name"], "supabase_realtime_replication_slot");
    let text = json.to_string();
    assert!(!text.contains("jwt_secret") && !text.contains("db_password"));
    assert!(json["inserted_at"].as_str().unwrap().len() == 19);

    // The stored row reads back identically and decrypts.
    let stored = registry.get("acme").await.unwrap().unwrap();
    assert_eq!(&stored, t);
    assert_eq!(
        stored.jwt_secret_plain(&c).unwrap().as_deref(),
        Some("acme-super-secret-at-least-32-characters")
    );
    let cdc = stored.cdc_settings(&c).unwrap().unwrap();
    assert_eq!(
        (
            cdc.host.as_str(),
            cdc.port,
            cdc.db_name.as_str(),
            cdc.user.as_str(),
            cdc.password.as_str()
        ),
        ("db", 5432, "postgres", "supabase_admin", "s3cret")
    );
    assert!(!cdc.ssl_enforced);
    assert!(!format!("{cdc:?}").contains("s3cret"));

    // Same body again → update; then a partial update.
    let again = registry
        .upsert("acme", &example_body(), &d, &c)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.tenant.id, t.id);
    let upd = registry
        .upsert("acme", &json!({"max_concurrent_users": 42}), &d, &c)
        .await
        .unwrap();
    assert!(!upd.created);
    assert_eq!(upd.tenant.max_concurrent_users, 42);
    assert_eq!(upd.tenant.extensions.len(), 1, "omitted extensions stay");
    assert_eq!(
        registry
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .max_concurrent_users,
        42
    );

    // Updates never reset limits to the env defaults.
    let d2 = TenantDefaults {
        max_events_per_second: 7,
        ..d
    };
    let upd = registry
        .upsert("acme", &json!({"suspend": true}), &d2, &c)
        .await
        .unwrap();
    assert_eq!(upd.tenant.max_events_per_second, 100);
    assert!(upd.tenant.suspend);

    // Extensions, when given, replace the list.
    let upd = registry
        .upsert("acme", &json!({"extensions": []}), &d, &c)
        .await
        .unwrap();
    assert!(upd.tenant.extensions.is_empty());
    assert!(registry
        .get("acme")
        .await
        .unwrap()
        .unwrap()
        .extensions
        .is_empty());
    assert_eq!(row_count(&db, "acme").await, 1);

    assert_eq!(registry.list().await.unwrap().len(), 1);
    assert!(registry.delete("acme").await.unwrap());
    assert!(!registry.delete("acme").await.unwrap());
    assert!(registry.get("acme").await.unwrap().is_none());
    let ext_rows: i64 = db
        .connect()
        .await
        .query_one("SELECT count(*) FROM _realtime.extensions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ext_rows, 0);
}

#[tokio::test]
async fn validation_messages() {
    let (db, registry) = migrated().await;
    let c = crypto();
    let d = TenantDefaults::default();

    assert_eq!(
        invalid(
            realtime_tenants::upsert::external_id_for_create(&json!({"name": "x"}))
                .map(|_| unreachable!())
        ),
        json!({"errors": {"external_id": ["can't be blank"]}})
    );
    assert_eq!(
        realtime_tenants::upsert::external_id_for_create(&example_body()).unwrap(),
        "acme"
    );

    // Neither secret nor JWKS: reported like the CHECK constraint, no row created.
    let body = invalid(
        registry
            .upsert("newone", &json!({"extensions": []}), &d, &c)
            .await,
    );
    assert_eq!(
        body,
        json!({"errors": {"jwt_secret": ["either jwt_secret or jwt_jwks must be provided"]}})
    );
    assert_eq!(row_count(&db, "newone").await, 0);
    // A JWKS alone is enough; missing `extensions` counts as an empty list.
    let r = registry
        .upsert("jwksonly", &json!({"jwt_jwks": {"keys": []}}), &d, &c)
        .await
        .unwrap();
    assert!(r.created && r.tenant.jwt_secret.is_none());

    let mut body = example_body();
    body["extensions"][0]["settings"]
        .as_object_mut()
        .unwrap()
        .remove("db_host");
    assert_eq!(
        invalid(registry.upsert("acme2", &body, &d, &c).await),
        json!({"errors": {"extensions": [{"settings": ["db_host can't be blank"]}]}})
    );
    let mut body = example_body();
    body["extensions"][0]["settings"]["db_port"] = json!(5432);
    assert_eq!(
        invalid(registry.upsert("acme2", &body, &d, &c).await),
        json!({"errors": {"extensions": [{"settings": ["db_port is invalid"]}]}})
    );
    assert_eq!(row_count(&db, "acme2").await, 0);

    let mut body = example_body();
    body["max_events_per_second"] = json!("lots");
    body["broadcast_adapter"] = json!("carrier-pigeon");
    assert_eq!(
        invalid(registry.upsert("acme2", &body, &d, &c).await),
        json!({"errors": {
            "max_events_per_second": ["is invalid"],
            "broadcast_adapter": ["is invalid"]
        }})
    );

    // On update: a valid and an invalid extension → one error object per extension.
    registry
        .upsert("acme", &example_body(), &d, &c)
        .await
        .unwrap();
    let ok_ext = example_body()["extensions"][0].clone();
    let body = json!({"extensions": [ok_ext, {"settings": {}}]});
    assert_eq!(
        invalid(registry.upsert("acme", &body, &d, &c).await),
        json!({"errors": {"extensions": [{}, {"type": ["can't be blank"]}]}})
    );
    let body = json!({"extensions": [{"type": "postgres_cdc_rls"}]});
    assert_eq!(
        invalid(registry.upsert("acme", &body, &d, &c).await),
        json!({"errors": {"extensions": [{"settings": ["can't be blank"]}]}})
    );
    // Integers given as strings are cast, as upstream does.
    let r = registry
        .upsert("acme", &json!({"max_joins_per_second": "12"}), &d, &c)
        .await
        .unwrap();
    assert_eq!(r.tenant.max_joins_per_second, 12);
}

#[tokio::test]
async fn extension_settings_are_normalised() {
    let (db, registry) = migrated().await;
    let c = crypto();
    let mut body = example_body();
    body["extensions"][0]["type"] = json!("postgres");
    body["extensions"][0]["settings"]["postgres_changes_pool"] = json!(10);
    body["extensions"][0]["settings"]["publication"] = json!("custom_pub");
    let t = registry
        .upsert("acme", &body, &TenantDefaults::default(), &c)
        .await
        .unwrap()
        .tenant;
    let settings: Value = db
        .connect()
        .await
        .query_one(
            "SELECT settings FROM _realtime.extensions WHERE tenant_external_id = 'acme' AND type = 'postgres_cdc_rls'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(settings["subcriber_pool_size"], 10);
    assert!(settings.get("postgres_changes_pool").is_none());
    assert_eq!(settings["publication"], "custom_pub");
    assert_eq!(settings["poll_interval_ms"], 100);
    assert_eq!(settings["db_password"], c.encrypt("s3cret").unwrap());
    let cdc = t.cdc_settings(&c).unwrap().unwrap();
    assert_eq!(cdc.subscriber_pool_size, Some(10));
    assert_eq!(cdc.publication, "custom_pub");
}

#[tokio::test]
async fn plaintext_secrets_written_by_hand_fall_back() {
    let (db, registry) = migrated().await;
    let c = crypto();
    registry
        .upsert("acme", &example_body(), &TenantDefaults::default(), &c)
        .await
        .unwrap();
    let client = db.connect().await;
    for plain in [
        "zjVAENGx7EfJ+DubQZFM/hnNhpiLXwLsQXxUijewntc=",
        "your-super-secret-jwt-token-with-at-least-32-characters-long",
    ] {
        client
            .execute(
                "UPDATE _realtime.tenants SET jwt_secret = $1 WHERE external_id = 'acme'",
                &[&plain],
            )
            .await
            .unwrap();
        let t = registry.get("acme").await.unwrap().unwrap();
        assert_eq!(t.jwt_secret_plain(&c).unwrap().as_deref(), Some(plain));
    }
    // A settings value stored in plaintext works too.
    client
        .execute(
            "UPDATE _realtime.extensions SET settings = jsonb_set(settings, '{db_host}', '\"127.0.0.1\"') WHERE tenant_external_id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    let t = registry.get("acme").await.unwrap().unwrap();
    assert_eq!(t.cdc_settings(&c).unwrap().unwrap().host, "127.0.0.1");
}

#[tokio::test]
async fn feature_flags_resolve_per_tenant() {
    let (_db, registry) = migrated().await;
    let c = crypto();
    let d = TenantDefaults::default();
    let t = registry
        .upsert("acme", &example_body(), &d, &c)
        .await
        .unwrap()
        .tenant;
    assert!(!registry
        .feature_flag_enabled(&t, "some_flag")
        .await
        .unwrap());
    // A tenant override does not resurrect a missing flag.
    let t = registry
        .upsert(
            "acme",
            &json!({"feature_flags": {"some_flag": true, "off_flag": false}}),
            &d,
            &c,
        )
        .await
        .unwrap()
        .tenant;
    assert!(!registry
        .feature_flag_enabled(&t, "some_flag")
        .await
        .unwrap());
    registry
        .upsert_feature_flag("some_flag", false, 100, None)
        .await
        .unwrap();
    assert!(
        registry
            .feature_flag_enabled(&t, "some_flag")
            .await
            .unwrap(),
        "override wins"
    );
    registry
        .upsert_feature_flag("off_flag", true, 100, None)
        .await
        .unwrap();
    assert!(!registry.feature_flag_enabled(&t, "off_flag").await.unwrap());
    registry
        .upsert_feature_flag("global", true, 100, None)
        .await
        .unwrap();
    assert!(registry.feature_flag_enabled(&t, "global").await.unwrap());
    registry
        .upsert_feature_flag("global", true, 0, None)
        .await
        .unwrap();
    assert!(!registry.feature_flag_enabled(&t, "global").await.unwrap());
    registry
        .upsert_feature_flag("global", false, 100, None)
        .await
        .unwrap();
    assert!(!registry.feature_flag_enabled(&t, "global").await.unwrap());
}

#[tokio::test]
async fn migrations_ran_is_recorded() {
    let (_db, registry) = migrated().await;
    let c = crypto();
    registry
        .upsert("acme", &example_body(), &TenantDefaults::default(), &c)
        .await
        .unwrap();
    registry.set_migrations_ran("acme", 81).await.unwrap();
    assert_eq!(
        registry.get("acme").await.unwrap().unwrap().migrations_ran,
        81
    );
}

#[tokio::test]
async fn memory_registry_behaves_like_the_database() {
    let registry = Registry::memory();
    assert!(registry.migrate().await.unwrap().applied.is_empty());
    let c = crypto();
    let d = TenantDefaults::default();
    let created = registry
        .upsert("acme", &example_body(), &d, &c)
        .await
        .unwrap();
    assert!(created.created);
    assert!(
        !registry
            .upsert("acme", &example_body(), &d, &c)
            .await
            .unwrap()
            .created
    );
    assert_eq!(
        invalid(registry.upsert("x", &json!({}), &d, &c).await),
        json!({"errors": {"jwt_secret": ["either jwt_secret or jwt_jwks must be provided"]}})
    );
    registry.set_migrations_ran("acme", 81).await.unwrap();
    assert_eq!(
        registry.get("acme").await.unwrap().unwrap().migrations_ran,
        81
    );
    assert_eq!(registry.list().await.unwrap().len(), 1);
    assert!(registry.delete("acme").await.unwrap());
    assert!(registry.get("acme").await.unwrap().is_none());
}

#[tokio::test]
async fn connection_options() {
    let db = realtime_testkit::Cluster::shared().create_database().await;
    // Forcing IPv4 works against 127.0.0.1.
    let mut cfg = common::config(&db);
    cfg.ip_version = Some(realtime_tenants::IpVersion::V4);
    let registry = Registry::connect(&cfg).await.unwrap();
    registry.migrate().await.unwrap();
    // The connection identifies itself as upstream does.
    let n: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'supabase_mt_realtime' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(n >= 1);
    // A missing CA file is a configuration error, not a retry loop.
    let mut cfg = common::config(&db);
    cfg.ssl = true;
    cfg.ssl_ca_cert = Some("/nonexistent/ca.pem".into());
    let err = Registry::connect(&cfg).await.unwrap_err();
    assert!(err.to_string().contains("DB_SSL_CA_CERT"), "{err}");
}
