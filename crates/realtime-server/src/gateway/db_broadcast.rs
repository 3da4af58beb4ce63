//! Broadcast from the database (PROTOCOL.md §6.6): while a tenant has sockets, one stream of
//! its `realtime.messages` inserts runs, and each row is fanned out as a user broadcast with
//! metadata `{"id": …}` to the channels of its namespace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use realtime_cdc::db_broadcast::{DbBroadcast, DbBroadcastOptions, DbBroadcastStream, DbPayload};
use realtime_protocol::{events, BroadcastEncoding, Outbound, UserBroadcast};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::gateway::hub::TopicKey;
use crate::gateway::tenant_resolve::LookupError;
use crate::gateway::{Gateway, TenantView};

/// How often a stream checks whether its tenant still has sockets.
const IDLE_CHECK: Duration = Duration::from_secs(10);
/// First and largest delay between failed starts (upstream: 5 s to 5 min).
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// A tenant's running database broadcast stream, as the gateway holds it.
#[derive(Default)]
pub(crate) struct DbStreamHandle {
    /// The replication connection is up.
    connected: AtomicBool,
    /// Asks the stream to stop and release its slot.
    stop: CancellationToken,
    /// Cancelled once the stream task has ended.
    done: CancellationToken,
    /// The running stream's slot and progress figures, for the metrics.
    slot: std::sync::Mutex<Option<(String, Arc<realtime_cdc::stats::SlotStats>)>>,
}

impl DbStreamHandle {
    /// Whether the stream's replication connection is up.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// The running stream's slot name and figures.
    pub(crate) fn slot_stats(&self) -> Option<(String, Arc<realtime_cdc::stats::SlotStats>)> {
        match self.slot.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// How long stopping a tenant's database work may take.
const STOP_WAIT: Duration = Duration::from_secs(10);

impl Gateway {
    /// Stops the tenant's database broadcast stream (releasing its slot, waiting up to 10 s)
    /// and closes its private-channel authorization connection (reload, shutdown, delete).
    pub async fn stop_tenant_databases(&self, tenant: &str) {
        self.databases.forget(tenant);
        let handle = self.db_streams.remove(tenant).map(|(_, h)| h);
        if let Some(h) = handle {
            h.stop.cancel();
            let _ = tokio::time::timeout(STOP_WAIT, h.done.cancelled()).await;
        }
    }

    /// Stops every tenant's database broadcast stream, in parallel (process shutdown).
    pub async fn stop_all_databases(&self) {
        let tenants: Vec<String> = self.db_streams.iter().map(|e| e.key().clone()).collect();
        let stops = tenants.iter().map(|t| self.stop_tenant_databases(t));
        futures_util::future::join_all(stops).await;
    }

    fn tenant_has_sockets(&self, tenant: &str) -> bool {
        self.sessions.iter().any(|s| &*s.tenant == tenant)
    }

    /// Starts the tenant's database broadcast stream unless it runs already. Needs database
    /// access ([`Gateway::enable_tenant_databases`]); without it, nothing happens.
    pub(crate) fn ensure_db_broadcasts(self: &Arc<Self>, tenant: &str) {
        if self.databases.crypto().is_none() {
            return;
        }
        let handle = Arc::new(DbStreamHandle::default());
        match self.db_streams.entry(tenant.to_string()) {
            dashmap::mapref::entry::Entry::Occupied(_) => return,
            dashmap::mapref::entry::Entry::Vacant(v) => {
                v.insert(handle.clone());
            }
        }
        let gw = self.clone();
        let tenant = tenant.to_string();
        tokio::spawn(async move {
            gw.run_db_broadcasts(&tenant, &handle).await;
            // A stream started after this one was stopped keeps its entry.
            gw.db_streams
                .remove_if(&tenant, |_, h| Arc::ptr_eq(h, &handle));
            handle.done.cancel();
        });
    }

    /// Whether the tenant's replication connection (the database broadcast stream) is up.
    pub fn replication_ready(&self, tenant: &str) -> bool {
        self.db_streams
            .get(tenant)
            .map(|h| h.connected.load(Ordering::SeqCst))
            .unwrap_or(false)
    }

    async fn run_db_broadcasts(self: &Arc<Self>, tenant: &str, handle: &DbStreamHandle) {
        let connected = &handle.connected;
        let mut retry = RETRY_MIN;
        while self.tenant_has_sockets(tenant) && !handle.stop.is_cancelled() {
            let (Some(crypto), Some(row)) =
                (self.databases.crypto(), self.registry_row(tenant).await)
            else {
                return;
            };
            let (tx, mut rx) = mpsc::channel::<DbBroadcast>(1024);
            let opts = DbBroadcastOptions {
                slot_name_suffix: self.settings.slot_name_suffix.clone(),
                relay: self.cdc.as_ref().and_then(|c| c.relay()),
                ..DbBroadcastOptions::default()
            };
            let stream = match DbBroadcastStream::start(row, crypto, opts, tx).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "UnableToStartBroadcastChanges");
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = handle.stop.cancelled() => return,
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            };
            retry = RETRY_MIN;
            connected.store(true, Ordering::SeqCst);
            if let Ok(mut s) = handle.slot.lock() {
                *s = Some((stream.slot().to_string(), stream.stats()));
            }
            // The tenant as last read, for rows that arrive while the registry is unreachable.
            let mut known: Option<Arc<TenantView>> = None;
            loop {
                tokio::select! {
                    _ = handle.stop.cancelled() => {
                        connected.store(false, Ordering::SeqCst);
                        if let Err(e) = stream.stop().await {
                            tracing::warn!(tenant, error = %e, "broadcast stream stop failed");
                        }
                        return;
                    }
                    b = rx.recv() => match b {
                        Some(b) => self.deliver_database_broadcast(tenant, &b, &mut known).await,
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
    /// is triggered, or once the tenant is gone. `known` is the tenant as last read: the row's
    /// slot position may already be confirmed, so a registry that cannot be reached must not
    /// lose it.
    pub async fn deliver_database_broadcast(
        &self,
        tenant: &str,
        b: &DbBroadcast,
        known: &mut Option<Arc<TenantView>>,
    ) {
        let Some(view) = current_view(self.tenants.get(tenant).await, known, tenant) else {
            return;
        };
        let limit = view.limits.max_events_per_second;
        let rates = self.limits.rates(tenant);
        if rates.events.triggered(limit) {
            return;
        }
        rates.events.add(1);
        let now = chrono::Utc::now();
        let committed = now.signed_duration_since(b.committed_at);
        let inserted = now.signed_duration_since(b.inserted_at.and_utc());
        rates.metrics.database_broadcast(
            committed.to_std().unwrap_or_default(),
            inserted.to_std().unwrap_or_default(),
        );
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
            topic: format!("{}{}", events::TOPIC_PREFIX, b.topic),
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
        self.deliver_local(&key, &msg, limit, |s| {
            s.perms
                .replayed
                .lock()
                .map(|ids| !ids.contains(&b.id))
                .unwrap_or(true)
        });
        // Other nodes deliver the row from the relay of the stream, not from here.
    }
}

/// The tenant to deliver a row for: the fresh read, or, when the registry could not be read,
/// the last one (`None` only when the tenant is gone or was never read).
fn current_view(
    read: Result<Option<Arc<TenantView>>, LookupError>,
    known: &mut Option<Arc<TenantView>>,
    tenant: &str,
) -> Option<Arc<TenantView>> {
    match read {
        Ok(Some(view)) => {
            *known = Some(view.clone());
            Some(view)
        }
        Ok(None) => {
            *known = None;
            None
        }
        Err(e) => {
            tracing::warn!(tenant, error = %e.0, "tenant lookup failed, delivering with the last known settings");
            known.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_flowing_while_the_registry_is_unreachable() {
        let view = Arc::new(TenantView::new(
            "t",
            "a-secret-long-enough-for-anything-here",
        ));
        let mut known = None;
        let fresh = current_view(Ok(Some(view.clone())), &mut known, "t");
        assert!(fresh.is_some());
        // The registry is down: the last read still delivers.
        let during = current_view(Err(LookupError("down".into())), &mut known, "t");
        assert!(during.is_some_and(|v| Arc::ptr_eq(&v, &view)));
        // The tenant was deleted: nothing more is delivered, even if the registry fails next.
        assert!(current_view(Ok(None), &mut known, "t").is_none());
        assert!(current_view(Err(LookupError("down".into())), &mut known, "t").is_none());
    }
}
