//! The names broadcast from the database uses, and its publication: created when missing,
//! recreated when it lists anything but `realtime.messages` and its partitions. It is checked
//! between the slot check and the slot's creation, in upstream's order (POSTGRES §3.3).

use realtime_pg::replication::{ReplicationError, ReplicationStream};

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

/// Whether a stream error says the slot's pending WAL predates the publication (it was
/// dropped and recreated meanwhile, e.g. by upstream's migration 20250123174212). pgoutput
/// then fails on every attempt, so the slot has to be recreated.
pub(super) fn publication_missing(error: &str) -> bool {
    error.contains(&format!("publication \"{PUBLICATION}\" does not exist"))
}

/// Creates the publication when missing, and recreates it when it lists anything but
/// `realtime.messages` and its partitions.
pub(super) async fn ensure(
    external_id: &str,
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
        tracing::info!(%external_id, "Create publication {PUBLICATION} for table realtime.messages");
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
        tracing::warn!(%external_id, "Publication {PUBLICATION} contains unexpected tables. Recreating...");
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
