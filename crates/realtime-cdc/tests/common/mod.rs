//! Shared setup for the end-to-end tests: a fresh database with upstream's fixture table, a
//! tenant pointing at it, and helpers to subscribe and read events.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use realtime_cdc::{
    Cdc, CdcEvent, CdcOptions, ChangeSink, SinkCache, SubscribeError, SubscribeRequest,
    Subscription,
};
use realtime_tenants::{Crypto, Extension, Tenant};
use realtime_testkit::{Cluster, TestDb, SUPERUSER, SUPERUSER_PASSWORD};
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub struct Env {
    pub db: TestDb,
    pub sql: tokio_postgres::Client,
    pub cdc: Arc<Cdc>,
    pub tenant: Arc<Tenant>,
}

/// Logs of the crate under test (RUST_LOG overrides), once per test process.
pub fn tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "realtime_cdc=info".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn crypto() -> Arc<Crypto> {
    Arc::new(Crypto::new(Some(b"supabaserealtime".to_vec()), None, false).unwrap())
}

pub fn tenant_for(db: &TestDb, crypto: &Crypto, extra: Value) -> Tenant {
    let enc = |s: &str| Value::String(crypto.encrypt_ecb(s).unwrap());
    let mut settings = json!({
        "region": "local",
        "db_host": enc(db.host()),
        "db_port": enc(&db.port.to_string()),
        "db_name": enc(&db.name),
        "db_user": enc(SUPERUSER),
        "db_password": enc(SUPERUSER_PASSWORD),
        "publication": "supabase_realtime",
        "slot_name": "supabase_realtime_replication_slot",
        "ssl_enforced": false,
    });
    if let (Some(m), Value::Object(extra)) = (settings.as_object_mut(), extra) {
        m.extend(extra);
    }
    let now = chrono::Utc::now().naive_utc();
    Tenant {
        id: uuid::Uuid::new_v4(),
        name: Some(db.name.clone()),
        external_id: db.name.clone(),
        jwt_secret: None,
        jwt_jwks: None,
        max_concurrent_users: 200,
        max_events_per_second: 100,
        max_bytes_per_second: 100_000,
        max_channels_per_client: 100,
        max_joins_per_second: 100,
        postgres_cdc_default: Some("postgres_cdc_rls".into()),
        suspend: false,
        notify_private_alpha: false,
        private_only: false,
        migrations_ran: 0,
        broadcast_adapter: None,
        max_presence_events_per_second: None,
        max_payload_size_in_kb: None,
        max_client_presence_events_per_window: None,
        client_presence_window_ms: None,
        presence_enabled: false,
        feature_flags: json!({}),
        gcm_migrated_at: None,
        inserted_at: now,
        updated_at: now,
        extensions: vec![Extension {
            id: uuid::Uuid::new_v4(),
            r#type: Some("postgres_cdc_rls".into()),
            settings,
            tenant_external_id: db.name.clone(),
            inserted_at: now,
            updated_at: now,
        }],
    }
}

pub const FIXTURE: &str = "
create table public.test (id int4 primary key, details text, binary_data bytea);
grant all on public.test to anon, authenticated;
alter publication supabase_realtime add table public.test;";

/// A database with fixture F plus `extra_sql`, and a CDC service whose slot is unique to it.
pub async fn env_with(extra_sql: &str, tenant_extra: Value) -> Env {
    tracing();
    let db = Cluster::shared().create_database().await;
    let sql = db.connect().await;
    sql.batch_execute(FIXTURE).await.unwrap();
    if !extra_sql.is_empty() {
        sql.batch_execute(extra_sql).await.unwrap();
    }
    let crypto = crypto();
    let tenant = Arc::new(tenant_for(&db, &crypto, tenant_extra));
    let cdc = Cdc::new(
        crypto,
        CdcOptions {
            slot_name_suffix: Some(db.name.clone()),
            idle_shutdown: Duration::from_millis(500),
            ..CdcOptions::default()
        },
    );
    Env {
        db,
        sql,
        cdc,
        tenant,
    }
}

pub async fn env(extra_sql: &str) -> Env {
    env_with(extra_sql, json!({})).await
}

/// A sink over an unbounded queue, so tests read events in order. A stopped pipeline closes
/// the queue: the receiver then sees its end.
#[derive(Debug)]
pub struct TestSink {
    tx: std::sync::Mutex<Option<mpsc::UnboundedSender<CdcEvent>>>,
}

impl TestSink {
    pub fn channel() -> (Arc<dyn ChangeSink>, mpsc::UnboundedReceiver<CdcEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = TestSink {
            tx: std::sync::Mutex::new(Some(tx)),
        };
        (Arc::new(sink), rx)
    }
}

impl ChangeSink for TestSink {
    fn push(&self, event: CdcEvent, _: &mut SinkCache) -> bool {
        match &*self.tx.lock().unwrap() {
            Some(tx) => tx.send(event).is_ok(),
            None => false,
        }
    }

    fn pipeline_stopped(&self) {
        self.tx.lock().unwrap().take();
    }
}

pub struct Channel {
    pub sub: Subscription,
    pub rx: mpsc::UnboundedReceiver<CdcEvent>,
    pub ids: Vec<u32>,
}

pub fn anon() -> Value {
    json!({"role": "anon", "exp": 9999999999u64})
}

impl Env {
    pub async fn try_subscribe(
        &self,
        claims: Value,
        entries: Vec<Value>,
    ) -> Result<Channel, SubscribeError> {
        self.try_subscribe_on(&self.cdc, claims, entries).await
    }

    /// Subscribes through `cdc` (e.g. a second service on the same database).
    pub async fn try_subscribe_on(
        &self,
        cdc: &Cdc,
        claims: Value,
        entries: Vec<Value>,
    ) -> Result<Channel, SubscribeError> {
        let (sink, rx) = TestSink::channel();
        let bindings: Vec<(u32, Value)> = entries
            .into_iter()
            .map(|e| (realtime_cdc::binding_id(&e), e))
            .collect();
        let ids = bindings.iter().map(|b| b.0).collect();
        let sub = cdc
            .subscribe(
                self.tenant.clone(),
                SubscribeRequest {
                    topic: "realtime:any".into(),
                    claims,
                    bindings,
                    sink,
                },
            )
            .await?;
        let mut ch = Channel { sub, rx, ids };
        match ch.next_event().await {
            CdcEvent::System(v) => assert_eq!(
                v,
                json!({"channel": "any", "extension": "postgres_changes", "message": "Subscribed to PostgreSQL", "status": "ok"})
            ),
            other => panic!("expected the subscribed message, got {other:?}"),
        }
        Ok(ch)
    }

    pub async fn subscribe(&self, claims: Value, entries: Vec<Value>) -> Channel {
        self.try_subscribe(claims, entries).await.unwrap()
    }

    pub async fn exec(&self, sql: &str) {
        self.sql.batch_execute(sql).await.unwrap();
    }
}

impl Channel {
    pub async fn next_event(&mut self) -> CdcEvent {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("no event within 10 s")
            .expect("sink closed")
    }

    /// The next change: (ids, data text).
    pub async fn next_change(&mut self) -> (Vec<u32>, String) {
        match self.next_event().await {
            CdcEvent::Change { ids, data } => (ids, data.get().to_string()),
            other => panic!("expected a change, got {other:?}"),
        }
    }

    pub async fn next_data(&mut self) -> Value {
        let (_, text) = self.next_change().await;
        serde_json::from_str(&text).unwrap()
    }

    /// Asserts nothing arrives within `ms`.
    pub async fn assert_quiet(&mut self, ms: u64) {
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(ms), self.rx.recv()).await
        {
            panic!("unexpected event {ev:?}");
        }
    }
}

pub fn ts_ok(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 24 && s.ends_with('Z') && &s[10..11] == "T" && &s[19..20] == "."
}

pub const COLS: &str = r#"[{"name":"id","type":"int4"},{"name":"details","type":"text"},{"name":"binary_data","type":"bytea"}]"#;

pub fn cols() -> Value {
    serde_json::from_str(COLS).unwrap()
}
