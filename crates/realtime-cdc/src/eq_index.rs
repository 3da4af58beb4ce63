//! The `eq` filter index's ground rules: which column types may be matched by comparing text,
//! and the canonical text of a filter value, computed once at subscribe time.
//!
//! The router pre-selects a binding with `col=eq.value` only for changes whose `col` text (as
//! pgoutput sends it: the type's output function) equals the value's canonical text. That is
//! exact only for types whose output text is unique per value and whose equality is value
//! equality; the filter evaluation in SQL ([`crate::evaluate`]) still decides.

use tokio_postgres::Client;

use crate::value::oid;

/// The canonical text of one `eq` filter value for one table, as the router's index key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EqValue {
    /// The relation OID it was computed for (a wildcard entry covers several tables).
    pub table: u32,
    /// Position of the filter in the entry's `filters`.
    pub filter: usize,
    /// The column's type when computed; a change of type (`ALTER COLUMN … TYPE`) makes the
    /// text meaningless, so the router indexes the value only while the type is the same.
    pub type_oid: u32,
    /// The type's output text of the value (`ABCD…` → `abcd…` for uuid, `+07` → `7`).
    pub text: String,
}

/// Whether text equality of the output form is value equality for the type. `bpchar` (pads),
/// `numeric` (`1.5` = `1.50`), floats (`0` = `-0`), `citext`, json, timestamps and domains
/// are not; their bindings are reached by every change of the table instead. Text types
/// compare under the database's default collation here, which is always deterministic
/// (equal only when the bytes are equal).
pub fn indexable(type_oid: u32) -> bool {
    matches!(
        type_oid,
        oid::BOOL | oid::INT2 | oid::INT4 | oid::INT8 | oid::TEXT | oid::VARCHAR | oid::UUID
    )
}

/// `format('%s', …)` renders with the type's output function, as pgoutput does; a plain
/// `::text` cast would not (`true::text` is `true`, the output function gives `t`).
fn canonical_sql(cast_type: &str) -> String {
    format!("select format('%s', $1::text::{cast_type})")
}

/// The canonical text of `value` for a column of `cast_type` (which must be
/// [`indexable`]), computed by the tenant database so every input form it accepts maps to
/// the text its output function gives.
pub async fn canonical(
    client: &Client,
    cast_type: &str,
    value: &str,
) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one(&canonical_sql(cast_type), &[&value])
        .await?;
    row.try_get(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_exact_types_are_indexable() {
        for t in [
            oid::BOOL,
            oid::INT2,
            oid::INT4,
            oid::INT8,
            oid::TEXT,
            oid::VARCHAR,
            oid::UUID,
        ] {
            assert!(indexable(t), "{t}");
        }
        for t in [
            oid::BPCHAR,
            oid::NUMERIC,
            oid::FLOAT4,
            oid::FLOAT8,
            oid::TIMESTAMPTZ,
            oid::BYTEA,
            oid::NAME,
            oid::OID,
        ] {
            assert!(!indexable(t), "{t}");
        }
    }

    #[test]
    fn canonicalisation_uses_the_output_function() {
        assert_eq!(canonical_sql("uuid"), "select format('%s', $1::text::uuid)");
    }
}
