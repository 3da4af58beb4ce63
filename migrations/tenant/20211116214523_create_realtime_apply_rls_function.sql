-- 20211116214523 CreateRealtimeApplyRlsFunction
-- The types apply_rls works with: the change action and the per-change result row (its
-- `users` attribute is renamed to `subscription_ids` by 20211210212804).
do $$
begin
    if not exists (
        select 1 from pg_type
        where typname = 'action' and typnamespace = 'realtime'::regnamespace
    ) then
        create type realtime.action as enum ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'ERROR');
    end if;

    if not exists (
        select 1 from pg_type
        where typname = 'wal_rls' and typnamespace = 'realtime'::regnamespace
    ) then
        create type realtime.wal_rls as (
            wal jsonb,
            is_rls_enabled boolean,
            users uuid[],
            errors text[]
        );
    end if;
end $$;
