//! Pure decoding of `realtime.messages` inserts from pgoutput into [`DbBroadcast`]s, with
//! upstream's rules for which rows become broadcasts (POSTGRES §3.1, §3.3).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use realtime_pg::pgoutput::{Relation, TupleValue};
use serde_json::value::RawValue;

use super::{DbBroadcast, DbPayload};

/// Type OIDs of the columns this decoder reads.
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const VARCHAR: u32 = 1043;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Whether a relation is one of `realtime.messages`' partitions (or the parent): upstream
/// caches only relations in schema `realtime` whose name starts with `messages`.
pub fn is_messages_relation(rel: &Relation) -> bool {
    rel.namespace == "realtime" && rel.name.starts_with("messages")
}

/// Why a row is not broadcast. Each is logged as `UnableToBroadcastChanges`, as upstream does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// One of the required columns is NULL or absent (`inserted_at_missing`, …).
    #[error("{0}_missing")]
    Missing(&'static str),
    /// Neither `binary_payload` nor `payload` is set.
    #[error("payload_missing")]
    PayloadMissing,
    /// The row is not `extension = 'broadcast'` and the stream was asked to keep only those.
    #[error("extension {0:?} is not broadcast")]
    Extension(String),
    /// A value could not be decoded (wrong type, malformed bytes).
    #[error("cannot decode column {column}: {reason}")]
    Undecodable {
        /// Column name.
        column: String,
        /// What was wrong.
        reason: String,
    },
    /// The body exceeds the tenant's payload limit (`payload_size_exceeded`).
    #[error("payload_size_exceeded")]
    PayloadTooLarge,
}

/// One decoded value of the columns we read.
enum Value {
    Text(String),
    Bool(bool),
    Timestamp(NaiveDateTime),
    Bytes(Bytes),
}

/// Decodes one inserted tuple of a `realtime.messages` relation.
///
/// `committed_at` comes from the transaction's Begin; `broadcast_only` drops rows whose
/// `extension` is not `broadcast` (upstream does not check it); `max_body` is the tenant's
/// limit in bytes (`max_payload_size_in_kb × 1000 + 500`), compared with the body size plus
/// the 6 bytes of Erlang's external-term header that upstream counts.
pub fn decode_insert(
    rel: &Relation,
    tuple: &[TupleValue],
    committed_at: DateTime<Utc>,
    broadcast_only: bool,
    max_body: u64,
) -> Result<DbBroadcast, SkipReason> {
    let column = |name: &'static str| -> Result<Option<Value>, SkipReason> {
        let Some(i) = rel.columns.iter().position(|c| c.name == name) else {
            return Ok(None);
        };
        let type_oid = rel.columns[i].type_oid;
        match tuple.get(i) {
            None | Some(TupleValue::Null) | Some(TupleValue::UnchangedToast) => Ok(None),
            Some(v) => {
                decode_value(type_oid, v)
                    .map(Some)
                    .map_err(|reason| SkipReason::Undecodable {
                        column: name.to_string(),
                        reason,
                    })
            }
        }
    };
    if broadcast_only {
        match column("extension")? {
            Some(Value::Text(e)) if e == "broadcast" => {}
            Some(Value::Text(e)) => return Err(SkipReason::Extension(e)),
            _ => return Err(SkipReason::Extension(String::new())),
        }
    }
    // Upstream's order of checks, so the logged reason is the same.
    let inserted_at = match column("inserted_at")? {
        Some(Value::Timestamp(t)) => t,
        Some(_) => return Err(wrong_type("inserted_at")),
        None => return Err(SkipReason::Missing("inserted_at")),
    };
    let event = text(column("event")?, "event")?;
    let id = text(column("id")?, "id")?;
    let topic = text(column("topic")?, "topic")?;
    let private = match column("private")? {
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(wrong_type("private")),
        None => return Err(SkipReason::Missing("private")),
    };
    let payload = match (column("binary_payload")?, column("payload")?) {
        (Some(Value::Bytes(b)), _) => DbPayload::Binary(b),
        (Some(_), _) => return Err(wrong_type("binary_payload")),
        (None, Some(Value::Text(json))) => DbPayload::Json(raw_json(json, "payload")?),
        (None, Some(_)) => return Err(wrong_type("payload")),
        (None, None) => return Err(SkipReason::PayloadMissing),
    };
    if payload.len() as u64 + 6 > max_body {
        return Err(SkipReason::PayloadTooLarge);
    }
    Ok(DbBroadcast {
        topic,
        event,
        private,
        id,
        payload,
        inserted_at,
        committed_at,
    })
}

fn text(v: Option<Value>, name: &'static str) -> Result<String, SkipReason> {
    match v {
        Some(Value::Text(s)) => Ok(s),
        Some(_) => Err(wrong_type(name)),
        None => Err(SkipReason::Missing(name)),
    }
}

fn wrong_type(column: &str) -> SkipReason {
    SkipReason::Undecodable {
        column: column.to_string(),
        reason: "unexpected column type".to_string(),
    }
}

/// JSON text as a shared raw value (the jsonb text is passed on verbatim).
pub(super) fn raw_json(text: String, column: &str) -> Result<Arc<RawValue>, SkipReason> {
    RawValue::from_string(text)
        .map(Arc::from)
        .map_err(|e| SkipReason::Undecodable {
            column: column.to_string(),
            reason: e.to_string(),
        })
}

/// Decodes a value in either pgoutput representation (binary, as upstream streams, or text).
fn decode_value(type_oid: u32, v: &TupleValue) -> Result<Value, String> {
    match v {
        TupleValue::Binary(b) => decode_binary(type_oid, b),
        TupleValue::Text(b) => decode_text(type_oid, b),
        TupleValue::Null | TupleValue::UnchangedToast => Err("no value".into()),
    }
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8".to_string())
}

fn decode_binary(type_oid: u32, b: &Bytes) -> Result<Value, String> {
    match type_oid {
        oid::TEXT | oid::VARCHAR | oid::JSON => utf8(b).map(Value::Text),
        oid::JSONB => match b.first() {
            // jsonb_send: a version byte, then the jsonb text.
            Some(1) => utf8(&b[1..]).map(Value::Text),
            Some(v) => Err(format!("unknown jsonb version {v}")),
            None => Err("empty jsonb".into()),
        },
        oid::BOOL => match b.as_ref() {
            [v] => Ok(Value::Bool(*v != 0)),
            _ => Err("bool is not 1 byte".into()),
        },
        oid::UUID => uuid::Uuid::from_slice(b)
            .map(|u| Value::Text(u.hyphenated().to_string()))
            .map_err(|e| e.to_string()),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            let micros: [u8; 8] = b
                .as_ref()
                .try_into()
                .map_err(|_| "timestamp is not 8 bytes".to_string())?;
            realtime_pg::time::to_utc(i64::from_be_bytes(micros))
                .map(|t| Value::Timestamp(t.naive_utc()))
                .ok_or_else(|| "timestamp out of range".to_string())
        }
        oid::BYTEA => Ok(Value::Bytes(b.clone())),
        other => Err(format!("type oid {other} is not supported")),
    }
}

fn decode_text(type_oid: u32, b: &Bytes) -> Result<Value, String> {
    let s = utf8(b)?;
    match type_oid {
        oid::TEXT | oid::VARCHAR | oid::JSON | oid::JSONB | oid::UUID => Ok(Value::Text(s)),
        oid::BOOL => match s.as_str() {
            "t" => Ok(Value::Bool(true)),
            "f" => Ok(Value::Bool(false)),
            _ => Err(format!("bool {s:?}")),
        },
        oid::TIMESTAMP => NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f")
            .map(Value::Timestamp)
            .map_err(|e| format!("timestamp {s:?}: {e}")),
        oid::TIMESTAMPTZ => DateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f%#z")
            .map(|t| Value::Timestamp(t.naive_utc()))
            .map_err(|e| format!("timestamptz {s:?}: {e}")),
        oid::BYTEA => decode_hex_bytea(&s).map(Value::Bytes),
        other => Err(format!("type oid {other} is not supported")),
    }
}

/// `\x0a1b…` (bytea_output = hex, the default since PostgreSQL 9.0).
fn decode_hex_bytea(s: &str) -> Result<Bytes, String> {
    let hex = s
        .strip_prefix("\\x")
        .ok_or_else(|| "bytea is not in hex format".to_string())?;
    if hex.len() % 2 != 0 {
        return Err("odd-length bytea hex".into());
    }
    let digit = |c: u8| -> Result<u8, String> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| "invalid bytea hex digit".to_string())
    };
    hex.as_bytes()
        .chunks(2)
        .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
        .collect::<Result<Vec<u8>, String>>()
        .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use realtime_pg::pgoutput::RelationColumn;

    fn col(name: &str, type_oid: u32) -> RelationColumn {
        RelationColumn {
            is_key: false,
            name: name.into(),
            type_oid,
            type_modifier: -1,
        }
    }

    /// The column order of the final upstream schema.
    fn messages() -> Relation {
        Relation {
            oid: 1,
            namespace: "realtime".into(),
            name: "messages_2026_11_22".into(),
            replica_identity: b'd',
            columns: vec![
                col("topic", oid::TEXT),
                col("extension", oid::TEXT),
                col("payload", oid::JSONB),
                col("event", oid::TEXT),
                col("private", oid::BOOL),
                col("updated_at", oid::TIMESTAMP),
                col("inserted_at", oid::TIMESTAMP),
                col("id", oid::UUID),
                col("binary_payload", oid::BYTEA),
            ],
        }
    }

    fn bin(b: &[u8]) -> TupleValue {
        TupleValue::Binary(Bytes::copy_from_slice(b))
    }

    const UUID: [u8; 16] = [
        0x9e, 0xc0, 0x94, 0x72, 0xdf, 0xed, 0x4d, 0xfe, 0xbd, 0x88, 0x44, 0x72, 0x36, 0x1b, 0xa9,
        0x1e,
    ];

    fn row(extension: &str, payload: TupleValue, binary: TupleValue) -> Vec<TupleValue> {
        let ts = 817_000_000_123_456i64.to_be_bytes();
        let mut jsonb = vec![1u8];
        jsonb.extend_from_slice(b"{\"a\": 1}");
        let payload = match payload {
            TupleValue::UnchangedToast => bin(&jsonb),
            other => other,
        };
        vec![
            bin(b"room1"),
            bin(extension.as_bytes()),
            payload,
            bin(b"ev"),
            bin(&[1]),
            bin(&ts),
            bin(&ts),
            bin(&UUID),
            binary,
        ]
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_763_776_000, 0).unwrap()
    }

    #[test]
    fn json_row() {
        let tuple = row("broadcast", TupleValue::UnchangedToast, TupleValue::Null);
        let b = decode_insert(&messages(), &tuple, now(), false, 3_000_500).unwrap();
        assert_eq!(b.topic, "room1");
        assert_eq!(b.event, "ev");
        assert!(b.private);
        assert_eq!(b.id, "9ec09472-dfed-4dfe-bd88-4472361ba91e");
        match &b.payload {
            DbPayload::Json(j) => assert_eq!(j.get(), "{\"a\": 1}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            b.inserted_at.to_string(),
            "2025-11-21 00:26:40.123456",
            "µs since 2000-01-01"
        );
        assert_eq!(b.committed_at, now());
    }

    #[test]
    fn binary_wins_over_json() {
        let tuple = row("broadcast", TupleValue::UnchangedToast, bin(&[0xde, 0xad]));
        let b = decode_insert(&messages(), &tuple, now(), false, 3_000_500).unwrap();
        assert_eq!(
            b.payload,
            DbPayload::Binary(Bytes::from_static(&[0xde, 0xad]))
        );
    }

    #[test]
    fn required_columns_and_payload() {
        let mut tuple = row("broadcast", TupleValue::UnchangedToast, TupleValue::Null);
        tuple[3] = TupleValue::Null;
        assert_eq!(
            decode_insert(&messages(), &tuple, now(), false, 3_000_500),
            Err(SkipReason::Missing("event"))
        );
        let tuple = row("broadcast", TupleValue::Null, TupleValue::Null);
        assert_eq!(
            decode_insert(&messages(), &tuple, now(), false, 3_000_500),
            Err(SkipReason::PayloadMissing)
        );
        // private = false is a value, not a missing one.
        let mut tuple = row("broadcast", TupleValue::UnchangedToast, TupleValue::Null);
        tuple[4] = bin(&[0]);
        assert!(
            !decode_insert(&messages(), &tuple, now(), false, 3_000_500)
                .unwrap()
                .private
        );
    }

    #[test]
    fn extension_is_checked_only_on_request() {
        let tuple = row("presence", TupleValue::UnchangedToast, TupleValue::Null);
        assert!(decode_insert(&messages(), &tuple, now(), false, 3_000_500).is_ok());
        assert_eq!(
            decode_insert(&messages(), &tuple, now(), true, 3_000_500),
            Err(SkipReason::Extension("presence".into()))
        );
    }

    #[test]
    fn payload_limit_counts_six_header_bytes() {
        let tuple = row("broadcast", TupleValue::UnchangedToast, TupleValue::Null);
        // The body `{"a": 1}` is 8 bytes: 14 is the largest limit it fits.
        assert!(decode_insert(&messages(), &tuple, now(), false, 14).is_ok());
        assert_eq!(
            decode_insert(&messages(), &tuple, now(), false, 13),
            Err(SkipReason::PayloadTooLarge)
        );
    }

    #[test]
    fn text_representation() {
        let t = |s: &str| TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()));
        let tuple = vec![
            t("room1"),
            t("broadcast"),
            TupleValue::Null,
            t("ev"),
            t("f"),
            t("2026-11-22 01:02:03.5"),
            t("2026-11-22 01:02:03.5"),
            t("9ec09472-dfed-4dfe-bd88-4472361ba91e"),
            t("\\xdeadbeef"),
        ];
        let b = decode_insert(&messages(), &tuple, now(), false, 3_000_500).unwrap();
        assert!(!b.private);
        assert_eq!(b.inserted_at.to_string(), "2026-11-22 01:02:03.500");
        assert_eq!(
            b.payload,
            DbPayload::Binary(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]))
        );
    }

    #[test]
    fn schema_without_binary_payload() {
        let mut rel = messages();
        rel.columns.pop();
        let mut tuple = row("broadcast", TupleValue::UnchangedToast, TupleValue::Null);
        tuple.pop();
        assert!(decode_insert(&rel, &tuple, now(), false, 3_000_500).is_ok());
    }

    #[test]
    fn malformed_values_are_reported_not_panicked() {
        let mut tuple = row("broadcast", TupleValue::UnchangedToast, TupleValue::Null);
        tuple[7] = bin(&[1, 2, 3]);
        assert!(matches!(
            decode_insert(&messages(), &tuple, now(), false, 3_000_500),
            Err(SkipReason::Undecodable { .. })
        ));
        let mut tuple = row("broadcast", TupleValue::UnchangedToast, TupleValue::Null);
        tuple[2] = bin(b"\x01{not json");
        assert!(matches!(
            decode_insert(&messages(), &tuple, now(), false, 3_000_500),
            Err(SkipReason::Undecodable { .. })
        ));
        assert!(decode_hex_bytea("\\xzz").is_err());
        assert!(decode_hex_bytea("\\x0").is_err());
    }

    #[test]
    fn relation_filter() {
        let mut rel = messages();
        assert!(is_messages_relation(&rel));
        rel.namespace = "public".into();
        assert!(!is_messages_relation(&rel));
    }
}
