//! The tenant's persistent pgoutput slot: its name, and creating or adopting it before
//! streaming.

use realtime_pg::replication::{ReplicationError, ReplicationStream};
use realtime_pg::slots;
use tokio_postgres::Client;

/// `<base>_<suffix>`; an absent suffix counts as empty, as in the official image, so the
/// default is `supabase_realtime_replication_slot_`. Characters PostgreSQL does not allow in
/// slot names are replaced by `_`.
pub fn slot_name(base: &str, suffix: Option<&str>) -> String {
    let raw = format!("{base}_{}", suffix.unwrap_or(""));
    let mut name: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    name.truncate(63);
    name
}

/// Consecutive "slot in use" answers tolerated before the holder is terminated.
pub const BUSY_ATTEMPTS_BEFORE_TERMINATE: u32 = 16;

/// Why the slot cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// Try again later (connection trouble, slot held by another session).
    #[error("{0}")]
    Retry(String),
    /// Give up: the slot can never stream again or belongs to something else.
    #[error("{0}")]
    Fatal(String),
}

impl From<tokio_postgres::Error> for SlotError {
    fn from(e: tokio_postgres::Error) -> Self {
        SlotError::Retry(e.to_string())
    }
}

/// Makes sure `slot` exists for this database with pgoutput, creating it when missing and
/// adopting one left by a previous run. `busy_attempts` counts consecutive "in use" answers:
/// after [`BUSY_ATTEMPTS_BEFORE_TERMINATE`] (over a minute with the pipeline's backoff, longer
/// than the default `wal_sender_timeout`), the holder is taken to be a stale session of a
/// crashed instance and terminated.
pub async fn ensure(
    client: &Client,
    repl: &mut ReplicationStream,
    slot: &str,
    dbname: &str,
    busy_attempts: &mut u32,
) -> Result<(), SlotError> {
    match slots::slot_info(client, slot).await? {
        None => match repl.create_slot(slot, false).await {
            Ok(_) => Ok(()),
            Err(ReplicationError::SlotExists(_)) => Ok(()),
            Err(e) if e.is_retryable() => Err(SlotError::Retry(e.to_string())),
            Err(e) => Err(SlotError::Fatal(format!(
                "cannot create replication slot {slot}: {e}"
            ))),
        },
        Some(info) if info.is_lost() => {
            // It can never stream again; drop it so a later start creates a fresh one.
            let _ = slots::drop_slot_if_exists(client, slot).await;
            Err(SlotError::Fatal(format!(
                "replication slot {slot} was invalidated (wal_status 'lost'): the WAL it needed was removed, so changes were lost; Postgres Changes stopped and will start again with a new slot on the next subscription"
            )))
        }
        Some(info)
            if info.database.as_deref() != Some(dbname)
                || info.plugin.as_deref() != Some("pgoutput") =>
        {
            Err(SlotError::Fatal(format!(
                "replication slot {slot} exists but belongs to database {:?} with plugin {:?}; set SLOT_NAME_SUFFIX so each tenant database gets its own slot",
                info.database, info.plugin
            )))
        }
        Some(info) if info.active => {
            *busy_attempts += 1;
            if *busy_attempts > BUSY_ATTEMPTS_BEFORE_TERMINATE {
                tracing::warn!(slot, pid = ?info.active_pid, "terminating the stale holder of the replication slot");
                slots::terminate_slot_backend(client, slot).await?;
            }
            Err(SlotError::Retry(format!(
                "replication slot {slot} is in use by PID {:?}",
                info.active_pid
            )))
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::slot_name;

    #[test]
    fn names() {
        assert_eq!(
            slot_name("supabase_realtime_replication_slot", None),
            "supabase_realtime_replication_slot_"
        );
        assert_eq!(
            slot_name("supabase_realtime_replication_slot", Some("eu-1")),
            "supabase_realtime_replication_slot_eu_1"
        );
    }
}
