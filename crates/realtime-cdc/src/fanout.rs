//! One change → the events each channel receives, following upstream's `apply_rls`: per role
//! (in role-name order) column privileges and the 400/401 rows, filters, the RLS gate once per
//! distinct claims, then one payload per selected-columns group, built once and shared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::change::Change;
use crate::db::TenantDb;
use crate::error::exception_text;
use crate::evaluate::{fill_generated, is_fatal, type_and_filter, FanoutError};
use crate::params::Filter;
use crate::payload::{self, RowError};
use crate::rls_policy::Rule;
use crate::router::{Candidate, Claims, Subscriber};
use crate::{rls_gate, Action, CdcEvent};

/// One event for one channel.
pub struct Delivery {
    /// The channel.
    pub subscriber: Arc<Subscriber>,
    /// What to send.
    pub event: CdcEvent,
}

/// Select groups: `None` first, then by the sorted column list joined with commas.
fn group_key(sub: &Subscriber, b: usize) -> Option<Vec<String>> {
    sub.bindings[b].params.select.as_ref().map(|s| {
        let mut s = s.clone();
        s.sort();
        s
    })
}

/// One role's share of a change (upstream processes roles in role-name order).
struct RoleShare {
    role: String,
    selectable: Arc<HashSet<String>>,
    row_error: Option<RowError>,
    /// Candidate indexes with their claims.
    members: Vec<(usize, Arc<Claims>)>,
    /// Bindings that pass the filters, per candidate index.
    passing: Vec<(usize, Vec<usize>)>,
    groups: Vec<Option<Vec<String>>>,
}

/// A change with typed values, filter results and per-role shares, waiting for RLS verdicts.
pub struct Prepared {
    change: Change,
    candidates: Vec<Candidate>,
    /// Each candidate's claims, as read once for this change.
    claims: Vec<Arc<Claims>>,
    roles: Vec<RoleShare>,
}

impl Prepared {
    fn needs_rls(&self) -> bool {
        self.change.table.rls_enabled && self.change.action != Action::Delete
    }

    /// Distinct claims whose visibility decides this change.
    fn rls_claims(&self) -> Vec<Arc<Claims>> {
        let mut out: Vec<Arc<Claims>> = Vec::new();
        if !self.needs_rls() {
            return out;
        }
        let mut seen: HashSet<&str> = HashSet::new();
        for r in self.roles.iter().filter(|r| r.row_error.is_none()) {
            for (c, _) in &r.passing {
                let claims = &self.claims[*c];
                if seen.insert(&*claims.text) {
                    out.push(claims.clone());
                }
            }
        }
        out
    }
}

/// The canonical text of filter `k` of `binding` when it is a plain `eq` the text comparison
/// decides exactly for this change's table and column type ([`crate::eq_index`]).
fn native_eq(
    change: &Change,
    binding: &crate::router::Binding,
    k: usize,
    f: &Filter,
) -> Option<String> {
    if f.op != crate::params::FilterOp::Eq || f.negate {
        return None;
    }
    let column = change.table.column(&f.column)?;
    if !crate::eq_index::indexable(column.type_oid) {
        return None;
    }
    binding
        .eq_values
        .iter()
        .find(|v| v.filter == k && v.table == change.table.oid && v.type_oid == column.type_oid)
        .map(|v| v.text.clone())
}

/// Types the change, evaluates filters and computes privileges and 400/401 per role.
pub async fn prepare(
    db: &mut TenantDb,
    mut change: Change,
    candidates: Vec<Candidate>,
) -> Result<Prepared, FanoutError> {
    // Distinct filters across all bindings, evaluated once.
    // An `eq` filter whose canonical value the subscription computed for this table and the
    // column's current type is decided by comparing texts, without SQL.
    let mut filter_index: HashMap<Filter, usize> = HashMap::new();
    let mut distinct: Vec<Filter> = Vec::new();
    let mut canonical: Vec<Option<String>> = Vec::new();
    for c in &candidates {
        for &b in &c.bindings {
            let binding = &c.subscriber.bindings[b];
            for (k, f) in binding.params.filters.iter().enumerate() {
                let i = match filter_index.get(f) {
                    Some(&i) => i,
                    None => {
                        filter_index.insert(f.clone(), distinct.len());
                        distinct.push(f.clone());
                        canonical.push(None);
                        distinct.len() - 1
                    }
                };
                if canonical[i].is_none() {
                    canonical[i] = native_eq(&change, binding, k, f);
                }
            }
        }
    }
    fill_generated(db, &mut change).await?;
    let refs: Vec<(&Filter, Option<&str>)> = distinct
        .iter()
        .zip(&canonical)
        .map(|(f, c)| (f, c.as_deref()))
        .collect();
    let filter_results = type_and_filter(db, &mut change, &refs).await?;
    let passes = |sub: &Subscriber, b: usize| {
        sub.bindings[b]
            .params
            .filters
            .iter()
            .all(|f| filter_index.get(f).is_some_and(|&i| filter_results[i]))
    };

    let claims: Vec<Arc<Claims>> = candidates.iter().map(|c| c.subscriber.claims()).collect();
    let mut by_role: BTreeMap<&str, Vec<(usize, Arc<Claims>)>> = BTreeMap::new();
    for (i, c) in claims.iter().enumerate() {
        by_role
            .entry(c.role.as_str())
            .or_default()
            .push((i, c.clone()));
    }
    let oid = change.table.oid;
    let has_pk = change.columns.iter().any(|c| c.is_pkey);
    let mut roles = Vec::with_capacity(by_role.len());
    for (role, members) in by_role {
        let role = role.to_string();
        let selectable = match db.catalog.selectable(&db.client, oid, &role).await {
            Ok(s) => s,
            Err(e) if is_fatal(db, &e) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, role, "column privileges unavailable, skipping role");
                continue;
            }
        };
        let mut groups: Vec<Option<Vec<String>>> = Vec::new();
        for (c, _) in &members {
            for &b in &candidates[*c].bindings {
                let k = group_key(&candidates[*c].subscriber, b);
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
        let mut passing = Vec::new();
        if row_error.is_none() {
            for (c, _) in &members {
                let cand = &candidates[*c];
                let p: Vec<usize> = cand
                    .bindings
                    .iter()
                    .copied()
                    .filter(|&b| passes(&cand.subscriber, b))
                    .collect();
                if !p.is_empty() {
                    passing.push((*c, p));
                }
            }
        }
        roles.push(RoleShare {
            role,
            selectable,
            row_error,
            members,
            passing,
            groups,
        });
    }
    Ok(Prepared {
        change,
        candidates,
        claims,
        roles,
    })
}

/// The events of a prepared change, given the RLS verdict per claims text (`Err` carries the
/// text reported to those subscribers).
fn finish(p: Prepared, verdicts: &HashMap<Arc<str>, Result<bool, String>>) -> Vec<Delivery> {
    let mut out = Vec::new();
    let needs_rls = p.needs_rls();
    for share in &p.roles {
        let mut visible: HashSet<(usize, usize)> = HashSet::new();
        for (c, bindings) in &share.passing {
            let ok = if !needs_rls {
                true
            } else {
                match verdicts.get(&p.claims[*c].text) {
                    Some(Ok(v)) => *v,
                    Some(Err(text)) => {
                        let sub = &p.candidates[*c].subscriber;
                        out.push(Delivery {
                            subscriber: sub.clone(),
                            event: CdcEvent::System(crate::error::system_message(
                                &sub.topic, "error", text,
                            )),
                        });
                        false
                    }
                    None => false,
                }
            };
            if ok {
                for &b in bindings {
                    visible.insert((*c, b));
                }
            }
        }
        for group in &share.groups {
            let mut data: Option<Arc<RawValue>> = None;
            for (c, _) in &share.members {
                let cand = &p.candidates[*c];
                // Reverse join order, as upstream's dispatcher builds the list by prepending.
                let ids: Vec<u32> = cand
                    .bindings
                    .iter()
                    .rev()
                    .copied()
                    // The cheap test first: most candidates of a selective policy see nothing.
                    .filter(|&b| share.row_error.is_some() || visible.contains(&(*c, b)))
                    .filter(|&b| group_key(&cand.subscriber, b) == *group)
                    .map(|b| cand.subscriber.bindings[b].id)
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                if data.is_none() {
                    let text = match share.row_error {
                        Some(e) => payload::error_row(&p.change, e),
                        None => payload::row(&p.change, &share.selectable, group.as_deref()),
                    };
                    match RawValue::from_string(text) {
                        Ok(raw) => data = Some(Arc::from(raw)),
                        Err(e) => {
                            tracing::error!(error = %e, role = %share.role, "built an invalid change payload");
                            break;
                        }
                    }
                }
                if let Some(d) = &data {
                    out.push(Delivery {
                        subscriber: cand.subscriber.clone(),
                        event: CdcEvent::Change {
                            ids,
                            data: d.clone(),
                        },
                    });
                }
            }
        }
    }
    out
}

/// Computes the events for one change (all candidates on its table, action matched).
pub async fn fan_out(
    db: &mut TenantDb,
    change: Change,
    candidates: Vec<Candidate>,
) -> Result<Vec<Delivery>, FanoutError> {
    fan_out_batch(db, vec![(change, candidates)]).await
}

/// Claims with the indexes of the prepared changes they must see.
type ClaimsRows = (Arc<Claims>, Vec<usize>);

/// One table's claims to judge, with each claims text's position among them.
type TableNeeds = (Vec<ClaimsRows>, HashMap<Arc<str>, usize>);

/// Computes the events for consecutive changes (one or more transactions), in order. RLS is
/// judged once per table for the whole batch: one statement covering every distinct claims
/// set, or none when the catalog proves the answer (see [`crate::rls_policy`]).
pub async fn fan_out_batch(
    db: &mut TenantDb,
    items: Vec<(Change, Vec<Candidate>)>,
) -> Result<Vec<Delivery>, FanoutError> {
    let mut prepared = Vec::with_capacity(items.len());
    for (change, candidates) in items {
        if !candidates.is_empty() {
            prepared.push(prepare(db, change, candidates).await?);
        }
    }
    let mut verdicts: Vec<HashMap<Arc<str>, Result<bool, String>>> =
        prepared.iter().map(|_| HashMap::new()).collect();
    // table → claims → rows (prepared indexes) to judge.
    let mut needs: BTreeMap<u32, TableNeeds> = BTreeMap::new();
    for (i, p) in prepared.iter().enumerate() {
        for claims in p.rls_claims() {
            let (per_table, index) = needs.entry(p.change.table.oid).or_default();
            match index.get(&claims.text) {
                Some(&k) => per_table[k].1.push(i),
                None => {
                    index.insert(claims.text.clone(), per_table.len());
                    per_table.push((claims, vec![i]));
                }
            }
        }
    }
    for (oid, (checks, _)) in needs {
        judge_table(db, oid, &prepared, &checks, &mut verdicts).await?;
    }
    let mut out = Vec::new();
    for (p, v) in prepared.into_iter().zip(verdicts) {
        out.extend(finish(p, &v));
    }
    Ok(out)
}

/// What one gate entry decides: for which claims, over which rows (prepared indexes).
struct EntryPlan {
    /// The claims this entry answers for, each with the rows it needs.
    claims: Vec<(Arc<Claims>, Vec<usize>)>,
    /// Every row the entry judges (prepared indexes, sorted).
    rows: Vec<usize>,
}

/// Fills `verdicts` for one table's rows: rules from the catalog first, then one gate
/// statement for the claims whose answer depends on the row or the claims.
async fn judge_table(
    db: &mut TenantDb,
    oid: u32,
    prepared: &[Prepared],
    checks: &[ClaimsRows],
    verdicts: &mut [HashMap<Arc<str>, Result<bool, String>>],
) -> Result<(), FanoutError> {
    let Some(first) = checks.iter().find_map(|(_, rows)| rows.first()) else {
        return Ok(());
    };
    let table = prepared[*first].change.table.clone();
    // The table's rows in batch order; each row's position among them.
    let mut table_rows: Vec<usize> = checks.iter().flat_map(|(_, r)| r.iter().copied()).collect();
    table_rows.sort_unstable();
    table_rows.dedup();
    let mut exprs: Vec<rls_gate::GateExpr> = Vec::new();
    let mut entries: Vec<rls_gate::GateEntry> = Vec::new();
    let mut plans: Vec<EntryPlan> = Vec::new();
    // (role, expression) → entry, for expressions that depend on the row alone.
    let mut shared: HashMap<(String, usize), usize> = HashMap::new();
    for (claims, rows) in checks {
        let rule = match db.rules.rule(&db.client, oid, &claims.role).await {
            Ok(r) => r,
            Err(e) if is_fatal(db, &e) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, role = %claims.role, table = %table.name, "RLS rules unavailable, changes withheld");
                for &i in rows {
                    verdicts[i].insert(claims.text.clone(), Ok(false));
                }
                continue;
            }
        };
        let (expr, hoist, per_claims) = match rule.as_ref() {
            Rule::All(_) | Rule::None => {
                let seen = matches!(rule.as_ref(), Rule::All(_));
                for &i in rows {
                    verdicts[i].insert(claims.text.clone(), Ok(seen));
                }
                continue;
            }
            Rule::Check {
                expr,
                per_claims,
                hoist,
            } => (expr, hoist, *per_claims),
        };
        let e = match exprs
            .iter()
            .position(|x| x.expr == *expr && x.hoist == *hoist)
        {
            Some(e) => e,
            None => {
                exprs.push(rls_gate::GateExpr {
                    expr: expr.clone(),
                    hoist: hoist.clone(),
                });
                exprs.len() - 1
            }
        };
        let key = (claims.role.clone(), e);
        if let Some(&k) = shared.get(&key).filter(|_| !per_claims) {
            plans[k].claims.push((claims.clone(), rows.clone()));
            plans[k].rows.extend(rows.iter().copied());
            continue;
        }
        if !per_claims {
            shared.insert(key, entries.len());
        }
        entries.push(rls_gate::GateEntry {
            role: claims.role.clone(),
            claims: claims.text.to_string(),
            expr: e,
            rows: Vec::new(),
        });
        plans.push(EntryPlan {
            claims: vec![(claims.clone(), rows.clone())],
            rows: rows.clone(),
        });
    }
    if entries.is_empty() {
        return Ok(());
    }
    let position: HashMap<usize, usize> = table_rows
        .iter()
        .enumerate()
        .map(|(pos, &i)| (i, pos))
        .collect();
    for (entry, plan) in entries.iter_mut().zip(plans.iter_mut()) {
        plan.rows.sort_unstable();
        plan.rows.dedup();
        if plan.rows.len() < table_rows.len() {
            entry.rows = plan
                .rows
                .iter()
                .filter_map(|i| position.get(i).copied())
                .collect();
        }
    }
    let rows: Vec<&Change> = table_rows.iter().map(|&i| &prepared[i].change).collect();
    let results = match rls_gate::judge(db, &table, &exprs, &rows, &entries).await {
        Ok(r) => r,
        Err(e) if is_fatal(db, &e) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, table = %table.name, "RLS checks unavailable, changes withheld");
            entries
                .iter()
                .map(|_| rls_gate::EntryVerdict {
                    seen: Vec::new(),
                    error: None,
                })
                .collect()
        }
    };
    for ((entry, plan), result) in entries.iter().zip(&plans).zip(results) {
        // Where row `i` stands among the entry's verdicts: every row of the table in batch
        // order, or the entry's own rows (sorted, as `entry.rows` lists them).
        let seen_at = |i: usize| {
            let k = if entry.rows.is_empty() {
                position.get(&i).copied()
            } else {
                plan.rows.binary_search(&i).ok()
            };
            k.and_then(|k| result.seen.get(k)).copied().unwrap_or(false)
        };
        let text = result.error.map(|err| {
            format!(
                "Unable to check row level security for a change on {}.{}: {}",
                table.schema,
                table.name,
                exception_text("ERROR", &err.code, &err.message)
            )
        });
        for (claims, rows) in &plan.claims {
            let mut report = text.clone();
            if let Some(text) = &report {
                tracing::warn!(error = %text, role = %claims.role, "RLS check failed for a subscriber");
            }
            for &i in rows {
                let seen = seen_at(i);
                // The error is told once per batch, with the first row it withheld.
                let v = match (seen, report.take_if(|_| !seen)) {
                    (false, Some(text)) => Err(text),
                    _ => Ok(seen),
                };
                verdicts[i].insert(claims.text.clone(), v);
            }
        }
    }
    Ok(())
}
