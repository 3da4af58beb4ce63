//! Shared helpers for the registry end-to-end tests.
#![allow(dead_code)]

use realtime_tenants::{Crypto, Registry, RegistryConfig};
use realtime_testkit::{Cluster, TestDb, SUPERUSER, SUPERUSER_PASSWORD};

pub const AFTER_CONNECT: &str = "SET search_path TO _realtime";

pub fn config(db: &TestDb) -> RegistryConfig {
    RegistryConfig {
        host: db.host().to_string(),
        port: db.port,
        dbname: db.name.clone(),
        user: SUPERUSER.to_string(),
        password: SUPERUSER_PASSWORD.to_string(),
        after_connect_query: Some(AFTER_CONNECT.to_string()),
        pool_size: 3,
        ..RegistryConfig::default()
    }
}

pub fn crypto() -> Crypto {
    Crypto::new(Some(b"supabaserealtime".to_vec()), None, false).unwrap()
}

/// A fresh database with an empty `_realtime` schema.
pub async fn fresh_db() -> TestDb {
    let db = Cluster::shared().create_database().await;
    db.connect()
        .await
        .batch_execute("CREATE SCHEMA IF NOT EXISTS _realtime")
        .await
        .unwrap();
    db
}

/// A fresh database with a migrated registry.
pub async fn migrated() -> (TestDb, Registry) {
    let db = fresh_db().await;
    let registry = Registry::connect(&config(&db)).await.unwrap();
    registry.migrate().await.unwrap();
    (db, registry)
}

pub async fn versions(client: &tokio_postgres::Client) -> Vec<i64> {
    client
        .query(
            "SELECT version::text FROM _realtime.schema_migrations ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0).parse().unwrap())
        .collect()
}
