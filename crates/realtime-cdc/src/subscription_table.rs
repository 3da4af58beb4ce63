//! Keeps upstream's `realtime.subscription` table in step with the live channels, when the
//! tenant database has it: one row per (entry × matching table) while subscribed, emptied when
//! a pipeline starts (ids of an earlier process mean nothing). Delivery never reads it; it is
//! there so operators and tools that inspect it see what upstream would show. Failures are
//! logged and otherwise ignored.

use serde_json::Value;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::params::ChangeParams;

const WIPE_SQL: &str = "do $$
begin
  if exists (select 1 from pg_tables where schemaname = 'realtime' and tablename = 'subscription') then
    delete from realtime.subscription;
  end if;
end $$";

/// Upstream's insert: filters are built server-side from parallel arrays.
const INSERT_SQL: &str = "with sub_tables as (
    select format('%I.%I', pub.schemaname, pub.tablename)::regclass entity
      from pg_publication_tables pub
     where pub.pubname = $1
       and pub.schemaname like (case $2 when '*' then '%' else $2 end) escape ''
       and pub.tablename like (case $3 when '*' then '%' else $3 end) escape '')
insert into realtime.subscription as x
       (subscription_id, entity, filters, claims, action_filter, selected_columns)
select $4::text::uuid, sub_tables.entity,
       (select coalesce(array_agg(row(c, o::realtime.equality_op, v, n)::realtime.user_defined_filter),
                        '{}'::realtime.user_defined_filter[])
          from unnest($6::text[], $7::text[], $8::text[], $9::boolean[]) as f(c, o, v, n)),
       $5::text::jsonb, $10, $11
  from sub_tables
on conflict (subscription_id, entity, filters, action_filter, coalesce(selected_columns, '{}'))
do update set claims = excluded.claims, created_at = now()";

async fn table_exists(client: &Client) -> bool {
    match client
        .query_one(
            "select to_regclass('realtime.subscription') is not null",
            &[],
        )
        .await
    {
        Ok(row) => row.get(0),
        Err(_) => false,
    }
}

/// Empties the table (pipeline cold start).
pub async fn wipe(client: &Client) {
    if let Err(e) = client.batch_execute(WIPE_SQL).await {
        tracing::debug!(error = %e, "could not empty realtime.subscription");
    }
}

/// Records one entry of a channel.
pub async fn insert(
    client: &Client,
    publication: &str,
    id: Uuid,
    claims: &Value,
    params: &ChangeParams,
) {
    if !table_exists(client).await {
        return;
    }
    let columns: Vec<&str> = params.filters.iter().map(|f| f.column.as_str()).collect();
    let ops: Vec<&str> = params.filters.iter().map(|f| f.op.as_str()).collect();
    let values: Vec<&str> = params.filters.iter().map(|f| f.value.as_str()).collect();
    let negates: Vec<bool> = params.filters.iter().map(|f| f.negate).collect();
    let id = id.to_string();
    let claims = claims.to_string();
    let action = params.action.as_str();
    if let Err(e) = client
        .execute(
            INSERT_SQL,
            &[
                &publication,
                &params.schema,
                &params.table,
                &id,
                &claims,
                &columns,
                &ops,
                &values,
                &negates,
                &action,
                &params.select,
            ],
        )
        .await
    {
        tracing::debug!(error = %e, "could not record the subscription in realtime.subscription");
    }
}

/// Removes a channel's entries.
pub async fn delete(client: &Client, ids: &[Uuid]) {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    if let Err(e) = client
        .execute(
            "delete from realtime.subscription where subscription_id = any($1::text[]::uuid[])",
            &[&ids],
        )
        .await
    {
        tracing::debug!(error = %e, "could not remove subscriptions from realtime.subscription");
    }
}
