//! Errors of the broadcast-from-database stream and of replay. Replay errors display as the
//! join-reply reasons upstream sends.

use std::time::Duration;

use realtime_pg::replication::ReplicationError;

use crate::slot::SlotError;

/// Why the stream could not start, stopped, or why a replay failed. No variant carries a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum DbBroadcastError {
    /// The tenant has no `postgres_cdc_rls` extension, so no database to stream from.
    #[error("tenant {external_id} has no database settings (postgres_cdc_rls extension)")]
    NoDatabase {
        /// The tenant.
        external_id: String,
    },
    /// The tenant's database settings cannot be read (decryption, missing or invalid value).
    #[error("database settings of tenant {external_id}: {source}")]
    Settings {
        /// The tenant.
        external_id: String,
        /// What was wrong.
        source: realtime_tenants::TenantError,
    },
    /// Another session streams from the slot (upstream's `replication_slot_in_use`); retry
    /// later.
    #[error("replication_slot_in_use: slot {slot} is active for PID {pid:?}")]
    SlotInUse {
        /// The slot name.
        slot: String,
        /// The holder's process id, when known.
        pid: Option<i32>,
    },
    /// A slot with our name exists but was made for another database or plugin.
    #[error("replication slot {slot} exists for another use ({detail}); set SLOT_NAME_SUFFIX so each tenant database gets its own slot")]
    SlotConflict {
        /// The slot name.
        slot: String,
        /// Its database and plugin.
        detail: String,
    },
    /// The publication could not be checked or created.
    #[error("Error creating publication: {0}")]
    Publication(String),
    /// The server has no free WAL sender or connection slot (SQLSTATE 53300 / 53400).
    #[error("max_wal_senders_reached")]
    MaxWalSendersReached,
    /// Connecting, creating the slot or starting replication failed.
    #[error("Error starting replication: {0}")]
    Replication(#[from] ReplicationError),
    /// Reconnecting failed for longer than the configured limit; the stream ended.
    #[error("broadcast changes stream gave up after {after:?} of failed reconnects: {last}")]
    GaveUp {
        /// How long it kept trying.
        after: Duration,
        /// The last failure.
        last: String,
    },
    /// Stopping could not drop the replication slot, which keeps holding WAL until a later
    /// start adopts it or an operator drops it.
    #[error("replication slot {slot} was not released: {reason}")]
    SlotNotReleased {
        /// The slot name.
        slot: String,
        /// Why.
        reason: String,
    },
    /// The stream task ended abnormally.
    #[error("broadcast changes stream task failed: {0}")]
    Task(String),
    /// Replay requested on a public channel.
    #[error("UnableToReplayMessages: Replay is not allowed for public channels")]
    ReplayNotAllowed,
    /// `since` is not a representable time.
    #[error("UnableToReplayMessages: Replay params are not valid")]
    ReplayParams,
    /// The replay query failed or timed out.
    #[error("UnableToReplayMessages: Realtime was unable to replay messages")]
    ReplayFailed(#[source] Option<tokio_postgres::Error>),
}

impl From<SlotError> for DbBroadcastError {
    /// The slot set-up's errors in this stream's terms, as upstream reports them.
    fn from(e: SlotError) -> Self {
        match e {
            SlotError::InUse { slot, pid, .. } => DbBroadcastError::SlotInUse { slot, pid },
            SlotError::Conflict { slot, detail } => DbBroadcastError::SlotConflict { slot, detail },
            SlotError::NotReleased { slot, reason } => {
                DbBroadcastError::SlotNotReleased { slot, reason }
            }
            SlotError::Create { source, .. } => {
                DbBroadcastError::from(SlotError::Replication(*source))
            }
            SlotError::Connect(r) | SlotError::Replication(r) => match r {
                ReplicationError::Server(s) if s.code == "53300" || s.code == "53400" => {
                    DbBroadcastError::MaxWalSendersReached
                }
                other => DbBroadcastError::Replication(other),
            },
            // The stream replaces a lost slot, so this is not expected; it is still a failure
            // to start replication.
            SlotError::Lost { .. } => DbBroadcastError::Task(e.to_string()),
        }
    }
}
