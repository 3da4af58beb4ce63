//! Subscribing a channel: resolve each entry to published tables and validate it against the
//! tenant's catalog the way `realtime.subscription`'s insert and trigger do, so the errors a
//! client sees are upstream's; and canonicalise `eq` filter values for the router's index.

use crate::catalog::Catalog;
use crate::db::TenantDb;
use crate::eq_index::{self, EqValue};
use crate::error::{exception_text, postgrex_message, SubscribeError};
use crate::params::{ChangeParams, FilterOp};
use crate::router::Claims;

const TABLES_SQL: &str = "select format('%I.%I', schemaname, tablename)::regclass::oid
  from pg_publication_tables
 where pubname = $1
   and schemaname like (case $2 when '*' then '%' else $2 end) escape ''
   and tablename like (case $3 when '*' then '%' else $3 end) escape ''";

/// What upstream pushes (an inspected tuple) when the tenant database cannot be reached.
pub const TIMEOUTS: &str = "{:error, \"Too many database timeouts\"}";

/// An entry checked against the tenant database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The published tables it covers.
    pub tables: Vec<u32>,
    /// Canonical texts of its indexable `eq` filter values, per table.
    pub eq_values: Vec<EqValue>,
}

/// Resolves and validates one entry; returns the relation OIDs it covers and the canonical
/// texts the router indexes it by.
pub async fn resolve(
    db: &mut TenantDb,
    publication: &str,
    params: &ChangeParams,
    claims: Option<&Claims>,
) -> Result<Resolved, SubscribeError> {
    let rejected = |exception: String| SubscribeError::Rejected {
        params: params.to_log(),
        exception,
    };
    let unavailable = |e: tokio_postgres::Error| {
        if e.as_db_error().is_some() {
            rejected(postgrex_message(&e))
        } else {
            tracing::warn!(error = %e, "subscription check failed on the tenant connection");
            SubscribeError::Unavailable(TIMEOUTS.to_string())
        }
    };
    let rows = db
        .client
        .query(TABLES_SQL, &[&publication, &params.schema, &params.table])
        .await
        .map_err(unavailable)?;
    let tables: Vec<u32> = rows.iter().map(|r| r.get(0)).collect();
    if tables.is_empty() {
        return Err(SubscribeError::NotPublished(params.to_log()));
    }
    let Some(claims) = claims else {
        return Err(rejected(exception_text(
            "ERROR",
            "23502",
            "null value in column \"claims_role\" of relation \"subscription\" violates not-null constraint",
        )));
    };
    // Validation reads the current catalog, never a cached shape.
    let mut catalog = Catalog::default();
    let mut eq_values = Vec::new();
    for &oid in &tables {
        let Some(table) = catalog.table(&db.client, oid).await.map_err(unavailable)? else {
            continue;
        };
        let readable = catalog
            .selectable(&db.client, oid, &claims.role)
            .await
            .map_err(unavailable)?;
        crate::filter::validate(
            &db.client,
            &table,
            &readable,
            &params.filters,
            params.select.as_deref(),
        )
        .await
        .map_err(|e| {
            if e.starts_with("ERROR") {
                rejected(e)
            } else {
                SubscribeError::Unavailable(e)
            }
        })?;
        for (i, f) in params.filters.iter().enumerate() {
            if f.op != FilterOp::Eq || f.negate {
                continue;
            }
            let Some(column) = table.column(&f.column) else {
                continue;
            };
            if !eq_index::indexable(column.type_oid) {
                continue;
            }
            match eq_index::canonical(&db.client, &column.cast_type, &f.value).await {
                Ok(text) => eq_values.push(EqValue {
                    table: oid,
                    filter: i,
                    type_oid: column.type_oid,
                    text,
                }),
                // The value passed validation; should the cast still fail, the entry is
                // simply not indexed and every change of the table is evaluated for it.
                Err(e) if e.as_db_error().is_some() => {
                    tracing::debug!(error = %e, column = %f.column, "eq filter value left unindexed");
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }
    Ok(Resolved { tables, eq_values })
}
