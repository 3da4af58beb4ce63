//! Daily partitions of `realtime.messages`: created ahead of time, dropped after three days.

use chrono::{Days, NaiveDate};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::error::TenantMigrationError;

/// Partitions are made for yesterday through this many days ahead.
const DAYS_AHEAD: u64 = 3;
/// Partitions whose day is before `today - RETENTION_DAYS` are dropped (upstream's 72 hours).
const RETENTION_DAYS: u64 = 3;

/// `messages_YYYY_MM_DD`, the partition holding `day`.
pub(crate) fn partition_name(day: NaiveDate) -> String {
    format!("messages_{}", day.format("%Y_%m_%d"))
}

/// The day a `messages_YYYY_MM_DD` partition holds; `None` for any other name.
pub(crate) fn partition_day(name: &str) -> Option<NaiveDate> {
    let date = name.strip_prefix("messages_")?;
    // Exactly YYYY_MM_DD, so the name is safe to put into SQL unquoted.
    if date.len() != 10 || !date.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    NaiveDate::parse_from_str(date, "%Y_%m_%d").ok()
}

pub(super) async fn create_partitions(
    client: &Client,
    today: NaiveDate,
) -> Result<(), TenantMigrationError> {
    let first = today - Days::new(1);
    let mut first_error = None;
    for offset in 0..=DAYS_AHEAD + 1 {
        let day = first + Days::new(offset);
        let name = partition_name(day);
        let next = day + Days::new(1);
        // One simple query = one implicit transaction per partition, as upstream does.
        let sql = format!(
            "create table if not exists realtime.{name} partition of realtime.messages \
             for values from ('{day}') to ('{next}'); \
             alter table realtime.{name} owner to supabase_realtime_admin;"
        );
        match client.batch_execute(&sql).await {
            Ok(()) => tracing::debug!(partition = %name, "messages partition ready"),
            // Another server created it between the check and the create.
            Err(error) if error.code() == Some(&SqlState::DUPLICATE_TABLE) => {}
            Err(error) => {
                tracing::warn!(partition = %name, error = %error, "PartitionCreationFailed");
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        None => Ok(()),
        Some(source) => Err(TenantMigrationError::Database {
            context: "creating realtime.messages partitions",
            source,
        }),
    }
}

pub(super) async fn drop_old_partitions(
    client: &Client,
    today: NaiveDate,
) -> Result<Vec<String>, TenantMigrationError> {
    let cutoff = today - Days::new(RETENTION_DAYS);
    let rows = client
        .query(
            "select child.relname::text
             from pg_catalog.pg_inherits i
             join pg_catalog.pg_class parent on parent.oid = i.inhparent
             join pg_catalog.pg_class child on child.oid = i.inhrelid
             join pg_catalog.pg_namespace pn on pn.oid = parent.relnamespace
             join pg_catalog.pg_namespace cn on cn.oid = child.relnamespace
             where pn.nspname = 'realtime' and parent.relname = 'messages'
               and cn.nspname = 'realtime'
             order by 1",
            &[],
        )
        .await
        .map_err(TenantMigrationError::database(
            "listing realtime.messages partitions",
        ))?;

    let mut dropped = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        // Names that are not ours (no date) are left alone.
        let Some(day) = partition_day(&name) else {
            continue;
        };
        if day >= cutoff {
            continue;
        }
        client
            .batch_execute(&format!("drop table if exists realtime.{name}"))
            .await
            .map_err(TenantMigrationError::database(
                "dropping an old messages partition",
            ))?;
        tracing::info!(partition = %name, "dropped old messages partition");
        dropped.push(name);
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 9).unwrap();
        assert_eq!(partition_name(day), "messages_2026_01_09");
        assert_eq!(partition_day("messages_2026_01_09"), Some(day));
    }

    #[test]
    fn foreign_names_have_no_day() {
        assert_eq!(partition_day("messages_default"), None);
        assert_eq!(partition_day("messages_2026_1_9"), None);
        assert_eq!(partition_day("events_2026_01_09"), None);
    }
}
