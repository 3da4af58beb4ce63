//! Filters with PostgreSQL's own comparison semantics.
//!
//! Both sides are cast to the column's type and compared by the database (one statement per
//! change evaluates every distinct filter), so collations, numeric and temporal comparison,
//! `LIKE` escapes, regex flavours and array literals behave exactly as upstream's
//! `realtime.check_equality_op`; reimplementing those operators in Rust would drift. The
//! subscribe-time checks of `realtime.subscription_check_filters` are reproduced here too,
//! with its messages.

use tokio_postgres::Client;

use crate::catalog::{CatalogColumn, TableInfo};
use crate::error::{exception_text, postgrex_message};
use crate::params::{Filter, FilterOp};

/// A boolean SQL expression that is TRUE when a column value passes `filter`.
/// `col` and `val` are the bind parameter numbers of the column's text and the filter value;
/// `cast_type` comes from the catalog. NULL results count as "not visible" at the call site.
pub fn predicate_sql(filter: &Filter, cast_type: &str, col: usize, val: usize) -> String {
    let lhs = format!("${col}::text::{cast_type}");
    let rhs = format!("${val}::text::{cast_type}");
    let not = |e: String| {
        if filter.negate {
            format!("(not {e})")
        } else {
            e
        }
    };
    match filter.op {
        FilterOp::Eq => not(format!("({lhs} = {rhs})")),
        FilterOp::Neq => not(format!("({lhs} != {rhs})")),
        FilterOp::Lt => not(format!("({lhs} < {rhs})")),
        FilterOp::Lte => not(format!("({lhs} <= {rhs})")),
        FilterOp::Gt => not(format!("({lhs} > {rhs})")),
        FilterOp::Gte => not(format!("({lhs} >= {rhs})")),
        FilterOp::In => not(format!("({lhs} = any (${val}::text::{cast_type}[]))")),
        FilterOp::Like => not(format!("({lhs} like {rhs})")),
        FilterOp::Ilike => not(format!("({lhs} ilike {rhs})")),
        FilterOp::Match => not(format!("({lhs} ~ {rhs})")),
        FilterOp::Imatch => not(format!("({lhs} ~* {rhs})")),
        FilterOp::Is => {
            // The keyword was validated at subscribe time; anything else never matches.
            let keyword = match filter.value.as_str() {
                "null" => "null",
                "true" => "true",
                "false" => "false",
                "unknown" => "unknown",
                _ => return "false".to_string(),
            };
            let is = if filter.negate { "is not" } else { "is" };
            format!("({lhs} {is} {keyword})")
        }
        FilterOp::IsDistinct => {
            let op = if filter.negate {
                "is not distinct from"
            } else {
                "is distinct from"
            };
            format!("({lhs} {op} {rhs})")
        }
    }
}

/// `raise exception` text in Postgrex form.
fn raised(message: String) -> String {
    exception_text("ERROR", "P0001", &message)
}

/// Checks a subscription's filters and selected columns against one table as
/// `realtime.subscription_check_filters` does. `readable` are the columns the subscriber's
/// role may select. The error is the exception text upstream appends to its message.
pub async fn validate(
    client: &Client,
    table: &TableInfo,
    readable: &std::collections::HashSet<String>,
    filters: &[Filter],
    select: Option<&[String]>,
) -> Result<(), String> {
    for f in filters {
        let column = match table.column(&f.column) {
            Some(c) if readable.contains(&f.column) => c,
            _ => return Err(raised(format!("invalid column for filter {}", f.column))),
        };
        validate_one(client, column, f).await?;
    }
    for col in select.unwrap_or_default() {
        if !readable.contains(col) {
            return Err(raised(format!("invalid column for select {col}")));
        }
    }
    Ok(())
}

async fn validate_one(client: &Client, column: &CatalogColumn, f: &Filter) -> Result<(), String> {
    let db = |e: tokio_postgres::Error| postgrex_message(&e);
    match f.op {
        FilterOp::In => {
            let sql = format!(
                "select coalesce(jsonb_array_length(to_jsonb($1::text::{}[])), 0)",
                column.cast_type
            );
            let n: i32 = client
                .query_one(&sql, &[&f.value])
                .await
                .map_err(db)?
                .get(0);
            if n > 100 {
                return Err(raised(
                    "too many values for `in` filter. Maximum 100".into(),
                ));
            }
        }
        FilterOp::Is => {
            if !matches!(f.value.as_str(), "null" | "true" | "false" | "unknown") {
                return Err(raised(
                    "invalid value for is filter: must be null, true, false, or unknown".into(),
                ));
            }
            if f.value != "null" && column.type_oid != crate::value::oid::BOOL {
                return Err(raised(format!(
                    "is {} filter requires a boolean column, got {}",
                    f.value, column.regtype
                )));
            }
        }
        FilterOp::Like | FilterOp::Ilike => {
            let ok: bool = client
                .query_one(
                    "select exists(select 1 from pg_operator where oprname = '~~' and oprleft = $1)",
                    &[&column.type_oid],
                )
                .await
                .map_err(db)?
                .get(0);
            if !ok {
                return Err(raised(format!(
                    "operator {} requires a text-compatible column type, got {}",
                    f.op.as_str(),
                    column.regtype
                )));
            }
        }
        FilterOp::Match | FilterOp::Imatch => {
            let opname = if f.op == FilterOp::Imatch { "~*" } else { "~" };
            let ok: bool = client
                .query_one(
                    "select exists(select 1 from pg_operator where oprname = $1 and oprleft = $2
                       and oprright = $2 and oprresult = 'boolean'::regtype)",
                    &[&opname, &column.type_oid],
                )
                .await
                .map_err(db)?
                .get(0);
            if !ok {
                return Err(raised(format!(
                    "operator {} requires a text-compatible column type, got {}",
                    f.op.as_str(),
                    column.regtype
                )));
            }
            if let Err(e) = client.query_one("select '' ~ $1::text", &[&f.value]).await {
                let sqlerrm = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string());
                return Err(raised(format!(
                    "invalid regular expression for {} filter: {sqlerrm}",
                    f.op.as_str()
                )));
            }
        }
        _ => {
            let sql = format!("select to_jsonb($1::text::{})", column.cast_type);
            client.query_one(&sql, &[&f.value]).await.map_err(db)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(op: FilterOp, value: &str, negate: bool) -> Filter {
        Filter {
            column: "c".into(),
            op,
            value: value.into(),
            negate,
        }
    }

    #[test]
    fn predicates() {
        assert_eq!(
            predicate_sql(&f(FilterOp::Eq, "1", false), "integer", 1, 2),
            "($1::text::integer = $2::text::integer)"
        );
        assert_eq!(
            predicate_sql(&f(FilterOp::In, "{1,2}", true), "integer", 3, 4),
            "(not ($3::text::integer = any ($4::text::integer[])))"
        );
        assert_eq!(
            predicate_sql(&f(FilterOp::Is, "null", true), "text", 1, 2),
            "($1::text::text is not null)"
        );
        assert_eq!(
            predicate_sql(&f(FilterOp::Is, "nope", false), "text", 1, 2),
            "false"
        );
        assert_eq!(
            predicate_sql(&f(FilterOp::IsDistinct, "x", true), "text", 1, 2),
            "($1::text::text is not distinct from $2::text::text)"
        );
    }
}
