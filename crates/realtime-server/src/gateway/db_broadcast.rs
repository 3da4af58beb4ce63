//! Broadcast from the database (PROTOCOL.md §6.6): while a tenant has sockets, one stream of
//! its `realtime.messages` inserts runs, and each row is fanned out as a user broadcast with
//! metadata `{"id": …}` to the channels of its namespace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use realtime_cdc::db_broadcast::{DbBroadcast, DbBroadcastOptions, DbBroadcastStream, DbPayload};
use realtime_protocol::{BroadcastEncoding, Outbound, UserBroadcast};
use serde_json::json;
use tokio::sync::mpsc;

use crate::gateway::hub::TopicKey;
use crate::gateway::Gateway;

/// How often a stream checks whether its tenant still has sockets.
const IDLE_CHECK: Duration = Duration::from_secs(10);
/// First and largest delay between failed starts (upstream: 5 s to 5 min).
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

impl Gateway {
    fn tenant_has_sockets(&self, tenant: &str) -> bool {
        self.sessions.iter().any(|s| &*s.tenant == tenant)
    }

    /// Starts the tenant's database broadcast stream unless it runs already. Needs database
    /// access ([`Gateway::enable_tenant_databases`]); without it, nothing happens.
    pub(crate) fn ensure_db_broadcasts(self: &Arc<Self>, tenant: &str) {
        if self.databases.crypto().is_none() {
            return;
        }
        let connected = Arc::new(AtomicBool::new(false));
        if self
            .db_streams
            .insert(tenant.to_string(), connected.clone())
            .is_some()
        {
            return;
        }
        let gw = self.clone();
        let tenant = tenant.to_string();
        tokio::spawn(async move {
            gw.run_db_broadcasts(&tenant, &connected).await;
            gw.db_streams.remove(&tenant);
        });
    }

    /// Whether the tenant's replication connection (the database broadcast stream) is up.
    pub fn replication_ready(&self, tenant: &str) -> bool {
        self.db_streams
            .get(tenant)
            .map(|c| c.load(Ordering::SeqCst))
            .unwrap_or(false)
    }

    async fn run_db_broadcasts(self: &Arc<Self>, tenant: &str, connected: &AtomicBool) {
        let mut retry = RETRY_MIN;
        while self.tenant_has_sockets(tenant) {
            let (Some(crypto), Some(row)) =
                (self.databases.crypto(), self.registry_row(tenant).await)
            else {
                return;
            };
            let (tx, mut rx) = mpsc::channel::<DbBroadcast>(1024);
            let opts = DbBroadcastOptions {
                slot_name_suffix: self.settings.slot_name_suffix.clone(),
                ..DbBroadcastOptions::default()
            };
            let stream = match DbBroadcastStream::start(row, crypto, opts, tx).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "UnableToStartBroadcastChanges");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            };
            retry = RETRY_MIN;
            connected.store(true, Ordering::SeqCst);
            loop {
                tokio::select! {
                    b = rx.recv() => match b {
                        Some(b) => self.deliver_database_broadcast(tenant, &b).await,
                        None => {
                            connected.store(false, Ordering::SeqCst);
                            break;
                        }
                    },
                    _ = tokio::time::sleep(IDLE_CHECK) => {
                        if !self.tenant_has_sockets(tenant) {
                            if let Err(e) = stream.stop().await {
                                tracing::warn!(tenant, error = %e, "broadcast stream stop failed");
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Fans one database row out to its namespace; dropped while the tenant's events limiter
    /// is triggered.
    pub async fn deliver_database_broadcast(&self, tenant: &str, b: &DbBroadcast) {
        let Ok(Some(view)) = self.tenants.get(tenant).await else {
            return;
        };
        let limit = view.limits.max_events_per_second;
        let rates = self.limits.rates(tenant);
        if rates.events.triggered(limit) {
            return;
        }
        rates.events.add(1);
        let (encoding, payload) = match &b.payload {
            DbPayload::Json(raw) => (
                BroadcastEncoding::Json,
                Bytes::copy_from_slice(raw.get().as_bytes()),
            ),
            DbPayload::Binary(bytes) => (BroadcastEncoding::Binary, bytes.clone()),
        };
        let msg = Outbound::UserBroadcast(UserBroadcast {
            join_ref: None,
            msg_ref: None,
            topic: format!("realtime:{}", b.topic),
            event: b.event.clone(),
            metadata: Bytes::from(json!({"id": b.id}).to_string()),
            encoding,
            payload,
        });
        let key = TopicKey {
            tenant: Arc::from(tenant),
            private: b.private,
            sub: Arc::from(b.topic.as_str()),
        };
        // A channel that replayed this row at join does not get it again.
        self.deliver_broadcast_where(&key, &msg, limit, |s| {
            s.perms
                .replayed
                .lock()
                .map(|ids| !ids.contains(&b.id))
                .unwrap_or(true)
        });
    }
}
