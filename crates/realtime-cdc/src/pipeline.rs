//! One tenant's WAL pipeline: a persistent pgoutput slot streamed over a replication
//! connection, decoded, routed, gated and fanned out, with the slot's confirmed position
//! advanced only after a transaction's events were handed to the channels' sinks.
//!
//! Reconnects resume from the slot without loss; transactions (and changes inside a partly
//! delivered transaction) replayed after a reconnect are skipped, so nothing is delivered
//! twice. The slot is dropped when the pipeline stops after its idle period.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use realtime_pg::pgoutput::{self, LogicalMessage, Relation};
use realtime_pg::replication::{LogicalStream, ReplicationError, ReplicationStream};
use realtime_pg::{slots, Lsn};

use crate::change;
use crate::db::TenantDb;
use crate::fanout::{self, Delivery};
use crate::resume::{Resume, Txn};
use crate::slot::{self, SlotError};
use crate::tenant::{PipelineState, TenantCdc};
use crate::{Action, CdcEvent};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a streaming session ended.
enum Exit {
    /// No subscribers for the idle period: stop and drop the slot.
    Idle,
    /// Transient failure: reconnect.
    Retry(String),
    /// Unrecoverable: stop and tell the subscribers.
    Fatal(String),
}

/// Runs the pipeline until it stops (idle or fatal).
pub async fn run(tenant: Arc<TenantCdc>) {
    tenant.wait_predecessor(Duration::from_secs(10)).await;
    let mut resume = Resume::default();
    let mut backoff = MIN_BACKOFF;
    let mut busy = 0u32;
    loop {
        if tenant.shutdown_requested() {
            drop_slot_best_effort(&tenant).await;
            stopped(&tenant);
            return;
        }
        let started = Instant::now();
        match session(&tenant, &mut resume, &mut busy).await {
            Exit::Idle => {
                tracing::info!(tenant = %tenant.config.external_id, "Postgres Changes pipeline stopped");
                stopped(&tenant);
                return;
            }
            Exit::Fatal(msg) => {
                tracing::error!(tenant = %tenant.config.external_id, error = %msg, "Postgres Changes pipeline stopped");
                tenant.fail(msg).await;
                return;
            }
            Exit::Retry(msg) => {
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = MIN_BACKOFF;
                }
                tracing::warn!(tenant = %tenant.config.external_id, error = %msg, ?backoff, "Postgres Changes pipeline reconnecting");
                if tenant.try_begin_idle_stop() {
                    drop_slot_best_effort(&tenant).await;
                    stopped(&tenant);
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tenant.shutdown_signal() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Marks the pipeline stopped. After a requested stop the channels still registered lose
/// their sinks, which is how the gateway learns to subscribe them again.
fn stopped(tenant: &TenantCdc) {
    if tenant.shutdown_requested() {
        tenant.router.clear();
    }
    tenant.set_state(PipelineState::Stopped);
}

async fn drop_slot_best_effort(tenant: &TenantCdc) {
    if let Ok(db) = TenantDb::connect(&tenant.config.conn, "realtime_rls").await {
        drop_slot(&db, &tenant.config.slot).await;
    }
}

/// Drops the slot, waiting briefly for the walsender that just closed to release it.
async fn drop_slot(db: &TenantDb, slot: &str) {
    let mut last = None;
    for _ in 0..50 {
        match slots::drop_slot_if_exists(&db.client, slot).await {
            Ok(_) => {
                tracing::info!(slot, "replication slot dropped");
                return;
            }
            // 55006: still active for the exiting walsender.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    if let Some(e) = last {
        tracing::warn!(slot, error = %e, "could not drop the replication slot");
    }
}

fn retry(e: impl std::fmt::Display) -> Exit {
    Exit::Retry(e.to_string())
}

async fn session(tenant: &Arc<TenantCdc>, resume: &mut Resume, busy: &mut u32) -> Exit {
    let cfg = &tenant.config;
    let mut db = match TenantDb::connect(&cfg.conn, "realtime_rls").await {
        Ok(db) => db,
        Err(e) if e.is_retryable() => return retry(e),
        Err(e) => return Exit::Fatal(format!("cannot connect to the tenant database: {e}")),
    };
    let mut repl_opts = cfg.conn.clone();
    repl_opts.application_name = "realtime_replication_cdc".to_string();
    // pgoutput renders values with the walsender's settings; pin the ones the typing step
    // parses so a server configured otherwise (e.g. DateStyle SQL) still types correctly.
    let pinned =
        "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=1";
    repl_opts.options = Some(match &cfg.conn.options {
        Some(o) => format!("{o} {pinned}"),
        None => pinned.to_string(),
    });
    let mut repl = match ReplicationStream::connect(&repl_opts).await {
        Ok(r) => r,
        // Wrong credentials, no REPLICATION attribute or bad TLS settings will not fix
        // themselves: stop and say so.
        Err(
            e @ (ReplicationError::Auth { .. }
            | ReplicationError::Tls(_)
            | ReplicationError::InvalidSlotName(_)),
        ) => {
            return Exit::Fatal(format!(
                "cannot open the replication connection to the tenant database: {e}"
            ))
        }
        Err(e) => return retry(e),
    };
    match slot::ensure(&db.client, &mut repl, &cfg.slot, &cfg.conn.dbname, busy).await {
        Ok(()) => {}
        Err(SlotError::Retry(m)) => return Exit::Retry(m),
        Err(SlotError::Fatal(m)) => return Exit::Fatal(m),
    }
    let mut stream = match repl.start(&cfg.slot, Lsn::ZERO, &cfg.publication).await {
        Ok(s) => s,
        Err(ReplicationError::SlotInvalidated(e)) => {
            let _ = slots::drop_slot_if_exists(&db.client, &cfg.slot).await;
            return Exit::Fatal(format!(
                "replication slot {} was invalidated (wal_status 'lost'): {e}",
                cfg.slot
            ));
        }
        Err(e) => return retry(e),
    };
    *busy = 0;
    if tenant.state() == PipelineState::Starting {
        crate::subscription_table::wipe(&db.client).await;
    }
    tenant.set_state(PipelineState::Ready);

    let mut relations: HashMap<u32, Relation> = HashMap::new();
    // The transaction being streamed, with its commit time.
    let mut txn: Option<(Txn, i64)> = None;
    let mut pending = Pending::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        // Committed changes wait only while more WAL is already at hand, so one visibility
        // check covers every transaction that arrived while the previous one ran: the batch
        // grows with the load instead of the checks.
        let ready = if pending.commit.is_some() {
            stream.next().now_or_never()
        } else {
            None
        };
        let next = match ready {
            Some(n) => n,
            None if pending.commit.is_some() => {
                if let Err(e) = pending.hand_on(tenant, &mut db, resume, &mut stream).await {
                    return retry(e);
                }
                continue;
            }
            None => tokio::select! {
                n = stream.next() => n,
                _ = async {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = tenant.shutdown_signal() => {}
                    }
                } => {
                    if tenant.try_begin_idle_stop() {
                        stream.close().await;
                        drop_slot(&db, &cfg.slot).await;
                        return Exit::Idle;
                    }
                    continue;
                }
            },
        };
        let data = match next {
            Ok(Some(x)) => x,
            Ok(None) => return retry("the server ended the replication stream"),
            Err(ReplicationError::SlotInvalidated(e)) => {
                stream.close().await;
                let _ = slots::drop_slot_if_exists(&db.client, &cfg.slot).await;
                return Exit::Fatal(format!(
                    "replication slot {} was invalidated (wal_status 'lost'): {e}",
                    cfg.slot
                ));
            }
            Err(e) => return retry(e),
        };
        let message = match pgoutput::decode(&data.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, lsn = %data.wal_start, "skipping an undecodable pgoutput message");
                continue;
            }
        };
        let (relation, action, new, old, old_is_key) = match message {
            LogicalMessage::Begin {
                final_lsn,
                commit_time,
                ..
            } => {
                let t = resume.begin(final_lsn);
                if t.is_resent() {
                    tracing::debug!(%final_lsn, "skipping what was already delivered of a transaction");
                }
                txn = Some((t, commit_time));
                continue;
            }
            LogicalMessage::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                pending.commit = Some((commit_lsn, end_lsn));
                txn = None;
                if pending.changes.len() >= BATCH_MAX {
                    if let Err(e) = pending.hand_on(tenant, &mut db, resume, &mut stream).await {
                        return retry(e);
                    }
                }
                continue;
            }
            LogicalMessage::Relation(r) => {
                db.catalog.invalidate(r.oid);
                relations.insert(r.oid, r);
                continue;
            }
            LogicalMessage::Insert { relation, new } => {
                (relation, Action::Insert, Some(new), None, false)
            }
            LogicalMessage::Update {
                relation,
                old,
                old_is_key,
                new,
            } => (relation, Action::Update, Some(new), old, old_is_key),
            LogicalMessage::Delete {
                relation,
                old,
                old_is_key,
            } => (relation, Action::Delete, None, Some(old), old_is_key),
            // TRUNCATE never reaches clients upstream; types, origins and messages are not
            // needed.
            _ => continue,
        };
        let Some(t) = txn.as_mut() else {
            continue;
        };
        if !resume.next_row(&mut t.0) {
            continue;
        }
        let Some(rel) = relations.get(&relation) else {
            tracing::warn!(relation, "change for a relation never described, skipped");
            continue;
        };
        let candidates = tenant
            .router
            .candidates(rel, action, new.as_deref(), old.as_deref());
        if candidates.is_empty() {
            continue;
        }
        let table = match db.catalog.table(&db.client, relation).await {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) if e.is_closed() || db.is_closed() => return retry(e),
            Err(e) => {
                tracing::warn!(error = %e, table = %rel.name, "catalog lookup failed, change skipped");
                continue;
            }
        };
        let change = change::build(
            change::Source {
                action,
                relation: rel,
                commit_time_us: t.1,
                new: new.as_deref(),
                old: old.as_deref(),
                old_is_key,
            },
            table,
            cfg.max_record_bytes,
        );
        pending.changes.push((change, candidates));
        if pending.changes.len() >= BATCH_MAX {
            if let Err(e) = pending.hand_on(tenant, &mut db, resume, &mut stream).await {
                return retry(e);
            }
            resume.processed(&t.0);
        }
    }
}

/// Most changes judged and handed on together; a longer transaction is handled in slices of
/// this size.
const BATCH_MAX: usize = 512;

/// Changes read but not yet handed on.
#[derive(Default)]
struct Pending {
    /// In commit order; the last transaction may be incomplete.
    changes: Vec<(change::Change, Vec<crate::router::Candidate>)>,
    /// Commit and end LSN of the last transaction whose changes are all in `changes`.
    commit: Option<(Lsn, Lsn)>,
}

impl Pending {
    /// Judges and delivers the pending changes, then records (and confirms to the server)
    /// the last complete transaction among them. The slot never moves past a change that
    /// was not handed on.
    async fn hand_on(
        &mut self,
        tenant: &TenantCdc,
        db: &mut TenantDb,
        resume: &mut Resume,
        stream: &mut LogicalStream,
    ) -> Result<(), crate::evaluate::FanoutError> {
        if !self.changes.is_empty() {
            let deliveries = fanout::fan_out_batch(db, std::mem::take(&mut self.changes)).await?;
            deliver(tenant, deliveries).await;
        }
        if let Some((commit_lsn, end_lsn)) = self.commit.take() {
            resume.commit(commit_lsn);
            stream.confirm(end_lsn);
        }
        Ok(())
    }
}

/// Hands events to the sinks, in order and without waiting (a channel that can't keep up is
/// its socket's problem, never the tenant's); a channel that is gone is unsubscribed. One
/// [`crate::SinkCache`] spans the run, so a change delivered to many channels is encoded once.
/// Nothing here awaits; it stays `async` so its callers need no change.
pub async fn deliver(tenant: &TenantCdc, deliveries: Vec<Delivery>) {
    let mut cache = crate::SinkCache::default();
    for d in deliveries {
        if !d.subscriber.sink.push(d.event, &mut cache) {
            tenant.router.remove(d.subscriber.key);
        }
    }
}

/// Sends a system message to every channel (used when the pipeline stops for good).
pub async fn broadcast_system(tenant: &TenantCdc, status: &str, message: &str) {
    let deliveries = tenant
        .router
        .all()
        .into_iter()
        .map(|s| Delivery {
            event: CdcEvent::System(crate::error::system_message(&s.topic, status, message)),
            subscriber: s,
        })
        .collect();
    deliver(tenant, deliveries).await;
}
