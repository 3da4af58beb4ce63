//! The broadcast consumer: decodes inserted `realtime.messages` rows and hands them to the
//! sink, one at a time and in commit order. Reading, exactly-once resumption, confirmation and
//! reconnects are shared with Postgres Changes ([`crate::wal_consumer`],
//! [`crate::reconnect`], [`crate::slot`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use realtime_pg::pgoutput::Relation;
use realtime_pg::replication::{LogicalStream, ReplicationError, ReplicationStream, StartOptions};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{publication, row, DbBroadcast, DbBroadcastError, DbBroadcastOptions};
use crate::reconnect::{self, Backoff, Consumer, Ended, Exit};
use crate::slot::{self, OnLost, SlotTarget};
use crate::wal_consumer::RowChange;
use crate::Action;

/// While the sink is full, a status update goes out this often so the server does not time
/// the session out (`wal_sender_timeout`, 60 s by default, may be set much lower).
const STATUS_WHILE_BLOCKED: Duration = Duration::from_secs(1);

/// The replication session's target: the slot, pgoutput protocol 2 with binary values
/// (`binary_payload` arrives as bytes), and a slot found invalidated replaced (replay is the
/// clients' way to catch up).
pub(super) fn target(
    external_id: String,
    conn: realtime_pg::ConnectOptions,
    slot: String,
    lease: Duration,
) -> SlotTarget {
    SlotTarget {
        external_id,
        conn,
        slot,
        start: StartOptions {
            publications: vec![publication::PUBLICATION.to_string()],
            proto_version: 2,
            messages: false,
            binary: true,
            streaming: false,
        },
        on_lost: OnLost::Recreate,
        stats: Default::default(),
        lease: crate::slot_lease::Lease::new(lease),
    }
}

/// Opens a session: the slot is checked, the publication made sure of, the slot created when
/// missing, and streaming started. `recreate` replaces a slot whose pending WAL cannot be
/// decoded.
pub(super) async fn open(
    target: &SlotTarget,
    recreate: bool,
) -> Result<LogicalStream, DbBroadcastError> {
    let external_id = target.external_id.clone();
    let stream = slot::open_with(
        target,
        recreate,
        async move |repl: &mut ReplicationStream| publication::ensure(&external_id, repl).await,
    )
    .await?;
    tracing::info!(
        external_id = %target.external_id,
        slot = %target.slot,
        publication = publication::PUBLICATION,
        "Starting stream replication for Broadcast Changes"
    );
    Ok(stream)
}

/// The consumer, fixed at start.
pub(super) struct Broadcasts {
    pub target: SlotTarget,
    pub opts: DbBroadcastOptions,
    /// `max_payload_size_in_kb × 1000 + 500`.
    pub max_body: u64,
    pub sink: mpsc::Sender<DbBroadcast>,
    pub stop: watch::Receiver<bool>,
    /// Whether a session streams right now.
    pub connected: Arc<AtomicBool>,
    /// Whether it waits for a slot another live session holds.
    pub standby: Arc<AtomicBool>,
    /// The last session failed because the slot's WAL predates the publication.
    pub recreate: bool,
    /// The row kept for the next hand-on.
    pub pending: Vec<DbBroadcast>,
}

/// Runs until stopped, until the sink closes, or until reconnecting has failed for
/// `give_up_after`; the slot is released in every case where it can be.
pub(super) async fn run(
    mut b: Broadcasts,
    first: Option<LogicalStream>,
) -> Result<(), DbBroadcastError> {
    let backoff = Backoff::new(
        b.opts.reconnect_min,
        b.opts.reconnect_max,
        Some(b.opts.give_up_after),
    );
    match reconnect::run(&mut b, first, backoff).await {
        Ended::Stopped(released) => released.map_err(DbBroadcastError::from),
        Ended::GaveUp { after, last } => Err(DbBroadcastError::GaveUp { after, last }),
        Ended::Fatal(message) => Err(DbBroadcastError::Task(message)),
    }
}

impl Broadcasts {
    fn stop_requested(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err() || self.sink.is_closed()
    }
}

impl Consumer for Broadcasts {
    const NAME: &'static str = "broadcast changes";
    // Each row goes to the sink as soon as it is read.
    const BATCH_MAX: usize = 1;
    // Short, so that a restart of this process re-sends little.
    const STATUS_INTERVAL: Duration = Duration::from_secs(1);

    fn target(&self) -> &SlotTarget {
        &self.target
    }

    fn relay(&self) -> Option<crate::relay::RelayHandle> {
        self.opts
            .relay
            .as_ref()
            .map(|transport| crate::relay::RelayHandle {
                transport: transport.clone(),
                key: format!("{}:{}", self.target.external_id, self.target.slot),
            })
    }

    async fn open(&mut self) -> Result<LogicalStream, Exit> {
        match open(&self.target, self.recreate).await {
            Ok(stream) => {
                self.recreate = false;
                self.standby.store(false, Ordering::SeqCst);
                self.connected.store(true, Ordering::SeqCst);
                Ok(stream)
            }
            Err(e @ DbBroadcastError::SlotInUse { .. }) => {
                self.standby.store(true, Ordering::SeqCst);
                Err(Exit::Standby(e.to_string()))
            }
            Err(e) => Err(Exit::Retry(e.to_string())),
        }
    }

    async fn stop_wanted(&mut self) {
        tokio::select! {
            _ = stopped(&mut self.stop) => {}
            _ = self.sink.closed() => {}
        }
    }

    fn should_stop(&mut self) -> bool {
        self.stop_requested()
    }

    fn described(&mut self, relation: &Relation) {
        if !row::is_messages_relation(relation) {
            tracing::warn!(external_id = %self.target.external_id, "Unexpected relation on schema '{}' and table '{}'", relation.namespace, relation.name);
        }
    }

    async fn route(&mut self, change: RowChange) -> Result<bool, Exit> {
        // Updates and deletes are not broadcasts.
        let (Action::Insert, Some(new)) = (change.action, change.new.as_ref()) else {
            return Ok(false);
        };
        if !row::is_messages_relation(&change.relation) {
            return Ok(false);
        }
        let committed_at = realtime_pg::time::to_utc(change.commit_time).unwrap_or_else(Utc::now);
        match row::decode_insert(
            &change.relation,
            new,
            committed_at,
            self.opts.broadcast_extension_only,
            self.max_body,
        ) {
            Ok(b) => {
                self.pending.push(b);
                Ok(true)
            }
            Err(reason) => {
                tracing::error!(external_id = %self.target.external_id, error = %reason, "UnableToBroadcastChanges");
                Ok(false)
            }
        }
    }

    async fn hand_on(&mut self, mut stream: Option<&mut LogicalStream>) -> Result<(), Exit> {
        for b in std::mem::take(&mut self.pending) {
            hand_over(stream.as_deref_mut(), &self.sink, &mut self.stop, b).await?;
        }
        Ok(())
    }

    fn stream_failed(&mut self, error: &ReplicationError) -> Exit {
        let error = error.to_string();
        self.recreate = publication::publication_missing(&error);
        Exit::Retry(error)
    }

    fn session_ended(&mut self) {
        self.pending.clear();
        self.connected.store(false, Ordering::SeqCst);
    }
}

/// Resolves once the handle asked to stop or went away.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

/// Waits for room in the sink, keeping the replication session alive meanwhile.
async fn hand_over(
    mut stream: Option<&mut LogicalStream>,
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
                    Err(_) => Err(Exit::Stop),
                };
            }
            _ = status.tick() => {
                if let Some(stream) = stream.as_deref_mut() {
                    if let Err(e) = stream.send_status().await {
                        return Err(Exit::Retry(e.to_string()));
                    }
                }
            }
        }
    }
}
