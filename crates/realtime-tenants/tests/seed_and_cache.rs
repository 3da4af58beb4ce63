//! The self-host seed and the tenant cache against a real registry.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{crypto, migrated};
use realtime_tenants::{
    seed_self_host, Crypto, SeedConfig, SeedError, TenantCache, TenantDefaults,
};
use serde_json::{json, Value};

fn compose_seed() -> SeedConfig {
    SeedConfig {
        api_jwt_secret: Some("your-super-secret-jwt-token-with-at-least-32-characters-long".into()),
        db_host: Some("db".into()),
        db_port: Some("5432".into()),
        db_name: Some("postgres".into()),
        db_user: Some("supabase_admin".into()),
        db_password: Some("your-super-secret-and-long-postgres-password".into()),
        ..SeedConfig::default()
    }
}

#[tokio::test]
async fn seed_matches_upstream_and_is_idempotent() {
    let (db, registry) = migrated().await;
    let c = crypto();
    let first = seed_self_host(&registry, &compose_seed(), &c)
        .await
        .unwrap();
    let client = db.connect().await;

    let row = client
        .query_one(
            "SELECT external_id, name, max_concurrent_users, max_events_per_second, max_joins_per_second, \
                    max_channels_per_client, max_bytes_per_second, max_presence_events_per_second, \
                    max_payload_size_in_kb, suspend, private_only, presence_enabled, postgres_cdc_default, \
                    jwt_secret, jwt_jwks, migrations_ran, broadcast_adapter, feature_flags \
             FROM _realtime.tenants",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "realtime-dev");
    assert_eq!(row.get::<_, String>(1), "realtime-dev");
    let limits: Vec<i32> = (2..9).map(|i| row.get(i)).collect();
    assert_eq!(limits, vec![200, 100, 100, 100, 100_000, 1000, 3000]);
    assert_eq!(
        (
            row.get::<_, bool>(9),
            row.get::<_, bool>(10),
            row.get::<_, bool>(11)
        ),
        (false, false, false)
    );
    assert_eq!(row.get::<_, String>(12), "postgres_cdc_rls");
    assert_eq!(
        row.get::<_, String>(13),
        "eGxa2ZKVreSn7eWieRQdp60i5H6KJLiST7splFU6MVHylMSAoQ2SjsTrTTQo/+bmYjQcO4hNnGTU+D1wtlXreA=="
    );
    assert_eq!(row.get::<_, Option<Value>>(14), None);
    assert_eq!(row.get::<_, i32>(15), 0);
    assert_eq!(row.get::<_, String>(16), "gen_rpc");
    assert_eq!(row.get::<_, Value>(17), json!({}));

    let ext = client
        .query_one("SELECT type, settings FROM _realtime.extensions", &[])
        .await
        .unwrap();
    assert_eq!(ext.get::<_, String>(0), "postgres_cdc_rls");
    assert_eq!(
        ext.get::<_, Value>(1),
        json!({
            "db_host": "QhixI0o7PYIABziLUL4f0A==",
            "db_port": "+enMDFi1J/3IrrquHHwUmA==",
            "db_name": "sWBpZNdjggEPTQVlI52Zfw==",
            "db_user": "uxbEq/zz8DXVD53TOI1zmw==",
            "db_password": "eGxa2ZKVreSn7eWieRQdp74vN25K+qFgdnxmDCKe4p20+C0410WXonzXTEj9CgYx",
            "region": "us-east-1",
            "ssl_enforced": false,
            "poll_interval_ms": 100,
            "poll_max_changes": 100,
            "poll_max_record_bytes": 1048576,
            "publication": "supabase_realtime",
            "slot_name": "supabase_realtime_replication_slot"
        })
    );
    let flag = client
        .query_one(
            "SELECT enabled, rollout_percentage, bucket_key FROM _realtime.feature_flags WHERE name = 'gcm_encryption_backfill'",
            &[],
        )
        .await
        .unwrap();
    assert!(flag.get::<_, bool>(0));
    assert_eq!(flag.get::<_, i32>(1), 100);
    assert_eq!(flag.get::<_, Option<String>>(2), None);

    // A restart: manual changes are lost, the id changes, still exactly one tenant.
    client
        .batch_execute(
            "UPDATE _realtime.tenants SET max_concurrent_users = 7;
             UPDATE _realtime.feature_flags SET enabled = false, rollout_percentage = 5",
        )
        .await
        .unwrap();
    let second = seed_self_host(&registry, &compose_seed(), &c)
        .await
        .unwrap();
    assert_ne!(first.id, second.id);
    let rows = client
        .query(
            "SELECT id, max_concurrent_users FROM _realtime.tenants",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, uuid::Uuid>(0), second.id);
    assert_eq!(rows[0].get::<_, i32>(1), 200);
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM _realtime.extensions WHERE tenant_external_id = 'realtime-dev'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let flag = client
        .query_one(
            "SELECT enabled, rollout_percentage FROM _realtime.feature_flags",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((flag.get::<_, bool>(0), flag.get::<_, i32>(1)), (true, 100));
    assert_eq!(registry.get("realtime-dev").await.unwrap().unwrap(), second);

    // Another tenant name leaves realtime-dev untouched.
    let acme = SeedConfig {
        tenant_name: Some("acme".into()),
        api_jwt_jwks: Some(SeedConfig::parse_jwks(r#"{"keys":[]}"#).unwrap()),
        ..compose_seed()
    };
    let t = seed_self_host(&registry, &acme, &c).await.unwrap();
    assert_eq!(t.jwt_jwks, Some(json!({"keys": []})));
    let ids: Vec<String> = client
        .query("SELECT external_id FROM _realtime.tenants ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec!["acme", "realtime-dev"]);
    assert_eq!(
        registry.get("realtime-dev").await.unwrap().unwrap().id,
        second.id
    );
}

#[tokio::test]
async fn seed_fallbacks_and_failures() {
    let (_db, registry) = migrated().await;
    let c = crypto();
    let t = seed_self_host(&registry, &SeedConfig::default(), &c)
        .await
        .unwrap();
    assert_eq!(
        t.jwt_secret.as_deref(),
        Some("iNjicxc4+llvc9wovDvqymwfnj9teWMlyOIbJ8Fh6j2WNU8CIJ2ZgjR6MUIKqSmeDmvpsKLsZ9jgXJmQPpwL8w==")
    );
    let cdc = t.cdc_settings(&c).unwrap().unwrap();
    assert_eq!(
        (
            cdc.host.as_str(),
            cdc.port,
            cdc.db_name.as_str(),
            cdc.user.as_str(),
            cdc.password.as_str()
        ),
        (
            "host.docker.internal",
            5433,
            "postgres",
            "supabase_admin",
            "postgres"
        )
    );
    assert_eq!(cdc.region.as_deref(), Some("us-east-1"));

    let err = SeedConfig::parse_jwks("{bad").unwrap_err();
    assert!(err.to_string().contains("API_JWT_JWKS"), "{err}");
    let not_object = SeedConfig {
        api_jwt_jwks: Some(json!([1])),
        ..SeedConfig::default()
    };
    assert!(matches!(
        seed_self_host(&registry, &not_object, &c).await,
        Err(SeedError::Invalid(_))
    ));

    // Seeding needs DB_ENC_KEY even when GCM writes are on.
    let gcm_only = Crypto::new(None, Some(vec![3; 32]), true).unwrap();
    let err = seed_self_host(&registry, &SeedConfig::default(), &gcm_only)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("DB_ENC_KEY must be set to exactly 16 bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn cache_ttl_invalidation_and_misses() {
    let (db, registry) = migrated().await;
    let registry = Arc::new(registry);
    let c = crypto();
    let ttl = Duration::from_millis(400);
    let cache = TenantCache::new(registry.clone(), ttl);
    let client = db.connect().await;

    // Not found is remembered briefly: a tenant created behind the cache's back right after a
    // miss shows up once that memory lapses (one created through `put` at once, below).
    assert!(cache.get("acme").await.unwrap().is_none());
    let body = json!({"jwt_secret": "a-secret-long-enough-for-anything-here", "extensions": []});
    registry
        .upsert("acme", &body, &TenantDefaults::default(), &c)
        .await
        .unwrap();
    assert!(cache.get("acme").await.unwrap().is_none());
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let t = cache.get("acme").await.unwrap().unwrap();
    assert_eq!(t.max_concurrent_users, 200);

    // A change made in SQL stays invisible until the TTL expires.
    client
        .execute(
            "UPDATE _realtime.tenants SET max_concurrent_users = 9 WHERE external_id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        cache
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .max_concurrent_users,
        200
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(
        cache
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .max_concurrent_users,
        9
    );

    // put replaces the entry immediately (API update).
    let updated = registry
        .upsert(
            "acme",
            &json!({"max_concurrent_users": 42}),
            &TenantDefaults::default(),
            &c,
        )
        .await
        .unwrap()
        .tenant;
    assert_eq!(
        cache
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .max_concurrent_users,
        9
    );
    cache.put(updated);
    assert_eq!(
        cache
            .get("acme")
            .await
            .unwrap()
            .unwrap()
            .max_concurrent_users,
        42
    );

    // invalidate forces a fresh read (API delete).
    registry.delete("acme").await.unwrap();
    assert!(cache.get("acme").await.unwrap().is_some());
    cache.invalidate("acme");
    assert!(cache.get("acme").await.unwrap().is_none());
}

/// Many requests for the same tenant at once cost one registry read, known or not; an
/// unknown one is asked again only after a second.
#[tokio::test]
async fn concurrent_misses_share_one_read_and_unknown_ids_are_remembered() {
    let (_db, registry) = migrated().await;
    let registry = Arc::new(registry);
    let c = crypto();
    let cache = TenantCache::new(registry.clone(), Duration::from_secs(30));
    let lookups = (0..50).map(|_| cache.get("nobody"));
    let answers = futures_util::future::join_all(lookups).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(None))));
    assert_eq!(cache.registry_reads(), 1);
    assert!(cache.get("nobody").await.unwrap().is_none());
    assert_eq!(cache.registry_reads(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(cache.get("nobody").await.unwrap().is_none());
    assert_eq!(cache.registry_reads(), 2);

    let body = json!({"jwt_secret": "a-secret-long-enough-for-anything-here", "extensions": []});
    registry
        .upsert("known", &body, &TenantDefaults::default(), &c)
        .await
        .unwrap();
    let lookups = (0..50).map(|_| cache.get("known"));
    let answers = futures_util::future::join_all(lookups).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(Some(_)))));
    assert_eq!(cache.registry_reads(), 3);
}

#[tokio::test]
async fn cache_propagates_registry_errors() {
    let db = realtime_testkit::Cluster::shared().create_database().await;
    let mut cfg = common::config(&db);
    cfg.after_connect_query = Some("SET search_path TO pg_catalog".into());
    let registry = Arc::new(realtime_tenants::Registry::connect(&cfg).await.unwrap());
    let cache = TenantCache::new(registry, Duration::from_secs(30));
    let err = cache.get("acme").await.unwrap_err();
    assert!(err.to_string().contains("tenants"), "{err}");
}

#[tokio::test]
async fn gcm_backfill_on_cache_miss() {
    let (db, registry) = migrated().await;
    let registry = Arc::new(registry);
    let ecb = crypto();
    seed_self_host(&registry, &compose_seed(), &ecb)
        .await
        .unwrap();
    let client = db.connect().await;

    // GCM requested without a key: nothing is rewritten.
    let no_key = Arc::new(Crypto::new(Some(b"supabaserealtime".to_vec()), None, true).unwrap());
    let cache =
        TenantCache::new(registry.clone(), Duration::from_secs(30)).with_gcm_backfill(no_key);
    cache.get("realtime-dev").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let secret: String = client
        .query_one("SELECT jwt_secret FROM _realtime.tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!secret.starts_with("g1:"));

    let gcm = Arc::new(
        Crypto::new(
            Some(b"supabaserealtime".to_vec()),
            Some(b"12345678901234567890123456789012".to_vec()),
            true,
        )
        .unwrap(),
    );
    let cache =
        TenantCache::new(registry.clone(), Duration::from_secs(30)).with_gcm_backfill(gcm.clone());
    let before = cache.get("realtime-dev").await.unwrap().unwrap();
    let mut migrated_at = None;
    for _ in 0..50 {
        migrated_at = client
            .query_one("SELECT gcm_migrated_at FROM _realtime.tenants", &[])
            .await
            .unwrap()
            .get::<_, Option<chrono::NaiveDateTime>>(0);
        if migrated_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(migrated_at.is_some(), "gcm_migrated_at set");
    let row = client
        .query_one(
            "SELECT t.jwt_secret, e.settings FROM _realtime.tenants t JOIN _realtime.extensions e ON e.tenant_external_id = t.external_id",
            &[],
        )
        .await
        .unwrap();
    let secret: String = row.get(0);
    assert!(secret.starts_with("g1:"), "{secret}");
    assert_eq!(
        gcm.decrypt(&secret).unwrap().value,
        "your-super-secret-jwt-token-with-at-least-32-characters-long"
    );
    let settings: Value = row.get(1);
    for (key, plain) in [
        ("db_host", "db"),
        ("db_port", "5432"),
        ("db_name", "postgres"),
        ("db_user", "supabase_admin"),
        (
            "db_password",
            "your-super-secret-and-long-postgres-password",
        ),
    ] {
        let v = settings[key].as_str().unwrap();
        assert!(v.starts_with("g1:"), "{key}");
        assert_eq!(gcm.decrypt(v).unwrap().value, plain);
    }
    assert_eq!(settings["region"], "us-east-1");
    let after = registry.get("realtime-dev").await.unwrap().unwrap();
    assert_eq!(
        after.cdc_settings(&gcm).unwrap(),
        before.cdc_settings(&gcm).unwrap()
    );
}
