//! Row-level-security visibility: can a subscriber's role, with its JWT claims, see the row a
//! change produced? Checked as upstream does, against the table's current state: inside a
//! transaction, `set_config('role', …)` and `set_config('request.jwt.claims', …)`, then
//! `select exists(select 1 from <table> where <pk> = <values>)`.

use std::future::Future;
use std::pin::Pin;

use crate::catalog::quote_ident;
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

/// The visibility probe for a change's table and primary-key values, with its parameters.
pub fn probe_sql(change: &Change) -> (String, Vec<Option<String>>) {
    let (condition, params) = pk_condition(change);
    let sql = format!(
        "select exists(select 1 from {} where {condition})",
        change.table.quoted_name()
    );
    (sql, params)
}

/// Whether the row is visible to each of `claims` (one result per entry, in order). A
/// database error (e.g. a policy that raises) is that entry's result only.
///
/// Every check runs in its own transaction (`BEGIN`, `set_config` of role and claims, the
/// probe, `ROLLBACK`), and all of them are pipelined on the connection: one round trip per
/// change, however many distinct claims there are. An error aborts only its own transaction.
pub async fn visible_many(
    db: &mut TenantDb,
    change: &Change,
    claims: &[&Claims],
) -> Result<Vec<Result<bool, tokio_postgres::Error>>, tokio_postgres::Error> {
    let (sql, params) = probe_sql(change);
    let set = db
        .prepare("select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)")
        .await?;
    let probe = db.prepare(&sql).await?;
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let client = &db.client;
    type Step<'a> =
        Pin<Box<dyn Future<Output = Option<Result<bool, tokio_postgres::Error>>> + Send + 'a>>;
    let mut steps: Vec<Step<'_>> = Vec::with_capacity(claims.len() * 4);
    for c in claims {
        let (set, probe, refs) = (&set, &probe, &refs);
        steps.push(Box::pin(async move {
            client.batch_execute("BEGIN").await.err().map(Err)
        }));
        steps.push(Box::pin(async move {
            client
                .execute(set, &[&c.role, &c.text])
                .await
                .err()
                .map(Err)
        }));
        steps.push(Box::pin(async move {
            Some(
                client
                    .query_one(probe, refs)
                    .await
                    .map(|row| row.get::<_, bool>(0)),
            )
        }));
        // Nothing was written; ROLLBACK also discards the role switch.
        steps.push(Box::pin(async move {
            client.batch_execute("ROLLBACK").await.err().map(Err)
        }));
    }
    let outcomes = futures_util::future::join_all(steps).await;
    let mut results = Vec::with_capacity(claims.len());
    let mut outcomes = outcomes.into_iter();
    for _ in claims {
        let begin = outcomes.next().flatten();
        let set = outcomes.next().flatten();
        let probe = outcomes.next().flatten();
        let rollback = outcomes.next().flatten();
        // The first failure explains the others (an aborted transaction fails what follows).
        let result = match (begin, set, probe) {
            (Some(Err(e)), _, _) | (None, Some(Err(e)), _) => Err(e),
            (None, None, Some(r)) => r,
            _ => Ok(false),
        };
        if let Some(Err(e)) = rollback {
            return Err(e);
        }
        results.push(result);
    }
    Ok(results)
}
