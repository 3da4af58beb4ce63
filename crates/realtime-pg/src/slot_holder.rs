//! Who holds a replication slot (`pg_replication_slots.active_pid` joined with
//! `pg_stat_replication`), and ending that holder only if nothing about it changed since it
//! was judged gone. Both run over a `replication=database` session, which accepts SQL.
//!
//! Times are compared as the server reports them and never against a clock: `reply_time` is
//! the send time the holder itself wrote into its last standby status update, so it runs on
//! the holder's clock, not the server's. Whether it moves is what tells a live holder.

use crate::replication::{check_slot_name, ReplicationError, ReplicationStream};

/// The session holding a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotHolder {
    /// `active_pid`.
    pub pid: i32,
    /// Its `pg_stat_replication` row; `None` when the holder is no walsender (a backend in
    /// `pg_logical_slot_get_changes`) or the row is not visible to this role.
    pub walsender: Option<Walsender>,
}

/// A walsender's `pg_stat_replication` figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walsender {
    /// `backend_start` in microseconds since the Unix epoch: with `pid`, names the session.
    pub backend_start_us: i64,
    /// `reply_time` in microseconds since the Unix epoch (the holder's clock); `None` before
    /// its first status update.
    pub reply_time_us: Option<i64>,
    /// `state` (`startup`, `catchup`, `streaming`, `stopping`).
    pub state: Option<String>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// `client_addr` (`None` over a Unix socket).
    pub client_addr: Option<String>,
}

impl SlotHolder {
    /// For logs: `PID 123 (realtime_replication_cdc from 10.0.0.5, streaming)`.
    pub fn describe(&self) -> String {
        match &self.walsender {
            None => format!("PID {}", self.pid),
            Some(w) => format!(
                "PID {} ({} from {}, {})",
                self.pid,
                w.application_name.as_deref().unwrap_or("?"),
                w.client_addr.as_deref().unwrap_or("local socket"),
                w.state.as_deref().unwrap_or("?"),
            ),
        }
    }
}

/// Microseconds since the Unix epoch of a timestamptz expression, exact on PG14+ (numeric)
/// and the same value for the same input on older versions.
fn micros(expr: &str) -> String {
    format!("(extract(epoch from {expr}) * 1000000)::bigint")
}

fn holder_sql(slot: &str) -> String {
    format!(
        "SELECT s.active_pid::text, {}::text, {}::text, r.state::text, r.application_name::text, \
                host(r.client_addr) \
         FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
         WHERE s.slot_name = '{slot}' AND s.active_pid IS NOT NULL",
        micros("r.backend_start"),
        micros("r.reply_time"),
    )
}

fn terminate_sql(slot: &str, pid: i32, w: &Walsender) -> String {
    let reply = match w.reply_time_us {
        Some(t) => format!("{} = {t}", micros("r.reply_time")),
        None => "r.reply_time IS NULL".to_string(),
    };
    format!(
        "SELECT pg_terminate_backend(s.active_pid)::text \
         FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid \
         WHERE s.slot_name = '{slot}' AND s.active_pid = {pid} AND {} = {} AND {reply}",
        micros("r.backend_start"),
        w.backend_start_us,
    )
}

fn parse_holder(rows: &[Vec<Option<String>>]) -> Option<SlotHolder> {
    let row = rows.first()?;
    let col = |i: usize| row.get(i).cloned().flatten();
    let pid = col(0)?.parse().ok()?;
    let walsender = col(1)
        .and_then(|t| t.parse().ok())
        .map(|backend_start_us| Walsender {
            backend_start_us,
            reply_time_us: col(2).and_then(|t| t.parse().ok()),
            state: col(3),
            application_name: col(4),
            client_addr: col(5),
        });
    Some(SlotHolder { pid, walsender })
}

/// The session holding `slot`, or `None` when the slot is free or absent.
pub async fn slot_holder(
    repl: &mut ReplicationStream,
    slot: &str,
) -> Result<Option<SlotHolder>, ReplicationError> {
    check_slot_name(slot)?;
    let rows = repl.simple_query(&holder_sql(slot)).await?;
    Ok(parse_holder(&rows))
}

/// Terminates `holder` in one statement, and only if it still holds `slot` as the same
/// walsender (`pid`, `backend_start`) with the same `reply_time`: a holder that answered in
/// the meantime, or a new holder, is left alone. Returns whether it was signalled. A holder
/// that is no walsender is never terminated.
pub async fn terminate_unchanged_holder(
    repl: &mut ReplicationStream,
    slot: &str,
    holder: &SlotHolder,
) -> Result<bool, ReplicationError> {
    check_slot_name(slot)?;
    let Some(w) = &holder.walsender else {
        return Ok(false);
    };
    let rows = repl
        .simple_query(&terminate_sql(slot, holder.pid, w))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .as_deref()
        == Some("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[Option<&str>]) -> Vec<Vec<Option<String>>> {
        vec![cols.iter().map(|c| c.map(str::to_string)).collect()]
    }

    #[test]
    fn parses_a_walsender_and_a_plain_backend() {
        let h = parse_holder(&row(&[
            Some("42"),
            Some("1700000000000001"),
            None,
            Some("streaming"),
            Some("realtime_replication_cdc"),
            Some("10.0.0.5"),
        ]))
        .unwrap();
        assert_eq!(h.pid, 42);
        let w = h.walsender.clone().unwrap();
        assert_eq!(w.backend_start_us, 1_700_000_000_000_001);
        assert_eq!(w.reply_time_us, None);
        assert_eq!(
            h.describe(),
            "PID 42 (realtime_replication_cdc from 10.0.0.5, streaming)"
        );
        let plain = parse_holder(&row(&[Some("7"), None, None, None, None, None])).unwrap();
        assert_eq!(plain.walsender, None);
        assert_eq!(plain.describe(), "PID 7");
        assert_eq!(parse_holder(&[]), None);
    }

    #[test]
    fn termination_rechecks_the_same_session_and_reply() {
        let w = Walsender {
            backend_start_us: 5,
            reply_time_us: None,
            state: None,
            application_name: None,
            client_addr: None,
        };
        let sql = terminate_sql("s", 42, &w);
        assert!(sql.contains("s.active_pid = 42"), "{sql}");
        assert!(sql.contains("::bigint = 5"), "{sql}");
        assert!(sql.contains("r.reply_time IS NULL"), "{sql}");
        let replied = Walsender {
            reply_time_us: Some(9),
            ..w
        };
        let sql = terminate_sql("s", 42, &replied);
        assert!(
            sql.contains("(extract(epoch from r.reply_time) * 1000000)::bigint = 9"),
            "{sql}"
        );
    }
}
