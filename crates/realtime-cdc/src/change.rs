//! One decoded row change shaped as upstream sees it: the new-tuple `columns` (unchanged TOAST
//! left out), the old `identity` (synthesised from the new tuple's key columns when pgoutput
//! sends none on UPDATE, as wal2json does), typed values, and the size test for the 413
//! fallback.

use std::sync::Arc;

use realtime_pg::pgoutput::{Relation, TupleValue};

use crate::catalog::TableInfo;
use crate::{jsonb, value, Action};

/// One column of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalColumn {
    /// Column name.
    pub name: String,
    /// Type OID from the `Relation` message.
    pub type_oid: u32,
    /// SQL type to cast the text to.
    pub cast_type: String,
    /// wal2json's `type` (`format_type` with typmod).
    pub full_type: String,
    /// Text value; `None` is SQL NULL.
    pub text: Option<String>,
    /// Typed jsonb text; `None` is SQL NULL (also for NaN/Infinity numbers, as wal2json sends
    /// those as `null`). Filled by the typing step.
    pub value: Option<String>,
    /// Part of the primary key.
    pub is_pkey: bool,
}

/// A row change ready for routing.
#[derive(Debug, Clone)]
pub struct Change {
    /// INSERT, UPDATE or DELETE.
    pub action: Action,
    /// The table's catalog shape.
    pub table: Arc<TableInfo>,
    /// `commit_timestamp` as upstream renders it.
    pub commit_timestamp: String,
    /// New tuple (INSERT, UPDATE), unchanged TOAST omitted.
    pub columns: Vec<WalColumn>,
    /// Old identity (UPDATE, DELETE).
    pub old_columns: Vec<WalColumn>,
    /// The wal2json record would exceed the configured maximum (`Error 413`).
    pub too_big: bool,
}

fn to_columns(
    rel: &Relation,
    table: &TableInfo,
    tuple: &[TupleValue],
    keep: impl Fn(usize) -> bool,
) -> Vec<WalColumn> {
    let mut out = Vec::with_capacity(tuple.len());
    for (i, (col, val)) in rel.columns.iter().zip(tuple.iter()).enumerate() {
        if !keep(i) {
            continue;
        }
        let text = match val {
            TupleValue::Null => None,
            TupleValue::UnchangedToast => continue,
            TupleValue::Text(b) | TupleValue::Binary(b) => {
                Some(String::from_utf8_lossy(b).into_owned())
            }
        };
        let catalog = table.column(&col.name);
        out.push(WalColumn {
            name: col.name.clone(),
            type_oid: col.type_oid,
            cast_type: catalog
                .map(|c| c.cast_type.clone())
                .unwrap_or_else(|| "text".to_string()),
            full_type: catalog.map(|c| c.full_type.clone()).unwrap_or_default(),
            text,
            value: None,
            is_pkey: catalog.is_some_and(|c| c.is_pkey),
        });
    }
    out
}

/// A decoded pgoutput change with its transaction's commit time.
pub struct Source<'a> {
    /// INSERT, UPDATE or DELETE.
    pub action: Action,
    /// The `Relation` message describing the tuples.
    pub relation: &'a Relation,
    /// Commit time, microseconds since 2000-01-01 UTC.
    pub commit_time_us: i64,
    /// New tuple.
    pub new: Option<&'a [TupleValue]>,
    /// Old tuple.
    pub old: Option<&'a [TupleValue]>,
    /// `old` is a `K` tuple (key columns only).
    pub old_is_key: bool,
}

/// Builds a change from pgoutput tuples.
pub fn build(src: Source<'_>, table: Arc<TableInfo>, max_record_bytes: usize) -> Change {
    let Source {
        action,
        relation: rel,
        commit_time_us,
        new,
        old,
        old_is_key,
    } = src;
    let is_key = |i: usize| rel.columns.get(i).is_some_and(|c| c.is_key);
    let columns = match new {
        Some(t) if action != Action::Delete => to_columns(rel, &table, t, |_| true),
        _ => Vec::new(),
    };
    let old_columns = match (action, old, new) {
        (Action::Insert, _, _) => Vec::new(),
        (_, Some(t), _) if old_is_key => to_columns(rel, &table, t, is_key),
        (_, Some(t), _) => to_columns(rel, &table, t, |_| true),
        // UPDATE that did not change the key: wal2json reports the key from the new tuple.
        (Action::Update, None, Some(t)) => to_columns(rel, &table, t, is_key),
        _ => Vec::new(),
    };
    let mut change = Change {
        action,
        table,
        commit_timestamp: commit_timestamp(commit_time_us),
        columns,
        old_columns,
        too_big: false,
    };
    change.too_big = wal2json_size(&change, commit_time_us) > max_record_bytes;
    change
}

/// Microseconds since 2000-01-01 UTC → `YYYY-MM-DDTHH:MM:SS.mmmZ`, milliseconds truncated.
pub fn commit_timestamp(us: i64) -> String {
    let dt = pg_epoch_to_utc(us);
    format!(
        "{}.{:03}Z",
        dt.format("%Y-%m-%dT%H:%M:%S"),
        dt.and_utc().timestamp_subsec_millis()
    )
}

fn pg_epoch_to_utc(us: i64) -> chrono::NaiveDateTime {
    const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;
    let secs = us.div_euclid(1_000_000) + PG_EPOCH_UNIX_SECS;
    let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
        .map(|d| d.naive_utc())
        .unwrap_or_default()
}

/// wal2json's rendering of a value inside its record.
fn wal2json_value(c: &WalColumn) -> String {
    let Some(text) = &c.text else {
        return "null".into();
    };
    use value::oid;
    match c.type_oid {
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID | oid::FLOAT4 | oid::FLOAT8 | oid::NUMERIC => {
            value::number(text).unwrap_or_else(|| jsonb::string(text))
        }
        oid::BOOL => if text == "t" { "true" } else { "false" }.into(),
        oid::BYTEA => jsonb::string(text.strip_prefix("\\x").unwrap_or(text)),
        _ => jsonb::string(text),
    }
}

/// Byte length of the jsonb text of the wal2json v2 record upstream measures for the 413 rule.
fn wal2json_size(change: &Change, commit_time_us: i64) -> usize {
    let col = |c: &WalColumn| {
        jsonb::object(&[
            ("name", jsonb::string(&c.name)),
            ("type", jsonb::string(&c.full_type)),
            ("value", wal2json_value(c)),
            ("typeoid", c.type_oid.to_string()),
        ])
    };
    let pk: Vec<String> = change
        .table
        .columns
        .iter()
        .filter(|c| c.is_pkey)
        .map(|c| {
            jsonb::object(&[
                ("name", jsonb::string(&c.name)),
                ("type", jsonb::string(&c.full_type)),
                ("typeoid", c.type_oid.to_string()),
            ])
        })
        .collect();
    let ts = pg_epoch_to_utc(commit_time_us)
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let ts = format!("{}+00", ts.trim_end_matches('0').trim_end_matches('.'));
    let action = match change.action {
        Action::Insert => "I",
        Action::Update => "U",
        Action::Delete => "D",
    };
    let columns: Vec<String> = change.columns.iter().map(col).collect();
    let mut pairs = vec![
        ("pk", jsonb::array(&pk)),
        ("table", jsonb::string(&change.table.name)),
        ("action", jsonb::string(action)),
        ("schema", jsonb::string(&change.table.schema)),
        ("timestamp", jsonb::string(&ts)),
    ];
    if change.action != Action::Delete {
        pairs.push(("columns", jsonb::array(&columns)));
    }
    if !change.old_columns.is_empty() {
        let identity: Vec<String> = change.old_columns.iter().map(col).collect();
        pairs.push(("identity", jsonb::array(&identity)));
    }
    jsonb::object(&pairs).len()
}

/// Fills `value` natively where possible; returns the indexes (into `columns` then
/// `old_columns`) that need a SQL cast.
pub fn type_natively(change: &mut Change) -> Vec<(bool, usize)> {
    let mut pending = Vec::new();
    for (is_old, cols) in [
        (false, &mut change.columns),
        (true, &mut change.old_columns),
    ] {
        for (i, c) in cols.iter_mut().enumerate() {
            match &c.text {
                None => c.value = None,
                Some(t) => match value::native_jsonb(c.type_oid, t) {
                    Some(v) if v == "null" => c.value = None,
                    Some(v) => c.value = Some(v),
                    None => pending.push((is_old, i)),
                },
            }
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_timestamps_truncate_to_ms() {
        // 2000-01-01T00:00:01.999999Z
        assert_eq!(commit_timestamp(1_999_999), "2000-01-01T00:00:01.999Z");
        assert_eq!(commit_timestamp(0), "2000-01-01T00:00:00.000Z");
    }
}
