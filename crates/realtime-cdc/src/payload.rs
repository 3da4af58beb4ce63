//! The `data` object of a `postgres_changes` push, byte-identical to upstream: the outer object
//! compact with keys in alphabetical order, `columns`/`record`/`old_record` as jsonb text.

use std::collections::HashSet;

use crate::change::{Change, WalColumn};
use crate::{jsonb, Action};

/// Values longer than this (jsonb text bytes) are dropped from a 413 payload.
const MAX_VALUE_BYTES_WHEN_TOO_BIG: usize = 64;

/// The 400/401 rows: no primary key, or a primary key the role may not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowError {
    /// `Error 400: Bad Request, no primary key`
    NoPrimaryKey,
    /// `Error 401: Unauthorized`
    Unauthorized,
}

impl RowError {
    fn text(self) -> &'static str {
        match self {
            RowError::NoPrimaryKey => "Error 400: Bad Request, no primary key",
            RowError::Unauthorized => "Error 401: Unauthorized",
        }
    }
}

#[allow(clippy::too_many_arguments)] // one argument per payload key
fn outer(
    action: Action,
    schema: &str,
    table: &str,
    columns: &str,
    commit_timestamp: Option<&str>,
    errors: Option<&str>,
    record: &str,
    old_record: &str,
) -> String {
    let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
    let mut out = String::with_capacity(columns.len() + record.len() + old_record.len() + 200);
    out.push_str("{\"columns\":");
    out.push_str(columns);
    out.push_str(",\"commit_timestamp\":");
    out.push_str(&commit_timestamp.map(s).unwrap_or_else(|| "null".into()));
    out.push_str(",\"errors\":");
    out.push_str(
        &errors
            .map(|e| format!("[{}]", s(e)))
            .unwrap_or_else(|| "null".into()),
    );
    if action != Action::Insert {
        out.push_str(",\"old_record\":");
        out.push_str(old_record);
    }
    if action != Action::Delete {
        out.push_str(",\"record\":");
        out.push_str(record);
    }
    out.push_str(",\"schema\":");
    out.push_str(&s(schema));
    out.push_str(",\"table\":");
    out.push_str(&s(table));
    out.push_str(",\"type\":");
    out.push_str(&s(action.as_str()));
    out.push('}');
    out
}

/// The data of a 400/401 row.
pub fn error_row(change: &Change, error: RowError) -> String {
    outer(
        change.action,
        &change.table.schema,
        &change.table.name,
        "[]",
        None,
        Some(error.text()),
        "{}",
        "{}",
    )
}

/// The data of a normal row for one (role, selected columns) group.
pub fn row(change: &Change, selectable: &HashSet<String>, select: Option<&[String]>) -> String {
    let in_group =
        |name: &str, is_pkey: bool| is_pkey || select.is_none_or(|s| s.iter().any(|c| c == name));
    let small = |v: &Option<String>| {
        !change.too_big
            || v.as_ref()
                .is_some_and(|v| v.len() <= MAX_VALUE_BYTES_WHEN_TOO_BIG)
    };
    let value = |c: &WalColumn| c.value.clone().unwrap_or_else(|| "null".into());

    let columns: Vec<String> = change
        .table
        .columns
        .iter()
        .filter(|c| selectable.contains(&c.name) && in_group(&c.name, c.is_pkey))
        .map(|c| {
            jsonb::object(&[
                ("name", jsonb::string(&c.name)),
                ("type", jsonb::string(&c.typname)),
            ])
        })
        .collect();
    let columns = jsonb::array(&columns);

    let mut record = Vec::new();
    if change.action != Action::Delete {
        for c in &change.columns {
            if selectable.contains(&c.name) && in_group(&c.name, c.is_pkey) && small(&c.value) {
                record.push((c.name.as_str(), value(c)));
            }
        }
        // Columns only in the old row: unchanged TOAST filled in from a FULL identity. Their
        // "new value" is NULL, so the 413 rule always drops them.
        for c in &change.old_columns {
            if change.columns.iter().any(|n| n.name == c.name) {
                continue;
            }
            if selectable.contains(&c.name) && in_group(&c.name, c.is_pkey) && small(&None) {
                record.push((c.name.as_str(), value(c)));
            }
        }
    }
    let mut old_record = Vec::new();
    if change.action != Action::Insert {
        for c in &change.old_columns {
            let rls_ok = change.action != Action::Delete || !change.table.rls_enabled || c.is_pkey;
            if selectable.contains(&c.name)
                && in_group(&c.name, c.is_pkey)
                && small(&c.value)
                && rls_ok
            {
                old_record.push((c.name.as_str(), value(c)));
            }
        }
    }
    outer(
        change.action,
        &change.table.schema,
        &change.table.name,
        &columns,
        Some(&change.commit_timestamp),
        change.too_big.then_some("Error 413: Payload Too Large"),
        &jsonb::object(&record),
        &jsonb::object(&old_record),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogColumn, TableInfo};
    use std::sync::Arc;

    fn cat(name: &str, typname: &str, type_oid: u32, is_pkey: bool) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            typname: typname.into(),
            type_oid,
            cast_type: typname.into(),
            regtype: typname.into(),
            full_type: typname.into(),
            is_pkey,
            generated: false,
        }
    }

    fn wal(name: &str, value: Option<&str>, is_pkey: bool) -> WalColumn {
        WalColumn {
            name: name.into(),
            type_oid: 25,
            cast_type: "text".into(),
            full_type: "text".into(),
            text: value.map(str::to_string),
            value: value.map(str::to_string),
            is_pkey,
        }
    }

    fn table(rls: bool) -> Arc<TableInfo> {
        Arc::new(TableInfo {
            oid: 1,
            schema: "public".into(),
            name: "test".into(),
            rls_enabled: rls,
            columns: vec![
                cat("id", "int4", 23, true),
                cat("details", "text", 25, false),
                cat("binary_data", "bytea", 17, false),
            ],
        })
    }

    fn all() -> HashSet<String> {
        ["id", "details", "binary_data"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn change(action: Action, rls: bool) -> Change {
        Change {
            action,
            table: table(rls),
            commit_timestamp: "2026-08-21T10:15:30.123Z".into(),
            columns: vec![],
            old_columns: vec![],
            too_big: false,
        }
    }

    #[test]
    fn insert_exact() {
        let mut c = change(Action::Insert, false);
        c.columns = vec![
            wal("id", Some("1"), true),
            wal("details", Some("\"hello\""), false),
            wal("binary_data", Some("\"0102030405\""), false),
        ];
        assert_eq!(
            row(&c, &all(), None),
            r#"{"columns":[{"name": "id", "type": "int4"}, {"name": "details", "type": "text"}, {"name": "binary_data", "type": "bytea"}],"commit_timestamp":"2026-08-21T10:15:30.123Z","errors":null,"record":{"id": 1, "details": "hello", "binary_data": "0102030405"},"schema":"public","table":"test","type":"INSERT"}"#
        );
    }

    #[test]
    fn delete_with_rls_keeps_only_the_key() {
        let mut c = change(Action::Delete, true);
        c.old_columns = vec![
            wal("id", Some("1"), true),
            wal("details", Some("\"x\""), false),
        ];
        let data = row(&c, &all(), None);
        assert!(data.contains(r#""old_record":{"id": 1}"#), "{data}");
        assert!(!data.contains("\"record\""));
    }

    #[test]
    fn too_big_drops_long_and_null_values() {
        let mut c = change(Action::Insert, false);
        let long = format!("\"{}\"", "x".repeat(200));
        c.columns = vec![
            wal("id", Some("60"), true),
            wal("details", Some(&long), false),
            wal("binary_data", None, false),
        ];
        c.too_big = true;
        let data = row(&c, &all(), None);
        assert!(data.contains(r#""record":{"id": 60}"#), "{data}");
        assert!(data.contains(r#""errors":["Error 413: Payload Too Large"]"#));
    }

    #[test]
    fn select_and_privileges() {
        let mut c = change(Action::Insert, false);
        c.columns = vec![
            wal("id", Some("50"), true),
            wal("details", Some("\"hello\""), false),
            wal("binary_data", Some("\"01\""), false),
        ];
        let sel = vec!["details".to_string()];
        let data = row(&c, &all(), Some(&sel));
        assert!(data.starts_with(
            r#"{"columns":[{"name": "id", "type": "int4"}, {"name": "details", "type": "text"}],"#
        ));
        assert!(data.contains(r#""record":{"id": 50, "details": "hello"}"#));
    }

    #[test]
    fn error_rows() {
        let c = change(Action::Update, false);
        assert_eq!(
            error_row(&c, RowError::NoPrimaryKey),
            r#"{"columns":[],"commit_timestamp":null,"errors":["Error 400: Bad Request, no primary key"],"old_record":{},"record":{},"schema":"public","table":"test","type":"UPDATE"}"#
        );
    }
}
