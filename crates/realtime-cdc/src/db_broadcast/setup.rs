//! Opening the replication connection: slot check, publication, slot creation and
//! `START_REPLICATION`, in upstream's order (POSTGRES §3.3), over one `replication=database`
//! session.

use realtime_pg::replication::{LogicalStream, ReplicationError, ReplicationStream, StartOptions};
use realtime_pg::{ConnectOptions, Lsn};

use super::DbBroadcastError;

/// The publication upstream reads broadcasts from.
pub const PUBLICATION: &str = "supabase_realtime_messages_publication";

/// Slot name base; `_<suffix>` follows, with an absent suffix counted as empty.
const SLOT_BASE: &str = "supabase_realtime_messages_replication_slot";

/// `application_name` of the replication session, as upstream names it.
pub const APPLICATION_NAME: &str = "realtime_replication_connection";

/// `supabase_realtime_messages_replication_slot_<suffix>`: a bare trailing `_` without a
/// suffix (CONTROL-PLANE §1.3 F). Characters slot names cannot hold become `_`, upper case
/// becomes lower case, and the name is cut at PostgreSQL's 63 bytes.
pub fn slot_name(suffix: Option<&str>) -> String {
    crate::slot::slot_name(SLOT_BASE, suffix)
}

/// What a stream needs to (re)open its session.
pub(super) struct Target {
    pub external_id: String,
    pub conn: ConnectOptions,
    pub slot: String,
}

/// Whether a stream error says the slot's pending WAL predates the publication (it was
/// dropped and recreated meanwhile, e.g. by upstream's migration 20250123174212). pgoutput
/// then fails on every attempt, so the slot has to be recreated.
pub(super) fn publication_missing(error: &str) -> bool {
    error.contains(&format!("publication \"{PUBLICATION}\" does not exist"))
}

/// Connects, makes sure the publication and the slot exist, and starts streaming from the
/// slot's confirmed position. `recreate` drops an existing (inactive) slot first. A slot this
/// call created is dropped again when streaming cannot start.
pub(super) async fn open(t: &Target, recreate: bool) -> Result<LogicalStream, DbBroadcastError> {
    let slot_error = |e: ReplicationError| DbBroadcastError::from_replication(e, &t.slot);
    let mut repl = ReplicationStream::connect(&t.conn)
        .await
        .map_err(slot_error)?;
    let created = match prepare(t, &mut repl, recreate).await {
        Ok(created) => created,
        Err(e) => {
            repl.close().await;
            return Err(e);
        }
    };
    let options = StartOptions {
        publications: vec![PUBLICATION.to_string()],
        proto_version: 2,
        messages: false,
        binary: true,
        streaming: false,
    };
    let stream = match repl.start_with(&t.slot, Lsn::ZERO, &options).await {
        Ok(s) => s,
        Err(e) => {
            // A slot made by this attempt would otherwise hold WAL for nobody.
            if created {
                if let Err(e) = release(t, std::time::Duration::from_secs(2)).await {
                    tracing::warn!(external_id = %t.external_id, error = %e, "could not release the replication slot");
                }
            }
            return Err(slot_error(e));
        }
    };
    tracing::info!(
        external_id = %t.external_id,
        slot = %t.slot,
        publication = PUBLICATION,
        "Starting stream replication for Broadcast Changes"
    );
    Ok(stream)
}

/// Returns whether the slot was created now.
async fn prepare(
    t: &Target,
    repl: &mut ReplicationStream,
    recreate: bool,
) -> Result<bool, DbBroadcastError> {
    let slot_error = |e: ReplicationError| DbBroadcastError::from_replication(e, &t.slot);
    // The slot name is `[a-z0-9_]` only (see `slot_name`), so splicing it is safe.
    let rows = repl
        .simple_query(&format!(
            "SELECT active, active_pid, plugin, (database = current_database())::text, wal_status \
             FROM pg_replication_slots WHERE slot_name = '{}'",
            t.slot
        ))
        .await
        .map_err(slot_error)?;
    let mut exists = false;
    if let Some(row) = rows.first() {
        let col = |i: usize| row.get(i).cloned().flatten();
        if col(0).as_deref() == Some("t") {
            return Err(DbBroadcastError::SlotInUse {
                slot: t.slot.clone(),
                pid: col(1).and_then(|p| p.parse().ok()),
            });
        }
        if col(2).as_deref() != Some("pgoutput") || col(3).as_deref() != Some("true") {
            return Err(DbBroadcastError::SlotConflict {
                slot: t.slot.clone(),
                detail: format!(
                    "plugin {:?}, same database: {:?}",
                    col(2),
                    col(3).as_deref() == Some("true")
                ),
            });
        }
        if col(4).as_deref() == Some("lost") {
            // The WAL it needed is gone: it can never stream again. What was committed while
            // nobody streamed is lost; replay (§3.5) is the clients' way to catch up.
            tracing::error!(
                external_id = %t.external_id,
                slot = %t.slot,
                "ReplicationSlotLost: replication slot was invalidated (max_slot_wal_keep_size); recreating it, broadcasts committed while disconnected are not delivered"
            );
            repl.simple_query(&format!("SELECT pg_drop_replication_slot('{}')", t.slot))
                .await
                .map_err(slot_error)?;
        } else if recreate {
            tracing::error!(
                external_id = %t.external_id,
                slot = %t.slot,
                "ReplicationSlotUnusable: the slot's pending WAL predates publication {PUBLICATION}; recreating the slot, broadcasts committed in between are not delivered"
            );
            repl.simple_query(&format!("SELECT pg_drop_replication_slot('{}')", t.slot))
                .await
                .map_err(slot_error)?;
        } else {
            exists = true;
        }
    }
    // The publication must exist before the slot's starting point: pgoutput looks it up as
    // of each change it decodes.
    ensure_publication(t, repl).await?;
    if !exists {
        match repl.create_slot(&t.slot, false).await {
            Ok(_) => {}
            // Created by someone else between our check and now.
            Err(ReplicationError::SlotExists(_)) => {
                return Err(DbBroadcastError::SlotInUse {
                    slot: t.slot.clone(),
                    pid: None,
                })
            }
            Err(e) => return Err(slot_error(e)),
        }
    } else {
        tracing::info!(external_id = %t.external_id, slot = %t.slot, "resuming from the existing replication slot");
    }
    Ok(!exists)
}

/// Creates the publication when missing, and recreates it when it lists anything but
/// `realtime.messages` and its partitions.
async fn ensure_publication(
    t: &Target,
    repl: &mut ReplicationStream,
) -> Result<(), DbBroadcastError> {
    let create = format!("CREATE PUBLICATION {PUBLICATION} FOR TABLE realtime.messages");
    let exists = !repl
        .simple_query(&format!(
            "SELECT 1 FROM pg_publication WHERE pubname = '{PUBLICATION}'"
        ))
        .await
        .map_err(publication_error)?
        .is_empty();
    if !exists {
        tracing::info!(external_id = %t.external_id, "Create publication {PUBLICATION} for table realtime.messages");
        repl.simple_query(&create)
            .await
            .map_err(publication_error)?;
        return Ok(());
    }
    let tables = repl
        .simple_query(&format!(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = '{PUBLICATION}'"
        ))
        .await
        .map_err(publication_error)?;
    let valid = !tables.is_empty()
        && tables.iter().all(|row| {
            let schema = row.first().cloned().flatten();
            let table = row.get(1).cloned().flatten().unwrap_or_default();
            schema.as_deref() == Some("realtime")
                && (table == "messages" || table.starts_with("messages_"))
        });
    if !valid {
        tracing::warn!(external_id = %t.external_id, "Publication {PUBLICATION} contains unexpected tables. Recreating...");
        repl.simple_query(&format!(
            "DROP PUBLICATION IF EXISTS {PUBLICATION}; {create}"
        ))
        .await
        .map_err(publication_error)?;
    }
    Ok(())
}

fn publication_error(e: ReplicationError) -> DbBroadcastError {
    match e {
        ReplicationError::Server(s) => DbBroadcastError::Publication(s.message),
        other => DbBroadcastError::Publication(other.to_string()),
    }
}

/// Drops the slot once no session holds it (our own walsender may still be exiting); gives
/// up after `wait` rather than touch a slot someone else streams from.
pub(super) async fn release(t: &Target, wait: std::time::Duration) -> Result<(), DbBroadcastError> {
    let not_released = |reason: String| DbBroadcastError::SlotNotReleased {
        slot: t.slot.clone(),
        reason,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let attempt = async {
        let mut repl = ReplicationStream::connect(&t.conn)
            .await
            .map_err(|e| not_released(e.to_string()))?;
        let result = loop {
            let rows = repl
                .simple_query(&format!(
                    "SELECT active::text, CASE WHEN active THEN NULL ELSE pg_drop_replication_slot(slot_name)::text END \
                     FROM pg_replication_slots WHERE slot_name = '{}'",
                    t.slot
                ))
                .await;
            match rows {
                Ok(rows) => match rows.first() {
                    None => break Ok(()),
                    Some(row) if row.first().cloned().flatten().as_deref() == Some("f") => {
                        break Ok(())
                    }
                    Some(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Some(_) => break Err(not_released("the slot is still in use".into())),
                },
                Err(e) => break Err(not_released(e.to_string())),
            }
        };
        repl.close().await;
        result
    };
    match tokio::time::timeout(wait + std::time::Duration::from_secs(5), attempt).await {
        Ok(r) => r,
        Err(_) => Err(not_released(format!("timed out after {wait:?}"))),
    }
    .inspect(|()| tracing::info!(external_id = %t.external_id, slot = %t.slot, "replication slot released"))
}

#[cfg(test)]
mod tests {
    use super::slot_name;

    #[test]
    fn slot_names() {
        assert_eq!(
            slot_name(None),
            "supabase_realtime_messages_replication_slot_"
        );
        assert_eq!(
            slot_name(Some("")),
            "supabase_realtime_messages_replication_slot_"
        );
        assert_eq!(
            slot_name(Some("EU-1")),
            "supabase_realtime_messages_replication_slot_eu_1"
        );
        assert_eq!(slot_name(Some(&"x".repeat(80))).len(), 63);
    }
}
