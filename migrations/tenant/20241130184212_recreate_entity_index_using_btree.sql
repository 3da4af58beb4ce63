-- 20241130184212 RecreateEntityIndexUsingBtree
-- The entity index becomes a btree. Built without CONCURRENTLY: the run is one transaction,
-- and the table holds only live subscriptions.
do $$
begin
    if not exists (
        select 1
        from pg_class c
        join pg_am am on am.oid = c.relam
        where c.oid = to_regclass('realtime.ix_realtime_subscription_entity')
          and am.amname = 'btree'
    ) then
        drop index if exists realtime.ix_realtime_subscription_entity;
        create index ix_realtime_subscription_entity on realtime.subscription using btree (entity);
    end if;
end $$;
