//! The stream task: reads pgoutput from the slot, hands decoded broadcasts to the sink,
//! confirms a transaction only once all its rows were handed on, and reconnects with backoff.
//! What a reconnect re-sends is skipped with [`crate::resume`], so there is neither loss nor
//! duplication.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use realtime_pg::pgoutput::{self, LogicalMessage, Relation};
use realtime_pg::replication::LogicalStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::setup::{self, Target};
use super::{row, DbBroadcast, DbBroadcastError, DbBroadcastOptions};
use crate::resume::{Resume, Txn};

/// While the sink is full, a status update goes out this often so the server does not time
/// the session out (`wal_sender_timeout`, 60 s by default, may be set much lower).
const STATUS_WHILE_BLOCKED: Duration = Duration::from_secs(1);
/// How often the confirmed position is reported: short, so that a restart of this process
/// re-sends little.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How long stopping waits for the slot to become free before giving up on dropping it.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Everything the task needs, fixed at start.
pub(super) struct Config {
    pub target: Target,
    pub opts: DbBroadcastOptions,
    /// `max_payload_size_in_kb × 1000 + 500`.
    pub max_body: u64,
}

/// Why a streaming session ended.
enum Exit {
    /// The handle asked to stop (or was dropped).
    Stop,
    /// Nobody receives any more.
    SinkClosed,
    /// Connection or server trouble: reconnect.
    Lost(String),
}

/// Runs until stopped, until the sink closes, or until reconnecting has failed for
/// `give_up_after`; the slot is released in every case where it can be.
pub(super) async fn run(
    cfg: Config,
    first: LogicalStream,
    sink: mpsc::Sender<DbBroadcast>,
    mut stop: watch::Receiver<bool>,
    connected: Arc<AtomicBool>,
) -> Result<(), DbBroadcastError> {
    let id = cfg.target.external_id.clone();
    let mut resume = Resume::default();
    let mut stream = Some(first);
    let mut backoff = cfg.opts.reconnect_min;
    let mut failing_since = Instant::now();
    let mut recreate = false;
    loop {
        if let Some(s) = stream.take() {
            connected.store(true, Ordering::SeqCst);
            let exit = session(&cfg, s, &sink, &mut stop, &mut resume).await;
            connected.store(false, Ordering::SeqCst);
            match exit {
                Exit::Stop => {
                    tracing::info!(external_id = %id, "broadcast changes stream stopped");
                    return setup::release(&cfg.target, RELEASE_WAIT).await;
                }
                Exit::SinkClosed => {
                    tracing::info!(external_id = %id, "broadcast changes receiver gone; stopping");
                    return setup::release(&cfg.target, RELEASE_WAIT).await;
                }
                Exit::Lost(e) => {
                    tracing::warn!(external_id = %id, error = %e, "Disconnecting broadcast changes handler; reconnecting");
                    recreate = setup::publication_missing(&e);
                    backoff = cfg.opts.reconnect_min;
                    failing_since = Instant::now();
                }
            }
        }
        let delay = jitter(backoff);
        tokio::select! {
            _ = stopped(&mut stop) => {
                return setup::release(&cfg.target, RELEASE_WAIT).await;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        if sink.is_closed() {
            return setup::release(&cfg.target, RELEASE_WAIT).await;
        }
        match setup::open(&cfg.target, recreate).await {
            Ok(s) => {
                recreate = false;
                tracing::info!(external_id = %id, "broadcast changes stream reconnected");
                stream = Some(s);
            }
            Err(e) => {
                let failing = failing_since.elapsed();
                tracing::warn!(external_id = %id, error = %e, ?delay, "broadcast changes stream could not reconnect");
                if failing >= cfg.opts.give_up_after {
                    tracing::error!(external_id = %id, error = %e, "broadcast changes stream gave up reconnecting");
                    if let Err(e) = setup::release(&cfg.target, Duration::ZERO).await {
                        tracing::warn!(external_id = %id, error = %e, "could not release the replication slot");
                    }
                    return Err(DbBroadcastError::GaveUp {
                        after: failing,
                        last: e.to_string(),
                    });
                }
                backoff = (backoff * 2).min(cfg.opts.reconnect_max);
            }
        }
    }
}

/// Resolves once the handle asked to stop or went away.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

/// A random delay in `[d/2, d]`, so that many tenants losing the same server do not all come
/// back at the same instant.
fn jitter(d: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let half = d / 2;
    half + Duration::from_nanos(random % (half.as_nanos().max(1) as u64))
}

async fn session(
    cfg: &Config,
    mut stream: LogicalStream,
    sink: &mpsc::Sender<DbBroadcast>,
    stop: &mut watch::Receiver<bool>,
    resume: &mut Resume,
) -> Exit {
    stream.set_status_interval(STATUS_INTERVAL);
    let exit = read(cfg, &mut stream, sink, stop, resume).await;
    // Report what was handed on before leaving, so the next session re-sends as little as
    // possible; a dead connection just fails here.
    let _ = stream.send_status().await;
    stream.close().await;
    exit
}

async fn read(
    cfg: &Config,
    stream: &mut LogicalStream,
    sink: &mpsc::Sender<DbBroadcast>,
    stop: &mut watch::Receiver<bool>,
    resume: &mut Resume,
) -> Exit {
    let id = &cfg.target.external_id;
    let mut relations: HashMap<u32, Relation> = HashMap::new();
    let mut txn: Option<Txn> = None;
    let mut committed_at = Utc::now();
    loop {
        let next = tokio::select! {
            biased;
            _ = stopped(stop) => return Exit::Stop,
            _ = sink.closed() => return Exit::SinkClosed,
            n = stream.next() => n,
        };
        let data = match next {
            Ok(Some(x)) => x,
            Ok(None) => return Exit::Lost("the server ended the replication stream".into()),
            Err(e) => return Exit::Lost(e.to_string()),
        };
        let message = match pgoutput::decode(&data.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(external_id = %id, error = %e, lsn = %data.wal_start, "UnableToBroadcastChanges: undecodable pgoutput message skipped");
                continue;
            }
        };
        match message {
            LogicalMessage::Begin {
                final_lsn,
                commit_time,
                ..
            } => {
                let t = resume.begin(final_lsn);
                if t.is_resent() {
                    tracing::debug!(external_id = %id, lsn = %final_lsn, "transaction re-sent after a reconnect; skipping what was handed on");
                }
                committed_at = realtime_pg::time::to_utc(commit_time).unwrap_or_else(Utc::now);
                txn = Some(t);
            }
            LogicalMessage::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                resume.commit(commit_lsn);
                txn = None;
                stream.confirm(end_lsn);
            }
            LogicalMessage::Relation(r) => {
                if row::is_messages_relation(&r) {
                    relations.insert(r.oid, r);
                } else {
                    tracing::warn!(external_id = %id, "Unexpected relation on schema '{}' and table '{}'", r.namespace, r.name);
                }
            }
            LogicalMessage::Insert { relation, new } => {
                let Some(t) = txn.as_mut() else { continue };
                if !resume.next_row(t) {
                    continue;
                }
                let Some(rel) = relations.get(&relation) else {
                    continue;
                };
                match row::decode_insert(
                    rel,
                    &new,
                    committed_at,
                    cfg.opts.broadcast_extension_only,
                    cfg.max_body,
                ) {
                    Ok(b) => {
                        if let Err(exit) = hand_over(stream, sink, stop, b).await {
                            return exit;
                        }
                    }
                    Err(reason) => {
                        tracing::error!(external_id = %id, error = %reason, "UnableToBroadcastChanges");
                    }
                }
                resume.processed(t);
            }
            // Updates, deletes, truncates, types, origins and messages are not broadcasts.
            _ => {}
        }
    }
}

/// Waits for room in the sink, keeping the replication session alive meanwhile.
async fn hand_over(
    stream: &mut LogicalStream,
    sink: &mpsc::Sender<DbBroadcast>,
    stop: &mut watch::Receiver<bool>,
    b: DbBroadcast,
) -> Result<(), Exit> {
    let reserve = sink.reserve();
    tokio::pin!(reserve);
    let mut status =
        tokio::time::interval_at(Instant::now() + STATUS_WHILE_BLOCKED, STATUS_WHILE_BLOCKED);
    loop {
        tokio::select! {
            biased;
            _ = stopped(stop) => return Err(Exit::Stop),
            permit = &mut reserve => {
                return match permit {
                    Ok(p) => {
                        p.send(b);
                        Ok(())
                    }
                    Err(_) => Err(Exit::SinkClosed),
                };
            }
            _ = status.tick() => {
                if let Err(e) = stream.send_status().await {
                    return Err(Exit::Lost(e.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::jitter;
    use std::time::Duration;

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(2));
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
