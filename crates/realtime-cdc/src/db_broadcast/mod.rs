//! Broadcast from the database: the per-tenant logical replication of `realtime.messages`
//! (rows written by `realtime.send`, `realtime.send_binary`, `realtime.broadcast_changes` or a
//! plain INSERT) turned into [`DbBroadcast`]s, plus the replay query for joining channels.
//!
//! Layout:
//! - [`row`]: pure decoding of an inserted row and upstream's rules for which rows count.
//! - [`publication`]: the names, and publication `supabase_realtime_messages_publication`.
//! - [`stream`]: the consumer that decodes rows and hands them to the sink, run by the
//!   reconnect loop shared with Postgres Changes ([`crate::reconnect`]) over the shared slot
//!   set-up ([`crate::slot`]): pgoutput protocol 2, binary values, in upstream's order.
//! - [`mod@replay`]: stored messages for `config.broadcast.replay`.
//! - [`error`]: the error type, [`DbBroadcastError`].
//!
//! # Public API
//! - [`DbBroadcastStream::start`] opens the stream (publication and slot ready, streaming
//!   started) and returns once everything committed from then on will be delivered; it then
//!   sends every broadcast row to the caller's `mpsc::Sender<DbBroadcast>`, in commit order.
//!   [`DbBroadcastStream::is_connected`] tells whether it is streaming right now;
//!   [`DbBroadcastStream::stop`] (or dropping the handle) ends it and drops the slot. It also
//!   ends when the receiver is dropped, and after `give_up_after` of failed reconnects; the
//!   receiver then yields `None` once the caller's other senders are gone.
//! - [`replay()`] reads stored messages for a joining private channel (the gateway calls it
//!   through [`crate::ChannelDatabases::replay`], on the tenant's private-channel connection).
//! - [`slot_name`] and [`PUBLICATION`] name the database objects.
//!
//! # Which rows, and what the gateway does with them
//! As upstream: every committed INSERT into `realtime.messages` whose `inserted_at`, `event`,
//! `id`, `topic` and `private` are set and that has a `binary_payload` (binary) or `payload`
//! (JSON, the jsonb text verbatim) within the tenant's payload limit. Upstream does **not**
//! look at `extension`; [`DbBroadcastOptions::broadcast_extension_only`] adds that check.
//! Rows that do not qualify are logged as `UnableToBroadcastChanges` and dropped. The gateway
//! publishes each [`DbBroadcast`] to the tenant's topic `realtime:<topic>` among channels whose
//! `private` flag equals the row's (readers of private channels only), as a user broadcast with
//! event `event`, the payload in its encoding and metadata `{"id": id}`, unless the tenant's
//! events-per-second limiter is tripped or the channel replayed that id.
//!
//! # The slot is persistent (upstream's is temporary)
//! Upstream creates `supabase_realtime_messages_replication_slot_<suffix>` as a TEMPORARY slot,
//! so every broadcast committed while its connection is down (a database restart, a network
//! cut, a failover of this server) is never delivered. Here the slot is persistent: a
//! reconnect resumes exactly where the last handed-on transaction ended, without loss or
//! duplicates. So that WAL is never pinned for nobody:
//! - stopping (or dropping the handle, or the receiver going away, or giving up) drops the
//!   slot once our walsender has gone;
//! - a slot left behind by a crashed process is adopted and drained by the next start for the
//!   tenant; if it was invalidated (`max_slot_wal_keep_size`) it is recreated, and the loss
//!   is logged as `ReplicationSlotLost`;
//! - a slot held by another live session (another server instance, an old container of a
//!   rolling deploy, upstream's temporary slot) is never taken: the stream starts as a
//!   standby ([`DbBroadcastStream::is_standby`]), tries the slot every second and takes over
//!   within a couple of seconds of the holder's connection closing. A holder that sent no
//!   status update for [`DbBroadcastOptions::slot_lease`] (a hung process, a host gone
//!   without closing its connection) is terminated ([`crate::slot_lease`]);
//! - a slot whose pending WAL predates a dropped and recreated publication (upstream's
//!   migration 20250123174212 drops it) can never decode again; it is recreated, and what was
//!   committed in between is logged as lost (`ReplicationSlotUnusable`).
//!
//! To restart a tenant's stream, `stop().await` the old one first: a handle that is only
//! dropped releases its slot in the background and could race the new stream.
//!
//! The tenant's payload limit is read at start; the events-per-second limit is the gateway's.
//!
//! Operators switching back to upstream after a crash of this server must drop the inactive
//! slot (upstream's `replication_slot_teardown` does), since upstream waits while any slot of
//! that name exists.

pub mod error;
pub mod publication;
pub mod replay;
pub mod row;
pub mod stream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use realtime_tenants::{Crypto, Tenant};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::tenant_conn::{self, TenantConnError};

pub use error::DbBroadcastError;
pub use publication::{slot_name, PUBLICATION};
pub use replay::replay;

/// One broadcast read from `realtime.messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbBroadcast {
    /// The sub-topic as stored (`room1`, not `realtime:room1`).
    pub topic: String,
    /// The user event.
    pub event: String,
    /// Whether it goes to private channels (`true`) or public ones.
    pub private: bool,
    /// The row id (canonical uuid text), sent as metadata `{"id": …}`.
    pub id: String,
    /// The body.
    pub payload: DbPayload,
    /// `inserted_at` as stored (naive; the database's session time zone, UTC on Supabase).
    pub inserted_at: NaiveDateTime,
    /// Commit time of the inserting transaction.
    pub committed_at: DateTime<Utc>,
}

/// A broadcast body.
#[derive(Debug, Clone)]
pub enum DbPayload {
    /// The `payload` column: the jsonb text, delivered with JSON encoding.
    Json(Arc<RawValue>),
    /// The `binary_payload` column, delivered with binary encoding (vsn 2.0.0 only).
    Binary(Bytes),
}

impl DbPayload {
    /// The body's bytes as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            DbPayload::Json(j) => j.get().as_bytes(),
            DbPayload::Binary(b) => b,
        }
    }

    /// The body's size in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for DbPayload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (DbPayload::Json(a), DbPayload::Json(b)) => a.get() == b.get(),
            (DbPayload::Binary(a), DbPayload::Binary(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for DbPayload {}

/// Process-wide options of the stream.
#[derive(Debug, Clone)]
pub struct DbBroadcastOptions {
    /// `SLOT_NAME_SUFFIX`; absent counts as empty (slot `…_replication_slot_`).
    pub slot_name_suffix: Option<String>,
    /// First reconnect delay (randomised down to half), doubled per failure; a session that
    /// streamed for 30 s starts over from it.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// Stop reconnecting after failing for this long (upstream: 2 hours).
    pub give_up_after: Duration,
    /// Keep only rows with `extension = 'broadcast'`; upstream broadcasts every extension.
    pub broadcast_extension_only: bool,
    /// How long another holder of the slot may send no status update before it is taken to
    /// be gone and terminated; a live holder is never terminated.
    pub slot_lease: Duration,
    /// Cluster mode: what the stream reads is relayed to the other nodes, and while another
    /// node streams, this one follows its relay and delivers to its own channels.
    pub relay: Option<Arc<dyn crate::relay::WalRelay>>,
}

impl Default for DbBroadcastOptions {
    fn default() -> Self {
        DbBroadcastOptions {
            slot_name_suffix: None,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(2 * 3600),
            broadcast_extension_only: false,
            slot_lease: crate::slot_lease::DEFAULT_LEASE,
            relay: None,
        }
    }
}

/// A running broadcast-from-database stream of one tenant. Dropping it stops the stream and
/// releases the slot in the background; [`DbBroadcastStream::stop`] does the same and waits.
pub struct DbBroadcastStream {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), DbBroadcastError>>>,
    connected: Arc<AtomicBool>,
    standby: Arc<AtomicBool>,
    slot: String,
    stats: Arc<crate::stats::SlotStats>,
}

impl std::fmt::Debug for DbBroadcastStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbBroadcastStream")
            .field("slot", &self.slot)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl DbBroadcastStream {
    /// Connects to the tenant database as its `db_user` (TLS per `ssl_enforced`), creates the
    /// publication and the slot when missing, and starts streaming. Errors here are for the
    /// caller to retry (upstream retries with 5 s – 5 min backoff); once started, connection
    /// losses are handled inside. A slot another live session holds is no error: the stream
    /// starts as a standby and takes the slot over once that session is gone.
    pub async fn start(
        tenant: Arc<Tenant>,
        crypto: Arc<Crypto>,
        opts: DbBroadcastOptions,
        sink: mpsc::Sender<DbBroadcast>,
    ) -> Result<DbBroadcastStream, DbBroadcastError> {
        let external_id = tenant.external_id.clone();
        let conn = tenant_conn::tenant_options(&tenant, &crypto, publication::APPLICATION_NAME)
            .map_err(|e| match e {
                TenantConnError::NoDatabase { external_id } => {
                    DbBroadcastError::NoDatabase { external_id }
                }
                TenantConnError::Settings {
                    external_id,
                    source,
                } => DbBroadcastError::Settings {
                    external_id,
                    source,
                },
            })?;
        let slot = slot_name(opts.slot_name_suffix.as_deref());
        tracing::info!(external_id = %external_id, %slot, "Starting replication for Broadcast Changes");
        let target = stream::target(external_id, conn, slot.clone(), opts.slot_lease);
        let stats = target.stats.clone();
        let first = match stream::open(&target, false).await {
            Ok(first) => Some(first),
            // The session loop waits for the slot, as it does when another session takes it
            // during a reconnect.
            Err(DbBroadcastError::SlotInUse { .. }) => None,
            Err(e) => return Err(e),
        };
        let (stop, stop_rx) = watch::channel(false);
        let connected = Arc::new(AtomicBool::new(first.is_some()));
        let standby = Arc::new(AtomicBool::new(first.is_none()));
        let consumer = stream::Broadcasts {
            target,
            max_body: tenant.max_payload_bytes(),
            opts,
            sink,
            stop: stop_rx,
            connected: connected.clone(),
            standby: standby.clone(),
            recreate: false,
            pending: Vec::new(),
        };
        let task = tokio::spawn(stream::run(consumer, first));
        Ok(DbBroadcastStream {
            stop,
            task: Some(task),
            connected,
            standby,
            slot,
            stats,
        })
    }

    /// Whether the replication session is up right now (false while reconnecting and after
    /// the stream ended).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst) && !self.has_ended()
    }

    /// Whether the stream waits for its slot, which another live session streams from.
    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::SeqCst) && !self.has_ended()
    }

    /// Whether the stream has ended (stopped, receiver gone, or gave up reconnecting).
    pub fn has_ended(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The slot's progress figures (replication lag).
    pub fn stats(&self) -> Arc<crate::stats::SlotStats> {
        self.stats.clone()
    }

    /// The replication slot's name.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// Ends the stream and drops the slot, waiting for both. Returns why the stream had
    /// already ended, if it had failed, or why the slot could not be dropped.
    pub async fn stop(mut self) -> Result<(), DbBroadcastError> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => match task.await {
                Ok(result) => result,
                Err(e) => Err(DbBroadcastError::Task(e.to_string())),
            },
            None => Ok(()),
        }
    }
}

impl Drop for DbBroadcastStream {
    fn drop(&mut self) {
        // The task sees this (or the sender going away) and releases the slot on its own.
        let _ = self.stop.send(true);
    }
}
