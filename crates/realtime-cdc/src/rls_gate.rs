//! Row-level-security visibility: can a subscriber's role, with its JWT claims, see the row a
//! change produced? Checked as upstream does, against the table's current state: inside a
//! transaction, `set_config('role', …)` and `set_config('request.jwt.claims', …)`, then
//! `select exists(select 1 from <table> where <pk> = <values>)`.

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

/// Whether the row is visible to `claims`. A database error (e.g. a policy that raises) is
/// returned to the caller, which reports it to these subscribers only.
pub async fn visible(
    db: &mut TenantDb,
    change: &Change,
    claims: &Claims,
) -> Result<bool, tokio_postgres::Error> {
    let (sql, params) = probe_sql(change);
    let set = db
        .prepare("select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)")
        .await?;
    let probe = db.prepare(&sql).await?;
    let tx = db.client.transaction().await?;
    tx.execute(&set, &[&claims.role, &claims.text]).await?;
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let row = tx.query_one(&probe, &refs).await?;
    let seen: bool = row.get(0);
    // Nothing was written; ending with ROLLBACK also discards the role switch.
    tx.rollback().await?;
    Ok(seen)
}
