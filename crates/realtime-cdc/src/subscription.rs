//! A channel's live registration with its tenant's pipeline: claims refreshes, and
//! unsubscribing on drop.

use std::sync::Arc;

use serde_json::Value;

use crate::{error, router, subscription_table, tenant, CdcEvent, SinkCache};

/// A live subscription; dropping it unsubscribes the channel.
pub struct Subscription {
    pub(crate) tenant: Arc<tenant::TenantCdc>,
    pub(crate) key: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("tenant", &self.tenant.config.external_id)
            .field("key", &self.key)
            .finish()
    }
}

impl Subscription {
    /// This channel's entry in the tenant's router, while it is registered.
    fn registered(&self) -> Option<Arc<router::Subscriber>> {
        self.tenant
            .router
            .all()
            .into_iter()
            .find(|s| s.key == self.key)
    }

    /// Replaces the claims after an `access_token` refresh: privileges and RLS use them for
    /// subsequent changes. Claims without a `role` are ignored (the gateway refuses such
    /// tokens).
    ///
    /// Like upstream's re-subscription after a token change, the channel then receives
    /// `Subscribed to PostgreSQL` again.
    pub fn update_claims(&self, claims: Value) {
        let Some(new) = router::Claims::new(&claims) else {
            return;
        };
        let Some(s) = self.registered() else {
            return;
        };
        match s.claims.write() {
            Ok(mut c) => *c = Arc::new(new),
            Err(p) => *p.into_inner() = Arc::new(new),
        }
        // Same road as the changes, so it is ordered with them. A refused push means the
        // socket is closing; its session drops this subscription, which cleans up.
        let message = CdcEvent::System(error::subscribed_message(&s.topic));
        s.sink.push(message, &mut SinkCache::default());
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(sub) = self.registered() else {
            return;
        };
        self.tenant.router.remove(self.key);
        let ids: Vec<uuid::Uuid> = sub.bindings.iter().map(|b| b.uuid).collect();
        let tenant = self.tenant.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            // Registered as pending so the pipeline does not stop before the rows are gone.
            tenant
                .pending
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            handle.spawn(async move {
                if let Some(db) = tenant.control.lock().await.as_ref() {
                    subscription_table::delete(&db.client, &ids).await;
                }
                tenant
                    .pending
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    }
}
