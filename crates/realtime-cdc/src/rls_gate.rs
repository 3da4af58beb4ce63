//! Row-level-security visibility: can a subscriber's role, with its JWT claims, see the row a
//! change produced? Checked as upstream does, against the table's current state: inside a
//! transaction, `set_config('role', …)` and `set_config('request.jwt.claims', …)`, then
//! `select exists(select 1 from <table> where <pk> = <values>)`.

use std::future::Future;
use std::pin::Pin;

use crate::catalog::{quote_ident, TableInfo};
use crate::change::Change;
use crate::db::TenantDb;
use crate::router::Claims;

/// `"pk1" = $1::text::T1 and …` over the change's new primary-key values, with the values.
pub fn pk_condition(change: &Change) -> (String, Vec<Option<String>>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    for c in change.columns.iter().filter(|c| c.is_pkey) {
        params.push(c.text.clone());
        conditions.push(format!(
            "{} = ${}::text::{}",
            quote_ident(&c.name),
            params.len(),
            c.cast_type
        ));
    }
    if conditions.is_empty() {
        return ("false".to_string(), params);
    }
    (conditions.join(" and "), params)
}

/// `select coalesce(array_agg(exists(<row visible>) order by i), '{}')` over the primary-key
/// values passed as one text array per key column, for a batch of rows of one table.
pub fn batch_probe_sql(table: &TableInfo) -> Option<String> {
    let pk: Vec<&crate::catalog::CatalogColumn> =
        table.columns.iter().filter(|c| c.is_pkey).collect();
    if pk.is_empty() {
        return None;
    }
    let conditions: Vec<String> = pk
        .iter()
        .enumerate()
        .map(|(i, c)| format!("t.{} = u.k{}::{}", quote_ident(&c.name), i + 1, c.cast_type))
        .collect();
    let arrays: Vec<String> = (1..=pk.len()).map(|i| format!("${i}::text[]")).collect();
    let names: Vec<String> = (1..=pk.len()).map(|i| format!("k{i}")).collect();
    Some(format!(
        "select coalesce(array_agg(exists(select 1 from {} t where {}) order by u.i), '{{}}'::boolean[]) \
         from unnest({}) with ordinality as u({}, i)",
        table.quoted_name(),
        conditions.join(" and "),
        arrays.join(", "),
        names.join(", ")
    ))
}

/// Checks, for each `(claims, rows)` entry, which rows (all of one table) the claims can see;
/// one result per entry, in order. A database error (e.g. a policy that raises) is that
/// entry's result only.
///
/// Every entry runs in its own transaction (`BEGIN`, `set_config` of role and claims, the
/// probe, `ROLLBACK`), and all of them are pipelined on the connection: one round trip
/// however many claims and rows there are. An error aborts only its own transaction.
pub async fn visible_rows(
    db: &mut TenantDb,
    checks: &[(&Claims, Vec<&Change>)],
) -> Result<Vec<Result<Vec<bool>, tokio_postgres::Error>>, tokio_postgres::Error> {
    let Some(first) = checks.iter().find_map(|(_, rows)| rows.first()) else {
        return Ok(checks.iter().map(|_| Ok(Vec::new())).collect());
    };
    let table = first.table.clone();
    let Some(sql) = batch_probe_sql(&table) else {
        return Ok(checks
            .iter()
            .map(|(_, rows)| Ok(vec![false; rows.len()]))
            .collect());
    };
    let pk: Vec<String> = table
        .columns
        .iter()
        .filter(|c| c.is_pkey)
        .map(|c| c.name.clone())
        .collect();
    let set = db
        .prepare("select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)")
        .await?;
    let probe = db.prepare(&sql).await?;
    // Per entry: one text array per key column.
    let params: Vec<Vec<Vec<Option<String>>>> = checks
        .iter()
        .map(|(_, rows)| {
            pk.iter()
                .map(|name| {
                    rows.iter()
                        .map(|ch| {
                            ch.columns
                                .iter()
                                .find(|c| &c.name == name)
                                .and_then(|c| c.text.clone())
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let client = &db.client;
    type Step<'a> =
        Pin<Box<dyn Future<Output = Option<Result<Vec<bool>, tokio_postgres::Error>>> + Send + 'a>>;
    let mut steps: Vec<Step<'_>> = Vec::with_capacity(checks.len() * 4);
    for ((claims, _), arrays) in checks.iter().zip(&params) {
        let (set, probe) = (&set, &probe);
        steps.push(Box::pin(async move {
            client.batch_execute("BEGIN").await.err().map(Err)
        }));
        steps.push(Box::pin(async move {
            client
                .execute(set, &[&claims.role, &claims.text])
                .await
                .err()
                .map(Err)
        }));
        steps.push(Box::pin(async move {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = arrays
                .iter()
                .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            Some(
                client
                    .query_one(probe, &refs)
                    .await
                    .map(|row| row.get::<_, Vec<bool>>(0)),
            )
        }));
        // Nothing was written; ROLLBACK also discards the role switch.
        steps.push(Box::pin(async move {
            client.batch_execute("ROLLBACK").await.err().map(Err)
        }));
    }
    let outcomes = futures_util::future::join_all(steps).await;
    let mut results = Vec::with_capacity(checks.len());
    let mut outcomes = outcomes.into_iter();
    for _ in checks {
        let begin = outcomes.next().flatten();
        let set = outcomes.next().flatten();
        let probe = outcomes.next().flatten();
        let rollback = outcomes.next().flatten();
        // The first failure explains the others (an aborted transaction fails what follows).
        let result = match (begin, set, probe) {
            (Some(Err(e)), _, _) | (None, Some(Err(e)), _) => Err(e),
            (None, None, Some(r)) => r,
            _ => Ok(Vec::new()),
        };
        if let Some(Err(e)) = rollback {
            return Err(e);
        }
        results.push(result);
    }
    Ok(results)
}
