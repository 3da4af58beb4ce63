//! One change → the events each channel receives, following upstream's `apply_rls`: per role
//! (in role-name order) column privileges and the 400/401 rows, filters, the RLS gate once per
//! distinct claims, then one payload per selected-columns group, built once and shared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::change::{self, Change};
use crate::db::TenantDb;
use crate::error::postgrex_message;
use crate::params::Filter;
use crate::payload::{self, RowError};
use crate::router::{Candidate, Subscriber};
use crate::{filter, rls_gate, Action, CdcEvent};

/// One event for one channel.
pub struct Delivery {
    /// The channel.
    pub subscriber: Arc<Subscriber>,
    /// What to send.
    pub event: CdcEvent,
}

/// Failures that stop processing (the connection is gone); the pipeline reconnects and
/// replays from the last confirmed position.
#[derive(Debug, thiserror::Error)]
#[error("tenant database: {0}")]
pub struct FanoutError(#[from] pub tokio_postgres::Error);

/// Only a lost connection stops processing; an error of one statement concerns one change.
fn is_fatal(db: &TenantDb, e: &tokio_postgres::Error) -> bool {
    e.is_closed() || db.is_closed()
}

/// Casts the values pgoutput text could not be typed natively and evaluates every distinct
/// filter, in one statement. Returns the filter results in `filters` order.
async fn type_and_filter(
    db: &mut TenantDb,
    change: &mut Change,
    filters: &[&Filter],
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
    for f in filters {
        match source.iter().find(|c| c.name == f.column) {
            // A column absent from the change (unchanged TOAST, not in the identity) fails.
            None => constant.push(Some(false)),
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
async fn fill_generated(db: &mut TenantDb, change: &mut Change) -> Result<(), FanoutError> {
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

/// Computes the events for `candidates` (all on the change's table, action already matched).
pub async fn fan_out(
    db: &mut TenantDb,
    mut change: Change,
    candidates: Vec<Candidate>,
) -> Result<Vec<Delivery>, FanoutError> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Distinct filters across all bindings, evaluated once.
    let mut filter_index: HashMap<&Filter, usize> = HashMap::new();
    let mut distinct: Vec<&Filter> = Vec::new();
    for c in &candidates {
        for &b in &c.bindings {
            for f in &c.subscriber.bindings[b].params.filters {
                filter_index.entry(f).or_insert_with(|| {
                    distinct.push(f);
                    distinct.len() - 1
                });
            }
        }
    }
    fill_generated(db, &mut change).await?;
    let filter_results = type_and_filter(db, &mut change, &distinct).await?;
    let passes = |sub: &Subscriber, b: usize| {
        sub.bindings[b]
            .params
            .filters
            .iter()
            .all(|f| filter_index.get(f).is_some_and(|&i| filter_results[i]))
    };

    // Group channels by role, in role-name order as upstream.
    let mut by_role: BTreeMap<String, Vec<(&Candidate, Arc<crate::router::Claims>)>> =
        BTreeMap::new();
    for c in &candidates {
        let claims = c.subscriber.claims();
        by_role
            .entry(claims.role.clone())
            .or_default()
            .push((c, claims));
    }

    let mut out = Vec::new();
    let oid = change.table.oid;
    let has_pk = change.columns.iter().any(|c| c.is_pkey);
    for (role, members) in by_role {
        let selectable = match db.catalog.selectable(&db.client, oid, &role).await {
            Ok(s) => s,
            Err(e) if is_fatal(db, &e) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, role, "column privileges unavailable, skipping role");
                continue;
            }
        };
        // Select groups: `None` first, then by the sorted column list joined with commas.
        let group_key = |sub: &Subscriber, b: usize| -> Option<Vec<String>> {
            sub.bindings[b].params.select.as_ref().map(|s| {
                let mut s = s.clone();
                s.sort();
                s
            })
        };
        let mut groups: Vec<Option<Vec<String>>> = Vec::new();
        for (c, _) in &members {
            for &b in &c.bindings {
                let k = group_key(&c.subscriber, b);
                if !groups.contains(&k) {
                    groups.push(k);
                }
            }
        }
        groups.sort_by_key(|g| g.as_ref().map(|s| s.join(",")).unwrap_or_default());

        let row_error = if change.action != Action::Delete && !has_pk {
            Some(RowError::NoPrimaryKey)
        } else if change.action != Action::Delete
            && change
                .columns
                .iter()
                .any(|c| c.is_pkey && !selectable.contains(&c.name))
        {
            Some(RowError::Unauthorized)
        } else {
            None
        };

        // Visibility per binding: filters, then RLS once per distinct claims.
        let mut visible: HashSet<(u64, usize)> = HashSet::new();
        if row_error.is_none() {
            let needs_rls = change.table.rls_enabled && change.action != Action::Delete;
            let mut passing: Vec<(&Candidate, &crate::router::Claims, Vec<usize>)> = Vec::new();
            for (c, claims) in &members {
                let p: Vec<usize> = c
                    .bindings
                    .iter()
                    .copied()
                    .filter(|&b| passes(&c.subscriber, b))
                    .collect();
                if !p.is_empty() {
                    passing.push((c, claims, p));
                }
            }
            let mut verdicts: HashMap<&str, bool> = HashMap::new();
            if needs_rls && !passing.is_empty() {
                let mut distinct: Vec<&crate::router::Claims> = Vec::new();
                for (_, claims, _) in &passing {
                    if !distinct.iter().any(|d| d.text == claims.text) {
                        distinct.push(claims);
                    }
                }
                let results = match rls_gate::visible_many(db, &change, &distinct).await {
                    Ok(r) => r,
                    Err(e) if is_fatal(db, &e) => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(error = %e, role, "RLS checks unavailable, change withheld");
                        distinct.iter().map(|_| Ok(false)).collect()
                    }
                };
                for (claims, result) in distinct.iter().zip(results) {
                    let v = match result {
                        Ok(v) => v,
                        Err(e) if is_fatal(db, &e) => return Err(e.into()),
                        Err(e) => {
                            let text = format!(
                                "Unable to check row level security for a change on {}.{}: {}",
                                change.table.schema,
                                change.table.name,
                                postgrex_message(&e)
                            );
                            tracing::warn!(error = %text, role, "RLS check failed for a subscriber");
                            for (other, oc) in &members {
                                if oc.text == claims.text {
                                    out.push(Delivery {
                                        subscriber: other.subscriber.clone(),
                                        event: CdcEvent::System(crate::error::system_message(
                                            &other.subscriber.topic,
                                            "error",
                                            &text,
                                        )),
                                    });
                                }
                            }
                            false
                        }
                    };
                    verdicts.insert(claims.text.as_str(), v);
                }
            }
            for (c, claims, p) in passing {
                let ok = !needs_rls || verdicts.get(claims.text.as_str()).copied().unwrap_or(false);
                if ok {
                    for b in p {
                        visible.insert((c.subscriber.key, b));
                    }
                }
            }
        }

        for group in &groups {
            let mut data: Option<Arc<RawValue>> = None;
            for (c, _) in &members {
                // Reverse join order, as upstream's dispatcher builds the list by prepending.
                let ids: Vec<u32> = c
                    .bindings
                    .iter()
                    .rev()
                    .copied()
                    .filter(|&b| group_key(&c.subscriber, b) == *group)
                    .filter(|&b| row_error.is_some() || visible.contains(&(c.subscriber.key, b)))
                    .map(|b| c.subscriber.bindings[b].id)
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                if data.is_none() {
                    let text = match row_error {
                        Some(e) => payload::error_row(&change, e),
                        None => payload::row(&change, &selectable, group.as_deref()),
                    };
                    match RawValue::from_string(text) {
                        Ok(raw) => data = Some(Arc::from(raw)),
                        Err(e) => {
                            tracing::error!(error = %e, "built an invalid change payload");
                            break;
                        }
                    }
                }
                if let Some(d) = &data {
                    out.push(Delivery {
                        subscriber: c.subscriber.clone(),
                        event: CdcEvent::Change {
                            ids,
                            data: d.clone(),
                        },
                    });
                }
            }
        }
    }
    Ok(out)
}
