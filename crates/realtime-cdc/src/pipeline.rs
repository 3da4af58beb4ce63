//! One tenant's WAL pipeline: a persistent pgoutput slot streamed over a replication
//! connection, decoded, routed, gated and fanned out, with the slot's confirmed position
//! advanced only after a transaction's events were handed to the channels' sinks.
//!
//! The reading, batching, exactly-once resumption and reconnects are shared with broadcast
//! from the database ([`crate::wal_consumer`], [`crate::reconnect`], [`crate::slot`]); this
//! is the Postgres Changes part: routing, the RLS gate and delivery. The slot is dropped when
//! the pipeline stops after its idle period.
//!
//! When another live session holds the slot (another server instance on the same database),
//! the pipeline is a standby ([`PipelineState::Standby`]): channels subscribe as usual, and it
//! takes over, resuming from the slot's confirmed position, within a couple of seconds of the
//! holder's connection closing. In cluster mode the holder relays what it streams and a
//! standby judges and delivers it for its own channels meanwhile ([`crate::relay`]). A live holder is never terminated; one silent for longer
//! than its lease is ([`crate::slot_lease`]).

use std::sync::Arc;
use std::time::Duration;

use realtime_pg::pgoutput::Relation;
use realtime_pg::replication::{LogicalStream, ReplicationError, StartOptions, STATUS_INTERVAL};

use crate::change;
use crate::db::TenantDb;
use crate::fanout;
use crate::reconnect::{self, Backoff, Consumer, Ended, Exit};
use crate::router::Candidate;
use crate::slot::{self, OnLost, SlotError, SlotTarget};
use crate::tenant::{PipelineState, TenantCdc};
use crate::wal_consumer::RowChange;

/// Most changes judged and handed on together; a longer transaction is handed on in slices
/// of this size.
const BATCH_MAX: usize = 512;

/// Runs the pipeline until it stops (idle, shut down, or fatal).
pub async fn run(tenant: Arc<TenantCdc>) {
    tenant.wait_predecessor(Duration::from_secs(10)).await;
    let mut changes = Changes::new(tenant.clone());
    match reconnect::run(&mut changes, None, Backoff::default()).await {
        Ended::Stopped(released) => {
            if let Err(e) = released {
                tracing::warn!(tenant = %tenant.config.external_id, error = %e, "could not drop the replication slot");
            }
            // After a requested stop the channels still registered lose their sinks, which
            // is how the gateway learns to subscribe them again.
            if tenant.shutdown_requested() {
                tenant.router.clear();
            }
            tenant.set_state(PipelineState::Stopped);
        }
        Ended::Fatal(message) => tenant.fail(message),
        Ended::GaveUp { last, .. } => tenant.fail(last),
    }
}

/// The Postgres Changes consumer: routes rows to the tenant's channels, judges them through
/// the RLS gate in batches and delivers the events.
struct Changes {
    tenant: Arc<TenantCdc>,
    target: SlotTarget,
    /// The session's tenant connection (catalog, filters, RLS).
    db: Option<TenantDb>,
    /// Changes kept for the next hand-on, in commit order.
    pending: Vec<(change::Change, Vec<Candidate>)>,
    /// Wakes the idle check while no WAL arrives.
    tick: tokio::time::Interval,
}

impl Changes {
    fn new(tenant: Arc<TenantCdc>) -> Changes {
        let cfg = &tenant.config;
        let mut conn = cfg.conn.clone();
        conn.application_name = "realtime_replication_cdc".to_string();
        // pgoutput renders values with the walsender's settings; pin the ones the typing step
        // parses so a server configured otherwise (e.g. DateStyle SQL) still types correctly.
        let pinned =
            "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=1";
        conn.options = Some(match &cfg.conn.options {
            Some(o) => format!("{o} {pinned}"),
            None => pinned.to_string(),
        });
        let target = SlotTarget {
            external_id: cfg.external_id.clone(),
            conn,
            slot: cfg.slot.clone(),
            start: StartOptions::new(&cfg.publication),
            on_lost: OnLost::Report,
            stats: tenant.stats.slot.clone(),
            lease: crate::slot_lease::Lease::new(cfg.slot_lease),
        };
        Changes {
            target,
            tenant,
            db: None,
            pending: Vec::new(),
            tick: tokio::time::interval(Duration::from_secs(1)),
        }
    }

    /// Why the slot cannot be used, as an exit: a live holder makes this a standby, the lost
    /// and foreign ones stop the pipeline.
    fn slot_failed(&mut self, e: SlotError) -> Exit {
        if let Some(standby) = reconnect::standby_exit(&e) {
            // The state follows in `waiting`, once a relay, if any, is being followed.
            return standby;
        }
        match e {
            SlotError::Lost { .. } => Exit::Fatal(lost_message(&e)),
            SlotError::Conflict { .. } => Exit::Fatal(e.to_string()),
            // Wrong credentials, no REPLICATION attribute, bad TLS settings or an impossible
            // slot name will not fix themselves: stop and say so.
            SlotError::Connect(ReplicationError::Auth { .. } | ReplicationError::Tls(_))
            | SlotError::Replication(ReplicationError::InvalidSlotName(_)) => {
                Exit::Fatal(e.to_string())
            }
            SlotError::Create { ref source, .. } if !source.is_retryable() => {
                Exit::Fatal(e.to_string())
            }
            e => Exit::Retry(e.to_string()),
        }
    }
}

/// What the channels are told when the slot was invalidated.
fn lost_message(e: &SlotError) -> String {
    format!("{e}; Postgres Changes stopped and will start again with a new slot on the next subscription")
}

fn retry(e: impl std::fmt::Display) -> Exit {
    Exit::Retry(e.to_string())
}

impl Consumer for Changes {
    const NAME: &'static str = "Postgres Changes";
    const BATCH_MAX: usize = BATCH_MAX;
    const STATUS_INTERVAL: Duration = STATUS_INTERVAL;

    fn target(&self) -> &SlotTarget {
        &self.target
    }

    async fn open(&mut self) -> Result<LogicalStream, Exit> {
        // The slot first: a standby tries it every second and needs no other connection.
        let stream = match slot::open(&self.target, false).await {
            Ok(stream) => stream,
            Err(e) => return Err(self.slot_failed(e)),
        };
        let db = match TenantDb::connect(&self.tenant.config.conn, "realtime_rls").await {
            Ok(db) => db,
            Err(e) => {
                stream.close().await;
                return Err(if e.is_retryable() {
                    retry(e)
                } else {
                    Exit::Fatal(format!("cannot connect to the tenant database: {e}"))
                });
            }
        };
        // A cold start empties upstream's table; a standby taking over does not, since its
        // channels (and the previous holder's) registered rows meanwhile.
        if self.tenant.state() == PipelineState::Starting {
            crate::subscription_table::wipe(&db.client).await;
        }
        self.tenant.set_state(PipelineState::Ready);
        self.db = Some(db);
        Ok(stream)
    }

    async fn stop_wanted(&mut self) {
        loop {
            tokio::select! {
                _ = self.tick.tick() => {}
                _ = self.tenant.shutdown_signal() => {}
            }
            if self.tenant.try_begin_idle_stop() {
                return;
            }
        }
    }

    fn should_stop(&mut self) -> bool {
        self.tenant.try_begin_idle_stop()
    }

    fn described(&mut self, relation: &Relation) {
        if let Some(db) = self.db.as_mut() {
            db.catalog.invalidate(relation.oid);
        }
    }

    async fn route(&mut self, row: RowChange) -> Result<bool, Exit> {
        let candidates = self.tenant.router.candidates(
            &row.relation,
            row.action,
            row.new.as_deref(),
            row.old.as_deref(),
        );
        if candidates.is_empty() {
            return Ok(false);
        }
        let Some(db) = self.db.as_mut() else {
            return Err(retry("no tenant connection"));
        };
        let table = match db.catalog.table(&db.client, row.relation.oid).await {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(false),
            Err(e) if e.is_closed() || db.is_closed() => return Err(retry(e)),
            Err(e) => {
                tracing::warn!(error = %e, table = %row.relation.name, "catalog lookup failed, change skipped");
                return Ok(false);
            }
        };
        let change = change::build(
            change::Source {
                action: row.action,
                relation: &row.relation,
                commit_time_us: row.commit_time,
                new: row.new.as_deref(),
                old: row.old.as_deref(),
                old_is_key: row.old_is_key,
            },
            table,
            self.tenant.config.max_record_bytes,
        );
        self.pending.push((change, candidates));
        Ok(true)
    }

    /// Judges and delivers the pending changes.
    async fn hand_on(&mut self, stream: Option<&mut LogicalStream>) -> Result<(), Exit> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(db) = self.db.as_mut() else {
            return Err(retry("no tenant connection"));
        };
        let rows = self.pending.len();
        let started = std::time::Instant::now();
        // A slow RLS gate must not let the session look dead to a waiting standby.
        let judged = fanout::fan_out_batch(db, std::mem::take(&mut self.pending));
        let deliveries = match stream {
            Some(stream) => stream.while_busy(judged).await.map_err(retry)?,
            None => judged.await,
        }
        .map_err(retry)?;
        self.tenant.stats.gate.batch(rows, started.elapsed());
        self.tenant.deliver(deliveries);
        Ok(())
    }

    fn relay(&self) -> Option<crate::relay::RelayHandle> {
        self.tenant.relay.get().cloned()
    }

    /// Channels keep subscribing; the gateway can tell this from a failure. Told only once
    /// the relay is followed, so a channel told it is subscribed misses nothing relayed.
    fn waiting(&mut self) {
        if !self.tenant.is_finished() {
            self.tenant.set_state(PipelineState::Standby);
        }
    }

    /// Following another node's relay needs the tenant connection (catalog, filters, RLS).
    async fn prepare_follow(&mut self) -> Result<(), Exit> {
        if self.db.as_ref().is_some_and(|db| !db.is_closed()) {
            return Ok(());
        }
        match TenantDb::connect(&self.tenant.config.conn, "realtime_rls").await {
            Ok(db) => {
                self.db = Some(db);
                Ok(())
            }
            Err(e) => Err(retry(e)),
        }
    }

    fn stream_failed(&mut self, error: &ReplicationError) -> Exit {
        match error {
            ReplicationError::SlotInvalidated(_) => Exit::Fatal(lost_message(&SlotError::Lost {
                slot: self.target.slot.clone(),
            })),
            e => retry(e),
        }
    }

    fn session_ended(&mut self) {
        self.pending.clear();
        self.db = None;
    }
}
