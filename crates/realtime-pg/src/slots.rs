//! Replication-slot inspection and control over an ordinary connection (`pg_replication_slots`).

use tokio_postgres::Client;

use crate::lsn::Lsn;

/// `pg_replication_slots.wal_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalStatus {
    /// Needed WAL is within `max_wal_size`.
    Reserved,
    /// Needed WAL exceeds `max_wal_size` but is kept.
    Extended,
    /// Needed WAL will be removed at the next checkpoint unless the slot catches up.
    Unreserved,
    /// Needed WAL is gone: the slot was invalidated (`max_slot_wal_keep_size`) and is unusable.
    Lost,
    /// A value this code does not know.
    Other(String),
}

impl WalStatus {
    fn parse(s: &str) -> WalStatus {
        match s {
            "reserved" => WalStatus::Reserved,
            "extended" => WalStatus::Extended,
            "unreserved" => WalStatus::Unreserved,
            "lost" => WalStatus::Lost,
            other => WalStatus::Other(other.to_owned()),
        }
    }
}

/// One row of `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot name.
    pub slot_name: String,
    /// Output plugin (`pgoutput`, `wal2json`), `None` for physical slots.
    pub plugin: Option<String>,
    /// `logical` or `physical`.
    pub slot_type: String,
    /// Database of a logical slot.
    pub database: Option<String>,
    /// Dropped when its session ends.
    pub temporary: bool,
    /// A walsender or session is using it now.
    pub active: bool,
    /// That backend's process id.
    pub active_pid: Option<i32>,
    /// Oldest WAL the slot still needs.
    pub restart_lsn: Option<Lsn>,
    /// Position the consumer confirmed; streaming resumes after it.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// WAL availability (`None` for slots that never reserved WAL).
    pub wal_status: Option<WalStatus>,
}

impl SlotInfo {
    /// The slot was invalidated and can never stream again: drop and re-create it.
    pub fn is_lost(&self) -> bool {
        self.wal_status == Some(WalStatus::Lost)
    }
}

/// The slot named `slot`, if it exists.
pub async fn slot_info(
    client: &Client,
    slot: &str,
) -> Result<Option<SlotInfo>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "select slot_name::text, plugin::text, slot_type, database::text, temporary, active, \
                    active_pid, restart_lsn::text, confirmed_flush_lsn::text, wal_status \
             from pg_replication_slots where slot_name = $1",
            &[&slot],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let lsn = |i: usize| -> Result<Option<Lsn>, tokio_postgres::Error> {
        Ok(row
            .try_get::<_, Option<String>>(i)?
            .and_then(|t| t.parse().ok()))
    };
    Ok(Some(SlotInfo {
        slot_name: row.try_get(0)?,
        plugin: row.try_get(1)?,
        slot_type: row.try_get(2)?,
        database: row.try_get(3)?,
        temporary: row.try_get(4)?,
        active: row.try_get(5)?,
        active_pid: row.try_get(6)?,
        restart_lsn: lsn(7)?,
        confirmed_flush_lsn: lsn(8)?,
        wal_status: row
            .try_get::<_, Option<String>>(9)?
            .map(|s| WalStatus::parse(&s)),
    }))
}

/// Terminates the backend holding `slot` (SQLSTATE 55006 on start), whoever it is; returns
/// whether one was signalled. The slot becomes free once that backend has exited. For tests
/// and deliberate teardown only: taking a slot over goes through
/// [`crate::slot_holder::terminate_unchanged_holder`], which never ends a live holder.
pub async fn terminate_slot_backend(
    client: &Client,
    slot: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "select pg_terminate_backend(active_pid) from pg_replication_slots \
             where slot_name = $1 and active_pid is not null",
            &[&slot],
        )
        .await?;
    match row {
        Some(row) => Ok(row.try_get::<_, Option<bool>>(0)?.unwrap_or(false)),
        None => Ok(false),
    }
}

/// Drops `slot` over an ordinary connection if it exists and is unused; returns whether it
/// existed.
pub async fn drop_slot_if_exists(
    client: &Client,
    slot: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
             where slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.is_some())
}
