-- 20260707120000 RestrictRealtimeSchema
-- supabase_realtime_admin owns every table, type and function in the schema; nobody but the
-- owner touches realtime.schema_migrations. Where supautils guards the realtime tables,
-- postgres keeps USAGE (grantable) instead of membership in supabase_realtime_admin.
do $$
begin
    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'supabase_realtime_admin') then
        -- Upstream's migration sets only these three attributes; its fresh-database script
        -- sets the rest below, which a database created here gets too.
        create role supabase_realtime_admin with nosuperuser noinherit nocreaterole nocreatedb
            nologin noreplication nobypassrls;
        alter role supabase_realtime_admin set search_path to 'public', 'extensions', 'realtime';
        grant anon, authenticated, service_role to supabase_realtime_admin;
        if current_setting('server_version_num')::int >= 150000 then
            execute 'grant set on parameter log_min_messages to supabase_realtime_admin';
        end if;
    end if;
exception
    -- created by another database of the cluster at this moment
    when duplicate_object or unique_violation then null;
end $$;

alter table realtime.messages owner to supabase_realtime_admin;
alter table realtime.subscription owner to supabase_realtime_admin;
alter type realtime.action owner to supabase_realtime_admin;
alter type realtime.equality_op owner to supabase_realtime_admin;
alter type realtime.user_defined_filter owner to supabase_realtime_admin;
alter type realtime.wal_column owner to supabase_realtime_admin;
alter type realtime.wal_rls owner to supabase_realtime_admin;

-- Upstream names each function; at this point of a run the functions may not be installed
-- yet, so every existing one is handed over (final_grants.sql repeats it for all).
do $$
declare
    fn regprocedure;
begin
    for fn in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'realtime'::regnamespace
    loop
        execute format('alter function %s owner to supabase_realtime_admin', fn);
    end loop;
end $$;

do $$
declare
    grants text := current_setting('supautils.policy_grants', true);
begin
    if grants like '%realtime.messages%' and grants like '%realtime.subscription%' then
        revoke supabase_realtime_admin from postgres;
        grant usage on schema realtime to postgres with grant option;
        revoke create on schema realtime from postgres;
    end if;
end $$;

revoke all on realtime.schema_migrations
    from postgres, dashboard_user, anon, authenticated, service_role, supabase_realtime_admin;
