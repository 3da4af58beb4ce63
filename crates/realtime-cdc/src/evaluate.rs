//! The database-side evaluation of one change: values pgoutput text cannot type natively are
//! cast, every distinct filter is evaluated (one statement per change), and stored generated
//! columns are read from the current row.

use crate::change::{self, Change};
use crate::db::TenantDb;
use crate::params::Filter;
use crate::{filter, rls_gate, Action};

/// Failures that stop processing (the connection is gone); the pipeline reconnects and
/// replays from the last confirmed position.
#[derive(Debug, thiserror::Error)]
#[error("tenant database: {0}")]
pub struct FanoutError(#[from] pub tokio_postgres::Error);

/// Only a lost connection stops processing; an error of one statement concerns one change.
pub fn is_fatal(db: &TenantDb, e: &tokio_postgres::Error) -> bool {
    e.is_closed() || db.is_closed()
}

/// Casts the values pgoutput text could not be typed natively and evaluates every distinct
/// filter, in one statement. Returns the filter results in `filters` order.
///
/// A filter given with a canonical value (a plain `eq` on a type whose output text is unique
/// per value, see [`crate::eq_index`]) is decided by comparing that text with the change's.
pub async fn type_and_filter(
    db: &mut TenantDb,
    change: &mut Change,
    filters: &[(&Filter, Option<&str>)],
) -> Result<Vec<bool>, FanoutError> {
    let pending = change::type_natively(change);
    let mut exprs: Vec<String> = Vec::new();
    let mut params: Vec<Option<String>> = Vec::new();
    for (is_old, i) in &pending {
        let c = if *is_old {
            &change.old_columns[*i]
        } else {
            &change.columns[*i]
        };
        params.push(c.text.clone());
        exprs.push(crate::value::sql_cast_expr(params.len(), &c.cast_type));
    }
    // DELETE carries no new tuple: its filters see the old identity, as upstream.
    let source = if change.action == Action::Delete {
        &change.old_columns
    } else {
        &change.columns
    };
    let mut constant: Vec<Option<bool>> = Vec::with_capacity(filters.len());
    for (f, canonical) in filters {
        match source.iter().find(|c| c.name == f.column) {
            // A column absent from the change (unchanged TOAST, not in the identity) fails.
            None => constant.push(Some(false)),
            // NULL equals nothing.
            Some(c) if canonical.is_some() => {
                constant.push(Some(c.text.is_some() && c.text.as_deref() == *canonical))
            }
            Some(c) => {
                params.push(c.text.clone());
                let col = params.len();
                // `is` takes a keyword, not a parameter; an unused trailing parameter would
                // make the statement's parameter count disagree.
                let val = if f.op == crate::params::FilterOp::Is {
                    0
                } else {
                    params.push(Some(f.value.clone()));
                    params.len()
                };
                exprs.push(format!(
                    "coalesce({}, false)",
                    filter::predicate_sql(f, &c.cast_type, col, val)
                ));
                constant.push(None);
            }
        }
    }
    let mut results: Vec<Option<String>> = Vec::new();
    let mut bools: Vec<bool> = Vec::new();
    if !exprs.is_empty() {
        let sql = format!("select {}", exprs.join(", "));
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let outcome = match db.prepare(&sql).await {
            Ok(stmt) => db.client.query_one(&stmt, &refs).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(row) => {
                for i in 0..pending.len() {
                    results.push(row.get(i));
                }
                for i in pending.len()..exprs.len() {
                    bools.push(row.get(i));
                }
            }
            Err(e) if is_fatal(db, &e) => return Err(e.into()),
            Err(e) => {
                // One value or filter the database rejects: evaluate each on its own so the
                // rest of the change still goes out.
                tracing::warn!(error = %e, table = %change.table.name, "change evaluation failed, retrying per item");
                // Every parameter must appear in each statement, used or not.
                let all: Vec<String> = (1..=params.len()).map(|i| format!("${i}::text")).collect();
                for (k, expr) in exprs.iter().enumerate() {
                    let sql = format!("select {expr} from (select {}) _p", all.join(", "));
                    let one = db.client.query_one(&sql, &refs).await;
                    match one {
                        Ok(row) if k < pending.len() => results.push(row.get(0)),
                        Ok(row) => bools.push(row.get(0)),
                        Err(e) if is_fatal(db, &e) => return Err(e.into()),
                        Err(_) if k < pending.len() => results.push(None),
                        Err(_) => bools.push(false),
                    }
                }
            }
        }
    }
    for ((is_old, i), typed) in pending.iter().zip(results) {
        let c = if *is_old {
            &mut change.old_columns[*i]
        } else {
            &mut change.columns[*i]
        };
        // A value the database could not type is sent as its text.
        c.value = typed.or_else(|| c.text.as_deref().map(crate::jsonb::string));
    }
    let mut bools = bools.into_iter();
    Ok(constant
        .into_iter()
        .map(|c| c.unwrap_or_else(|| bools.next().unwrap_or(false)))
        .collect())
}

/// Stored generated columns are not in pgoutput tuples (before PostgreSQL 18) but upstream's
/// wal2json records carry them: read them from the current row by primary key.
pub async fn fill_generated(db: &mut TenantDb, change: &mut Change) -> Result<(), FanoutError> {
    if change.action == Action::Delete {
        return Ok(());
    }
    let missing: Vec<&crate::catalog::CatalogColumn> = change
        .table
        .columns
        .iter()
        .filter(|c| c.generated && !change.columns.iter().any(|w| w.name == c.name))
        .collect();
    if missing.is_empty() || !change.columns.iter().any(|c| c.is_pkey) {
        return Ok(());
    }
    let (where_clause, params) = rls_gate::pk_condition(change);
    let select: Vec<String> = missing
        .iter()
        .map(|c| format!("{}::text", crate::catalog::quote_ident(&c.name)))
        .collect();
    let sql = format!(
        "select {} from {} where {}",
        select.join(", "),
        change.table.quoted_name(),
        where_clause
    );
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let row = match db.client.query_opt(&sql, &refs).await {
        Ok(Some(row)) => row,
        Ok(None) => return Ok(()),
        Err(e) if is_fatal(db, &e) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "could not read generated columns");
            return Ok(());
        }
    };
    let mut added = Vec::new();
    for (i, c) in missing.iter().enumerate() {
        added.push(crate::change::WalColumn {
            name: c.name.clone(),
            type_oid: c.type_oid,
            cast_type: c.cast_type.clone(),
            full_type: c.full_type.clone(),
            text: row.get(i),
            value: None,
            is_pkey: c.is_pkey,
        });
    }
    change.columns.extend(added);
    Ok(())
}
