//! A standby's mark: while a consumer waits for a slot another live session holds, it holds a
//! shared advisory lock named after the slot. A holder that stops on purpose (idle, shutdown,
//! a rolling deploy's old container) then leaves the slot in place instead of dropping it, so
//! the standby adopts it and resumes from its confirmed position: nothing committed between
//! the holder's stop and the takeover is lost.

use realtime_pg::replication::ReplicationStream;

use crate::slot::{SlotError, SlotTarget};

/// First key of the two-key advisory lock (`realtime_slot` hashed by hand: any constant that
/// no one else uses does); the second is `hashtext(<slot>)`.
const LOCK_CLASS: i32 = 0x5254_5342;

/// An open session holding the mark; closing it (or dropping it) removes the mark.
pub struct StandbyMark(ReplicationStream);

impl StandbyMark {
    /// Removes the mark.
    pub async fn clear(self) {
        self.0.close().await;
    }
}

/// Marks `target`'s slot as awaited. The slot name was checked before it is spliced.
pub async fn mark(target: &SlotTarget) -> Result<StandbyMark, SlotError> {
    realtime_pg::replication::check_slot_name(&target.slot)?;
    let mut repl = ReplicationStream::connect(&target.conn)
        .await
        .map_err(SlotError::Connect)?;
    let sql = format!(
        "SELECT pg_advisory_lock_shared({LOCK_CLASS}, hashtext('{}'))::text",
        target.slot
    );
    if let Err(e) = repl.simple_query(&sql).await {
        repl.close().await;
        return Err(e.into());
    }
    Ok(StandbyMark(repl))
}

/// SQL that is true when a session other than this one marks `slot` as awaited. `slot` must
/// have been checked.
pub(crate) fn awaited_sql(slot: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = {LOCK_CLASS}::oid \
         AND objid = hashtext('{slot}')::oid AND objsubid = 2 AND granted AND pid <> pg_backend_pid())"
    )
}
