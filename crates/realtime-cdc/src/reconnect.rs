//! The loop both WAL consumers run: open a replication session, stream it through the shared
//! [`WalConsumer`], and after a failure reconnect with backoff, until the consumer stops,
//! fails for good or gives up. The consumers ([`crate::pipeline`], [`crate::db_broadcast`])
//! only route and hand on.
//!
//! A slot held by another live session ([`Exit::Standby`]) is no failure: the consumer waits
//! as a standby, trying every [`STANDBY_RETRY`] without backing off or ever giving up, and
//! takes over once the holder is gone. A standby that stops leaves the slot to its holder.
//! While it waits it marks the slot ([`crate::slot_standby`]), so a holder that stops on
//! purpose leaves the slot for it to adopt rather than dropping it.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use realtime_pg::pgoutput::{self, LogicalMessage, Relation};
use realtime_pg::replication::{LogicalStream, ReplicationError};

use crate::follow::Follower;
use crate::relay::{RelayHandle, RelayTap, Relayed};
use crate::slot::{self, SlotError, SlotTarget};
pub use crate::slot_lease::STANDBY_RETRY;
use crate::wal_consumer::{RowChange, Step, WalConsumer};

/// First reconnect delay of [`Backoff::default`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Largest reconnect delay of [`Backoff::default`].
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A session that streamed this long was healthy: the next failure starts the backoff over.
pub const HEALTHY: Duration = Duration::from_secs(30);
/// How long stopping waits for the slot to become free before giving up on dropping it.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// How a session (or an attempt to open one) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Stop for good and release the slot (idle, stop requested, nobody receives).
    Stop,
    /// Transient trouble: reconnect after the backoff.
    Retry(String),
    /// Another live session holds the slot: try again every [`STANDBY_RETRY`].
    Standby(String),
    /// Unrecoverable: stop and report, leaving the slot alone.
    Fatal(String),
}

/// How [`run`] ended.
#[derive(Debug)]
pub enum Ended {
    /// Stopped; the slot was released, or this says why not.
    Stopped(Result<(), SlotError>),
    /// A session ended with [`Exit::Fatal`].
    Fatal(String),
    /// Reconnecting failed for longer than the backoff allows.
    GaveUp {
        /// How long it kept trying.
        after: Duration,
        /// The last failure.
        last: String,
    },
}

/// One WAL consumer's own part: opening its session, routing rows and handing them on.
/// [`run`] drives it with a [`WalConsumer`].
pub trait Consumer: Send {
    /// For logs: `Postgres Changes`, `broadcast changes`.
    const NAME: &'static str;
    /// Most rows handed on at once.
    const BATCH_MAX: usize;
    /// How often the confirmed position is reported unprompted.
    const STATUS_INTERVAL: Duration;

    /// Where the consumer streams from.
    fn target(&self) -> &SlotTarget;

    /// Opens a session: connections, the slot ([`slot::open_with`]), `START_REPLICATION`.
    fn open(&mut self) -> impl Future<Output = Result<LogicalStream, Exit>> + Send;

    /// Resolves once the consumer wants to stop (idle, stop requested, nobody receives).
    /// Cancel-safe: it sits in a `select!` with the stream.
    fn stop_wanted(&mut self) -> impl Future<Output = ()> + Send;

    /// Whether to stop rather than reconnect.
    fn should_stop(&mut self) -> bool;

    /// A relation was (re)described.
    fn described(&mut self, _relation: &Relation) {}

    /// Routes a row not handed on before; `Ok(true)` when it was kept for the next hand-on.
    fn route(&mut self, row: RowChange) -> impl Future<Output = Result<bool, Exit>> + Send;

    /// Hands on every kept row. The stream, when streaming the slot (not when following a
    /// relay), is there to keep the session alive while waiting; the position is confirmed
    /// by the caller afterwards.
    fn hand_on(
        &mut self,
        stream: Option<&mut LogicalStream>,
    ) -> impl Future<Output = Result<(), Exit>> + Send;

    /// Where this consumer shares what it streams with other nodes, and follows them while it
    /// waits for the slot (cluster mode); `None` for none.
    fn relay(&self) -> Option<RelayHandle> {
        None
    }

    /// It waits for the slot as a standby, and follows the relay if there is one.
    fn waiting(&mut self) {}

    /// Gets ready to route and hand on relayed rows (the connections `open` would make).
    fn prepare_follow(&mut self) -> impl Future<Output = Result<(), Exit>> + Send {
        async { Ok(()) }
    }

    /// How a failed stream ends the session. An invalidated slot has been dropped already.
    fn stream_failed(&mut self, error: &ReplicationError) -> Exit {
        Exit::Retry(error.to_string())
    }

    /// A session ended: rows kept but not handed on are dropped (the server sends them
    /// again).
    fn session_ended(&mut self);
}

/// Whether an attempt that failed with `error` is a standby's wait for a live holder.
pub fn standby_exit(error: &SlotError) -> Option<Exit> {
    match error {
        SlotError::InUse { .. } => Some(Exit::Standby(error.to_string())),
        _ => None,
    }
}

/// Reconnect delays: doubling per failure from `min` up to `max`, back to `min` after a
/// session that streamed for [`HEALTHY`], and giving up after failing for `give_up_after`
/// (counted from the end of the last session that streamed).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    give_up_after: Option<Duration>,
    next: Duration,
    failing_since: Option<Instant>,
}

impl Default for Backoff {
    /// 100 ms to 5 s, never giving up.
    fn default() -> Self {
        Backoff::new(MIN_BACKOFF, MAX_BACKOFF, None)
    }
}

impl Backoff {
    /// Delays from `min` to `max`; `give_up_after` of `None` retries forever.
    pub fn new(min: Duration, max: Duration, give_up_after: Option<Duration>) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            give_up_after,
            next: min,
            failing_since: None,
        }
    }

    /// A session ended, or an attempt to open one failed (`streamed` is `None`). Returns the
    /// delay before the next attempt (to be randomised with [`jitter`]), or `None` to give up.
    pub fn failed(&mut self, streamed: Option<Duration>, now: Instant) -> Option<Duration> {
        if let Some(streamed) = streamed {
            self.failing_since = Some(now);
            if streamed >= HEALTHY {
                self.next = self.min;
            }
        }
        let since = *self.failing_since.get_or_insert(now);
        if self
            .give_up_after
            .is_some_and(|limit| now.saturating_duration_since(since) >= limit)
        {
            return None;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(delay)
    }

    /// Forgets the failures: waiting for a live holder is no trouble.
    pub fn reset(&mut self) {
        self.next = self.min;
        self.failing_since = None;
    }

    /// How long attempts have been failing.
    pub fn failing_for(&self, now: Instant) -> Duration {
        self.failing_since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }
}

/// A random delay in `[d/2, d]`, so that many tenants losing the same server do not all come
/// back at the same instant.
pub fn jitter(d: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let half = d / 2;
    half + Duration::from_nanos(random % (half.as_nanos().max(1) as u64))
}

/// Streams `first` (when given; otherwise opens a session) and reconnects after failures
/// until the consumer stops, fails for good or gives up. A stop releases the slot; giving up
/// tries once to; a fatal end leaves it (it is not ours, or already gone).
pub async fn run<C: Consumer>(
    consumer: &mut C,
    first: Option<LogicalStream>,
    mut backoff: Backoff,
) -> Ended {
    let external_id = consumer.target().external_id.clone();
    let mut wal = WalConsumer::new(C::BATCH_MAX);
    let mut next = first;
    let mut reconnecting = false;
    // Since when this consumer has been waiting for a live holder, if it is, and its mark.
    let mut standby_since: Option<Instant> = None;
    let mut mark: Option<crate::slot_standby::StandbyMark> = None;
    // Cluster mode: what this consumer streams is relayed, and it follows the relay while
    // another node streams.
    let relay = consumer.relay();
    let mut tap = relay.clone().map(|handle| Tap {
        tap: RelayTap::default(),
        handle,
    });
    let mut follower = relay.map(Follower::new);
    loop {
        let opened = match next.take() {
            Some(stream) => Ok(stream),
            None => consumer.open().await,
        };
        let (exit, streamed) = match opened {
            Ok(stream) => {
                if let Some(mark) = mark.take() {
                    mark.clear().await;
                }
                if let Some(since) = standby_since.take() {
                    tracing::info!(%external_id, waited = ?since.elapsed(), "{} took over the replication slot", C::NAME);
                } else if reconnecting {
                    tracing::info!(%external_id, "{} stream reconnected", C::NAME);
                }
                if let Some(f) = follower.as_mut() {
                    // What the previous holder relayed before it died comes first; the slot
                    // re-sends only what this consumer then skips.
                    if let Err(exit) = f.finish(consumer, &mut wal).await {
                        tracing::debug!(%external_id, ?exit, "{} could not read the relay to its end", C::NAME);
                    }
                }
                let started = Instant::now();
                let exit = session(consumer, stream, &mut wal, &mut tap).await;
                consumer.session_ended();
                (exit, Some(started.elapsed()))
            }
            Err(exit) => (exit, None),
        };
        let error = match exit {
            Exit::Stop => return stop(consumer).await,
            Exit::Standby(holder) => {
                if standby_since.is_none() {
                    standby_since = Some(Instant::now());
                    tracing::info!(%external_id, %holder, "{} waits as a standby: another live session streams from the replication slot", C::NAME);
                } else {
                    tracing::debug!(%external_id, %holder, "{} still waits for the replication slot", C::NAME);
                }
                if mark.is_none() {
                    match crate::slot_standby::mark(consumer.target()).await {
                        Ok(m) => mark = Some(m),
                        // Tried again next round; meanwhile a stopping holder may drop the slot.
                        Err(e) => {
                            tracing::debug!(%external_id, error = %e, "could not mark the replication slot as awaited")
                        }
                    }
                }
                backoff.reset();
                reconnecting = true;
                if consumer.should_stop() {
                    return stop_standby(consumer, mark).await;
                }
                if let Some(f) = follower.as_mut() {
                    f.start(consumer, &mut wal).await;
                }
                consumer.waiting();
                match follower.as_mut() {
                    // The holder is another node: deliver what it relays meanwhile.
                    Some(f) => {
                        if let Err(exit) = f
                            .follow_for(consumer, &mut wal, jitter(STANDBY_RETRY))
                            .await
                        {
                            tracing::debug!(%external_id, ?exit, "{} could not follow the relay", C::NAME);
                        }
                    }
                    None => tokio::select! {
                        _ = tokio::time::sleep(jitter(STANDBY_RETRY)) => {}
                        _ = consumer.stop_wanted() => return stop_standby(consumer, mark).await,
                    },
                }
                if consumer.should_stop() {
                    return stop_standby(consumer, mark).await;
                }
                continue;
            }
            Exit::Fatal(message) => {
                tracing::error!(%external_id, error = %message, "{} stopped", C::NAME);
                return Ended::Fatal(message);
            }
            Exit::Retry(error) => error,
        };
        standby_since = None;
        if let Some(mark) = mark.take() {
            mark.clear().await;
        }
        reconnecting = true;
        let Some(delay) = backoff.failed(streamed, Instant::now()) else {
            let after = backoff.failing_for(Instant::now());
            tracing::error!(%external_id, %error, ?after, "{} gave up reconnecting", C::NAME);
            if let Err(e) = slot::release(consumer.target(), Duration::ZERO).await {
                tracing::warn!(%external_id, error = %e, "could not release the replication slot");
            }
            return Ended::GaveUp { after, last: error };
        };
        let delay = jitter(delay);
        if streamed.is_some() {
            tracing::warn!(%external_id, %error, ?delay, "{} stream interrupted; reconnecting", C::NAME);
        } else {
            tracing::warn!(%external_id, %error, ?delay, "{} stream could not (re)connect", C::NAME);
        }
        if consumer.should_stop() {
            return stop(consumer).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = consumer.stop_wanted() => return stop(consumer).await,
        }
        if consumer.should_stop() {
            return stop(consumer).await;
        }
    }
}

/// A standby stops: the slot belongs to its live holder and is left alone.
async fn stop_standby<C: Consumer>(
    consumer: &mut C,
    mark: Option<crate::slot_standby::StandbyMark>,
) -> Ended {
    if let Some(mark) = mark {
        mark.clear().await;
    }
    tracing::info!(external_id = %consumer.target().external_id, "{} standby stopped; the replication slot stays with its holder", C::NAME);
    Ended::Stopped(Ok(()))
}

async fn stop<C: Consumer>(consumer: &mut C) -> Ended {
    tracing::info!(external_id = %consumer.target().external_id, "{} stopped", C::NAME);
    Ended::Stopped(slot::release(consumer.target(), RELEASE_WAIT).await)
}

/// One streaming session, closed at the end.
async fn session<C: Consumer>(
    consumer: &mut C,
    mut stream: LogicalStream,
    wal: &mut WalConsumer,
    tap: &mut Option<Tap>,
) -> Exit {
    // Our replies are our lease: at least three per lease, even when idle.
    stream.set_status_interval(consumer.target().lease.status_interval(C::STATUS_INTERVAL));
    wal.new_session();
    if let Some(t) = tap.as_mut() {
        t.tap.new_session();
    }
    let stats = consumer.target().stats.clone();
    stats.set_walsender(stream.backend_pid());
    stats.set_streaming(true);
    let result = read(consumer, &mut stream, wal, tap).await;
    stats.set_streaming(false);
    // Report what was handed on before leaving, so the next session re-sends as little as
    // possible; a dead connection just fails here.
    let _ = stream.send_status().await;
    stream.close().await;
    match result {
        Ok(exit) => exit,
        Err(error) => {
            if let ReplicationError::SlotInvalidated(_) = error {
                // It can never stream again; what it held back is lost.
                let target = consumer.target();
                tracing::error!(external_id = %target.external_id, slot = %target.slot, %error, "ReplicationSlotLost: the replication slot was invalidated while streaming; dropping it");
                if let Err(e) = slot::release(target, Duration::from_secs(2)).await {
                    tracing::warn!(external_id = %target.external_id, error = %e, "could not drop the invalidated replication slot");
                }
            }
            consumer.stream_failed(&error)
        }
    }
}

/// Reads until the session ends: with a commit waiting, only what is at hand, then the
/// hand-on; otherwise until WAL arrives or the consumer wants to stop.
async fn read<C: Consumer>(
    consumer: &mut C,
    stream: &mut LogicalStream,
    wal: &mut WalConsumer,
    tap: &mut Option<Tap>,
) -> Result<Exit, ReplicationError> {
    loop {
        let next = if wal.waiting() {
            match stream.next().now_or_never() {
                Some(next) => next,
                None => {
                    let step = wal.drained();
                    if let Err(exit) = act(consumer, Some(stream), wal, step, tap).await {
                        return Ok(exit);
                    }
                    continue;
                }
            }
        } else {
            tokio::select! {
                biased;
                _ = consumer.stop_wanted() => return Ok(Exit::Stop),
                next = stream.next() => next,
            }
        };
        let Some(data) = next? else {
            return Ok(Exit::Retry(
                "the server ended the replication stream".into(),
            ));
        };
        let message = match pgoutput::decode(&data.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(external_id = %consumer.target().external_id, error = %e, lsn = %data.wal_start, "undecodable pgoutput message skipped");
                continue;
            }
        };
        if let LogicalMessage::Commit { commit_time, .. } = &message {
            consumer.target().stats.commit_received(*commit_time);
        }
        if let Some(t) = tap.as_mut() {
            let raw = Relayed {
                lsn: data.wal_start.0,
                data: data.data.clone(),
            };
            t.tap.read(raw, &message);
        }
        let step = wal.message(message);
        consumer
            .target()
            .stats
            .progress(stream.received(), stream.confirmed());
        if let Err(exit) = act(consumer, Some(stream), wal, step, tap).await {
            return Ok(exit);
        }
    }
}

/// What a streaming consumer relays, and where to (cluster mode).
pub(crate) struct Tap {
    tap: RelayTap,
    handle: RelayHandle,
}

/// Carries out one step of the machine: on the slot's stream, or (`None`) on a relay.
pub(crate) async fn act<C: Consumer>(
    consumer: &mut C,
    mut stream: Option<&mut LogicalStream>,
    wal: &mut WalConsumer,
    step: Step,
    tap: &mut Option<Tap>,
) -> Result<(), Exit> {
    match step {
        Step::Read => Ok(()),
        Step::SkipResent => {
            tracing::trace!("skipping a row handed on before the reconnect");
            Ok(())
        }
        Step::Undescribed(relation) => {
            tracing::warn!(external_id = %consumer.target().external_id, relation, "change for a relation never described, skipped");
            Ok(())
        }
        Step::Described(relation) => {
            consumer.described(&relation);
            Ok(())
        }
        Step::Route(row) => {
            // Routing may query the catalog: the session keeps reporting meanwhile.
            let kept = match stream.as_deref_mut() {
                Some(s) => s
                    .while_busy(consumer.route(row))
                    .await
                    .map_err(|e| consumer.stream_failed(&e))??,
                None => consumer.route(row).await?,
            };
            if kept && wal.kept() == Step::HandOn {
                hand_on(consumer, stream, wal, tap).await?;
            }
            Ok(())
        }
        Step::HandOn => hand_on(consumer, stream, wal, tap).await,
    }
}

/// Hands on; then, streaming, relays what was read (before the slot is confirmed past it,
/// so the relay never lags the slot) and confirms.
async fn hand_on<C: Consumer>(
    consumer: &mut C,
    mut stream: Option<&mut LogicalStream>,
    wal: &mut WalConsumer,
    tap: &mut Option<Tap>,
) -> Result<(), Exit> {
    consumer.hand_on(stream.as_deref_mut()).await?;
    if let Some(t) = tap.as_mut() {
        if let Some(batch) = t.tap.take() {
            if !t.handle.transport.append(&t.handle.key, batch).await {
                tracing::debug!(external_id = %consumer.target().external_id, "changes not relayed to the other nodes");
            }
        }
    }
    let confirm = wal.handed_on();
    let Some(stream) = stream else {
        return Ok(());
    };
    if let Some(lsn) = confirm {
        stream.confirm(lsn);
    }
    let stats = &consumer.target().stats;
    stats.handed_on();
    stats.progress(stream.received(), stream.confirmed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_from_100_ms_to_5_s() {
        let mut b = Backoff::default();
        let now = Instant::now();
        let delays: Vec<Duration> = (0..9).map(|_| b.failed(None, now).unwrap()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(|d| d * MS)
        );
    }

    #[test]
    fn a_healthy_session_starts_the_backoff_over() {
        let mut b = Backoff::default();
        let now = Instant::now();
        for _ in 0..4 {
            b.failed(None, now);
        }
        // A short session does not.
        assert_eq!(
            b.failed(Some(Duration::from_secs(29)), now),
            Some(1600 * MS)
        );
        assert_eq!(b.failed(Some(HEALTHY), now), Some(100 * MS));
        assert_eq!(b.failed(None, now), Some(200 * MS));
    }

    #[test]
    fn giving_up_counts_from_the_last_session() {
        let mut b = Backoff::new(100 * MS, 1000 * MS, Some(Duration::from_secs(2)));
        let t0 = Instant::now();
        assert!(b.failed(Some(Duration::from_secs(1)), t0).is_some());
        assert!(b.failed(None, t0 + Duration::from_secs(1)).is_some());
        assert_eq!(b.failed(None, t0 + Duration::from_secs(2)), None);
        assert_eq!(
            b.failing_for(t0 + Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        // A session that streamed again resets the clock.
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.failed(Some(MS), t1).is_some());
        assert!(b.failed(None, t1 + Duration::from_secs(1)).is_some());
        // Without a limit it never gives up.
        let mut forever = Backoff::default();
        assert!(forever.failed(None, t0).is_some());
        assert!(forever
            .failed(None, t0 + Duration::from_secs(86_400))
            .is_some());
    }

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
