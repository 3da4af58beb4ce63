//! The tenant database's room: everything that talks to a tenant database. Postgres Changes
//! (one WAL pipeline per tenant, subscriptions, filters, the RLS gate and upstream-identical
//! `postgres_changes` payloads), broadcast from the database and its replay, private-channel
//! policy checks, and the control plane's migrations, partitions and slot teardown.
//!
//! Layout:
//! - [`tenant_conn`]: connection settings built from a tenant's `postgres_cdc_rls` extension;
//!   every tenant-database connection below starts there.
//! - [`channel_policies`]: private-channel read and write checks against the tenant's RLS
//!   policies on `realtime.messages`.
//! - [`channel_db`]: the small per-tenant pool private channels use for those checks and for
//!   broadcast replay, every wait bounded ([`ChannelDatabases`]).
//! - [`db_broadcast`]: broadcast from the database (`realtime.messages` inserts streamed over a
//!   replication slot) and the replay of stored messages for joining channels.
//! - [`tenant_admin`]: control-plane work in a tenant database: tenant migrations, the
//!   janitor's partition pass, dropping a deleted tenant's slot.
//! - [`tenant_diagnosis`]: the read-only inspection `realtime doctor` runs (WAL settings,
//!   slots and their lag, the publication and RLS on its tables, roles, privileges).
//!
//! Postgres Changes:
//! - [`params`]: a join's `postgres_changes` entry → event, schema, table, filters, select.
//! - [`inspect`]: Elixir `inspect` renderings used in upstream's error texts.
//! - [`jsonb`]: PostgreSQL's canonical jsonb text (key order, spacing) for payload fragments.
//! - [`value`]: pgoutput text values → typed jsonb, as `realtime.cast` does.
//! - [`error`]: [`SubscribeError`] and the `system` messages of a subscription outcome.
//! - [`filter`]: filter evaluation in SQL (PostgreSQL semantics) and subscribe-time checks.
//! - [`catalog`]: table shapes and per-role column privileges from the tenant's catalog.
//! - [`change`]: a pgoutput change shaped like upstream's wal2json record.
//! - [`payload`]: the `data` object, byte-identical to upstream.
//! - [`rls_policy`]: the rule deciding a role's visibility of a table, from the catalog.
//! - [`rls_gate`]: row visibility under the subscriber's role and claims, judged on the WAL's
//!   row image, one statement per table and batch.
//! - [`router`]: the tenant's channels and which of them a change concerns, indexed by
//!   relation and `eq` filter value.
//! - [`eq_index`]: which `eq` filters the router may index, and their canonical values.
//! - [`sink`]: [`ChangeSink`], where a channel's events go (implemented by the gateway).
//! - [`evaluate`]: typing, filters and generated columns of one change, in SQL.
//! - [`fanout`]: one change → the events each channel receives.
//! - [`subscribe`]: resolving and validating join entries against the tenant database.
//! - [`subscription`]: a channel's live registration ([`Subscription`]).
//! - [`subscription_table`]: upstream's `realtime.subscription` rows, kept in step.
//! - [`stats`]: slot progress (replication lag) and RLS gate figures, read for monitoring.
//! - [`slot`]: the persistent slot's name, its set-up before streaming and its release, for
//!   both WAL consumers.
//! - [`slot_lease`]: when a slot another session holds may be taken (never from a live
//!   holder: the holder's status updates are its lease).
//! - [`slot_standby`]: a waiting consumer's mark, which makes a stopping holder leave the
//!   slot for it instead of dropping it.
//! - [`wal_consumer`]: the pure state machine both WAL consumers run: rows to route, when to
//!   hand on, what to confirm, and exactly-once resumption across reconnects.
//! - [`reconnect`]: the session loop both WAL consumers run, with backoff and its exits.
//! - [`follow`]: a consumer waiting for a slot another node streams, following its relay.
//! - [`relay`]: changes shared between nodes: the streaming node relays what it reads, the
//!   others follow the relay while they wait for the slot (cluster mode).
//! - [`pipeline`]: the Postgres Changes consumer: routing, the RLS gate and delivery.
//! - [`tenant`]: per-tenant state and the idle-stop handshake.
//! - [`db`]: the tenant SQL session with its caches.
//!
//! The entry point is [`Cdc`]: the gateway calls [`Cdc::subscribe`] per joined channel and
//! receives [`CdcEvent`]s on the channel's [`ChangeSink`] until the [`Subscription`] is
//! dropped. Events are pushed without waiting, in order, from the tenant's pipeline task.
//!
//! How it differs from upstream's wal2json polling, and why:
//! - Changes are streamed from a **persistent** pgoutput slot (upstream: a temporary wal2json
//!   slot polled over SQL). The slot's position only advances once a transaction's events are
//!   in the sinks, so reconnects and database restarts lose nothing; replayed transactions
//!   are skipped, so nothing arrives twice. The slot is dropped after the idle period and by
//!   [`Cdc::shutdown`] or [`Cdc::stop_tenant`]; one left by a crash is adopted by the next pipeline.
//! - The per-change work of upstream's `realtime.apply_rls` runs here, with SQL only where
//!   PostgreSQL semantics matter: filters and uncommon types are evaluated by the database in
//!   one statement per change, RLS checks for all distinct claims are pipelined in one round
//!   trip. A policy that raises affects only the subscribers whose claims triggered it.
//! - `character(n)`/`bit(n)` values and filters keep every character (upstream truncates to
//!   one); bytea filters compare bytes; stored generated columns are read from the current
//!   row; tables added to the publication after subscribing are delivered.

pub mod catalog;
pub mod change;
pub mod channel_db;
pub mod channel_policies;
pub mod db;
pub mod db_broadcast;
pub mod eq_index;
pub mod error;
pub mod evaluate;
pub mod fanout;
pub mod filter;
pub mod follow;
pub mod inspect;
pub mod jsonb;
pub mod params;
pub mod payload;
pub mod pipeline;
pub mod reconnect;
pub mod relay;
pub mod rls_gate;
pub mod rls_policy;
pub mod router;
pub mod sink;
pub mod slot;
pub mod slot_lease;
pub mod slot_standby;
pub mod stats;
pub mod subscribe;
pub mod subscription;
pub mod subscription_table;
pub mod tenant;
pub mod tenant_admin;
pub mod tenant_conn;
pub mod tenant_diagnosis;
pub mod value;
pub mod wal_consumer;

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::Value;

pub use channel_db::ChannelDatabases;
pub use error::{system_message, SubscribeError};
pub use sink::{ChangeSink, SinkCache};
pub use subscription::Subscription;

/// A row change kind that reaches subscribers (TRUNCATE never does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `INSERT`
    Insert,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
}

impl Action {
    /// The `type` string of the payload.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Insert => "INSERT",
            Action::Update => "UPDATE",
            Action::Delete => "DELETE",
        }
    }
}

/// Process-wide options.
#[derive(Debug, Clone)]
pub struct CdcOptions {
    /// `SLOT_NAME_SUFFIX`: the slot is `<slot_name>_<suffix>`; `None` is treated as empty,
    /// which gives the official image's `<slot_name>_`.
    pub slot_name_suffix: Option<String>,
    /// How long a tenant pipeline stays up after its last subscriber left (upstream: 10 min).
    pub idle_shutdown: Duration,
    /// How long `subscribe` waits for the tenant pipeline to be ready.
    pub start_timeout: Duration,
    /// How long another holder of a tenant's slot may send no status update before it is
    /// taken to be gone and terminated ([`slot_lease`]); a live holder is never terminated.
    pub slot_lease: Duration,
}

impl Default for CdcOptions {
    fn default() -> Self {
        CdcOptions {
            slot_name_suffix: None,
            idle_shutdown: Duration::from_secs(600),
            start_timeout: Duration::from_secs(20),
            slot_lease: slot_lease::DEFAULT_LEASE,
        }
    }
}

/// One channel's request to receive Postgres Changes.
#[derive(Debug)]
pub struct SubscribeRequest {
    /// The channel topic, e.g. `realtime:room1` (the `system` messages use the sub-topic).
    pub topic: String,
    /// The verified JWT claims; `role` selects the database role for privileges and RLS.
    pub claims: Value,
    /// `(id, entry)` per `postgres_changes` entry, in join order; `id` is what the join reply
    /// echoed (usually [`binding_id`] of the entry).
    pub bindings: Vec<(u32, Value)>,
    /// Where events for this channel go.
    pub sink: Arc<dyn ChangeSink>,
}

/// What a channel receives.
#[derive(Debug, Clone)]
pub enum CdcEvent {
    /// A `system` push: the full payload (`channel`, `extension`, `message`, `status`).
    System(Value),
    /// A change: push event `postgres_changes` with payload `{"data": data, "ids": ids}`;
    /// `ids` are in reverse join order, as upstream sends them.
    Change {
        /// Ids of the channel's bindings that matched.
        ids: Vec<u32>,
        /// The change object (shared by every channel that receives it).
        data: Arc<RawValue>,
    },
}

/// The id of a binding as echoed in the join reply and in change `ids`: a stable 27-bit hash
/// of the entry (keys sorted, so key order does not matter), never 0.
///
/// Upstream uses Erlang's `phash2` of the decoded map; clients only need the id to be a
/// positive integer that is stable for the channel, so this is FNV-1a over a canonical
/// rendering rather than a reproduction of `phash2`.
pub fn binding_id(params: &Value) -> u32 {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(v) = map.get(k) {
                        canonical(v, out);
                    }
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for i in items {
                    canonical(i, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(params, &mut text);
    let mut hash: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        hash ^= b as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let id = hash & ((1 << 27) - 1);
    if id == 0 {
        1
    } else {
        id
    }
}

/// Default `poll_max_record_bytes`.
const DEFAULT_MAX_RECORD_BYTES: usize = 1_048_576;

/// The Postgres Changes service: one per process, one pipeline per tenant inside.
pub struct Cdc {
    crypto: Arc<realtime_tenants::Crypto>,
    opts: CdcOptions,
    tenants: tenant::Tenants,
    /// The relay to other nodes (cluster mode).
    relay: std::sync::OnceLock<Arc<dyn relay::WalRelay>>,
}

impl Cdc {
    /// The figures of every running pipeline: tenant external id, slot name and figures.
    pub fn stats(&self) -> Vec<(String, String, Arc<stats::PipelineStats>)> {
        let tenants = match self.tenants.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        tenants
            .values()
            .map(|t| {
                (
                    t.config.external_id.clone(),
                    t.config.slot.clone(),
                    t.stats.clone(),
                )
            })
            .collect()
    }

    /// Creates the service; pipelines start on the first subscription of a tenant.
    pub fn new(crypto: Arc<realtime_tenants::Crypto>, opts: CdcOptions) -> Arc<Cdc> {
        Arc::new(Cdc {
            crypto,
            opts,
            tenants: Arc::default(),
            relay: std::sync::OnceLock::new(),
        })
    }

    /// Shares each tenant's changes with the other nodes through `relay` (once, at start): a
    /// pipeline waiting for a slot another node streams judges and delivers what it relays.
    pub fn set_relay(&self, relay: Arc<dyn relay::WalRelay>) {
        let _ = self.relay.set(relay);
    }

    /// The relay to other nodes, in cluster mode (broadcast from the database uses it too).
    pub fn relay(&self) -> Option<Arc<dyn relay::WalRelay>> {
        self.relay.get().cloned()
    }

    fn config(&self, t: &realtime_tenants::Tenant) -> Result<tenant::TenantConfig, SubscribeError> {
        let settings = tenant_conn::settings(t, &self.crypto).map_err(|e| match e {
            tenant_conn::TenantConnError::Settings { source, .. } => {
                SubscribeError::Config(format!(
                    "Postgres Changes settings of tenant {}: {source}",
                    t.external_id
                ))
            }
            tenant_conn::TenantConnError::NoDatabase { .. } => SubscribeError::Config(format!(
                "tenant {} has no postgres_cdc_rls extension configured",
                t.external_id
            )),
        })?;
        let max_record_bytes = t
            .cdc_extension()
            .and_then(|e| e.settings.get("poll_max_record_bytes"))
            .and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .map(|n| n as usize)
            .unwrap_or(DEFAULT_MAX_RECORD_BYTES);
        // Each connection of the pipeline names itself (see `db::TenantDb::connect`).
        let conn = tenant_conn::connect_options(&settings, "realtime");
        Ok(tenant::TenantConfig {
            external_id: t.external_id.clone(),
            conn,
            publication: settings.publication.clone(),
            slot: slot::slot_name(&settings.slot_name, self.opts.slot_name_suffix.as_deref()),
            max_record_bytes,
            slot_lease: self.opts.slot_lease,
        })
    }

    /// The tenant's live pipeline (started if needed), with `pending` raised; the caller
    /// lowers it when done.
    fn tenant(&self, config: tenant::TenantConfig) -> Arc<tenant::TenantCdc> {
        let mut reg = match self.tenants.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut previous = None;
        if let Some(t) = reg.get(&config.external_id) {
            if !t.is_finished() && !t.shutdown_requested() && t.config == config {
                t.pending.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return t.clone();
            }
            if t.config != config {
                // The tenant's settings changed: the old pipeline stops (its channels are
                // told to re-subscribe) and a new one starts.
                tracing::info!(tenant = %config.external_id, "Postgres Changes settings changed, restarting the pipeline");
                t.request_shutdown();
            }
            if !t.is_finished() {
                previous = Some(t.clone());
            }
        }
        let t = tenant::TenantCdc::new(config, self.opts.idle_shutdown, self.tenants.clone());
        if let Some(transport) = self.relay.get() {
            let _ = t.relay.set(relay::RelayHandle {
                transport: transport.clone(),
                key: format!("{}:{}", t.config.external_id, t.config.slot),
            });
        }
        if let Some(previous) = previous {
            // The stopping pipeline drops the slot; the new one creates it afterwards.
            t.follow(previous);
        }
        t.pending.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        reg.insert(t.config.external_id.clone(), t.clone());
        tokio::spawn(pipeline::run(t.clone()));
        t
    }

    /// Stops every pipeline and drops its slot, waiting up to 10 s: call on process
    /// shutdown. A slot left by a process that did not shut down cleanly is adopted by the
    /// next pipeline for that tenant, which then delivers the changes committed meanwhile.
    pub async fn shutdown(&self) {
        let tenants: Vec<Arc<tenant::TenantCdc>> = match self.tenants.lock() {
            Ok(g) => g.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        for t in &tenants {
            t.request_shutdown();
        }
        for t in &tenants {
            t.wait_finished(Duration::from_secs(10)).await;
        }
    }

    /// The state of the tenant's pipeline in this process, if one runs: a
    /// [`tenant::PipelineState::Standby`] is waiting for another instance's slot, not failing.
    pub fn pipeline_state(&self, external_id: &str) -> Option<tenant::PipelineState> {
        let t = match self.tenants.lock() {
            Ok(g) => g.get(external_id).cloned(),
            Err(p) => p.into_inner().get(external_id).cloned(),
        };
        t.map(|t| t.state())
    }

    /// Stops one tenant's pipeline and drops its slot, waiting up to 10 s (the tenant was
    /// reloaded, shut down, deleted, or its settings changed). Its channels' sinks are told
    /// ([`ChangeSink::pipeline_stopped`]) so they subscribe again (upstream's
    /// `postgres_cdc_rls_down`); a new pipeline starts on the next subscription, once this one
    /// has finished.
    pub async fn stop_tenant(&self, external_id: &str) {
        let t = match self.tenants.lock() {
            Ok(g) => g.get(external_id).cloned(),
            Err(p) => p.into_inner().get(external_id).cloned(),
        };
        let Some(t) = t else {
            return;
        };
        tracing::info!(tenant = %external_id, "stopping the Postgres Changes pipeline");
        t.request_shutdown();
        t.wait_finished(Duration::from_secs(10)).await;
        t.leave_registry();
    }

    /// Registers a channel's bindings with the tenant's pipeline. On success the sink has
    /// already received the `Subscribed to PostgreSQL` system message; on failure the error's
    /// text is what the gateway pushes as a `postgres_changes` system error
    /// ([`SubscribeError::system_payload`]), retrying later when
    /// [`SubscribeError::is_retryable`].
    pub async fn subscribe(
        &self,
        tenant: Arc<realtime_tenants::Tenant>,
        req: SubscribeRequest,
    ) -> Result<Subscription, SubscribeError> {
        let config = self.config(&tenant)?;
        params::check_binding_count(req.bindings.len()).map_err(SubscribeError::Params)?;
        let mut parsed = Vec::with_capacity(req.bindings.len());
        for (id, entry) in &req.bindings {
            let params = params::parse(entry).map_err(SubscribeError::Params)?;
            parsed.push((*id, params));
        }
        let claims = router::Claims::new(&req.claims);
        let t = self.tenant(config);
        let result = register(&t, &req, parsed, claims, self.opts.start_timeout).await;
        t.pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let key = result?;
        Ok(Subscription { tenant: t, key })
    }
}

async fn register(
    t: &Arc<tenant::TenantCdc>,
    req: &SubscribeRequest,
    parsed: Vec<(u32, params::ChangeParams)>,
    claims: Option<router::Claims>,
    start_timeout: Duration,
) -> Result<u64, SubscribeError> {
    t.wait_ready(start_timeout)
        .await
        .map_err(SubscribeError::Unavailable)?;
    let mut bindings = Vec::with_capacity(parsed.len());
    {
        let mut control = t.control.lock().await;
        if control.as_ref().is_none_or(|db| db.is_closed()) {
            *control = Some(
                db::TenantDb::connect(&t.config.conn, "realtime_subscription_manager")
                    .await
                    .map_err(|e| {
                        tracing::warn!(tenant = %t.config.external_id, error = %e, "tenant database unavailable for subscriptions");
                        SubscribeError::Unavailable(subscribe::TIMEOUTS.to_string())
                    })?,
            );
        }
        let Some(db) = control.as_mut() else {
            return Err(SubscribeError::Unavailable(subscribe::TIMEOUTS.to_string()));
        };
        for (id, params) in parsed {
            let resolved =
                subscribe::resolve(db, &t.config.publication, &params, claims.as_ref()).await?;
            bindings.push(router::Binding {
                id,
                params,
                tables: resolved.tables,
                eq_values: resolved.eq_values,
                uuid: uuid::Uuid::new_v4(),
            });
        }
        for b in &bindings {
            subscription_table::insert(
                &db.client,
                &t.config.publication,
                b.uuid,
                &req.claims,
                &b.params,
            )
            .await;
        }
    }
    let Some(claims) = claims else {
        return Err(SubscribeError::Unavailable(
            "claims without a role".to_string(),
        ));
    };
    let key = t.next_key();
    // Pushed before the channel is routable, so no change can overtake it. A channel already
    // gone is still registered: the pipeline drops it at its first change, and its
    // `Subscription` cleans up as usual.
    req.sink.push(
        CdcEvent::System(error::subscribed_message(&req.topic)),
        &mut SinkCache::default(),
    );
    t.router.insert(Arc::new(router::Subscriber {
        key,
        topic: req.topic.clone(),
        claims: std::sync::RwLock::new(Arc::new(claims)),
        bindings,
        sink: req.sink.clone(),
    }));
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binding_ids_are_stable_and_positive() {
        let a = binding_id(&json!({"event": "INSERT", "schema": "public", "table": "t"}));
        let b = binding_id(&json!({"table": "t", "schema": "public", "event": "INSERT"}));
        let c = binding_id(&json!({"event": "*", "schema": "public", "table": "t"}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a > 0 && a < (1 << 27));
    }
}
