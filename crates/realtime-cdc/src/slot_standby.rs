//! A standby's mark: while a consumer waits for a slot another live session holds, it holds a
//! shared advisory lock named after the slot. A holder that stops on purpose (idle, shutdown,
//! a rolling deploy's old container) then leaves the slot in place instead of dropping it, so
//! the standby adopts it and resumes from its confirmed position: nothing committed between
//! the holder's stop and the takeover is lost.

use realtime_pg::connect::{connect, ConnectError};
use realtime_pg::replication::{check_slot_name, ReplicationError};

use crate::slot::SlotTarget;

/// First key of the two-key advisory lock (any constant no one else uses); the second is
/// `hashtext(<slot>)`.
const LOCK_CLASS: i32 = 0x5254_5342;

/// `application_name` of the marking session, so operators can tell standbys apart in
/// `pg_stat_activity`.
const APPLICATION_NAME: &str = "realtime_slot_standby";

/// Why the mark could not be set; the standby waits all the same.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    /// The slot name cannot be spliced into SQL.
    #[error(transparent)]
    Name(#[from] ReplicationError),
    /// The connection failed.
    #[error("cannot connect to mark the slot as awaited: {0}")]
    Connect(#[from] ConnectError),
    /// Taking the lock failed.
    #[error("cannot mark the slot as awaited: {0}")]
    Lock(#[from] tokio_postgres::Error),
}

/// An open ordinary session (not a walsender, so a standby uses none of `max_wal_senders`)
/// holding the mark; clearing or dropping it closes the session and removes the mark.
pub struct StandbyMark(tokio_postgres::Client);

impl StandbyMark {
    /// Removes the mark.
    pub async fn clear(self) {
        drop(self.0);
    }
}

/// Marks `target`'s slot as awaited.
pub async fn mark(target: &SlotTarget) -> Result<StandbyMark, MarkError> {
    check_slot_name(&target.slot)?;
    let mut conn = target.conn.clone();
    conn.application_name = APPLICATION_NAME.to_string();
    let client = connect(&conn).await?;
    // The name was checked, so splicing it is safe.
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_lock_shared({LOCK_CLASS}, hashtext('{}'))",
            target.slot
        ))
        .await?;
    Ok(StandbyMark(client))
}

/// SQL that is true when a session other than this one marks `slot` as awaited. `slot` must
/// have been checked.
pub(crate) fn awaited_sql(slot: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = {LOCK_CLASS}::oid \
         AND objid = hashtext('{slot}')::oid AND objsubid = 2 AND granted AND pid <> pg_backend_pid())"
    )
}
