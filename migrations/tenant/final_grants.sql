-- Owners and privileges of the final `realtime` schema, as upstream's fresh-database dump
-- leaves them. Runs after the functions/ scripts at the end of every run that applied a
-- version, so databases reached through any history end the same.

-- supabase_realtime_admin owns every table, type and function.
alter table realtime.messages owner to supabase_realtime_admin;
alter table realtime.subscription owner to supabase_realtime_admin;
alter type realtime.action owner to supabase_realtime_admin;
alter type realtime.equality_op owner to supabase_realtime_admin;
alter type realtime.user_defined_filter owner to supabase_realtime_admin;
alter type realtime.wal_column owner to supabase_realtime_admin;
alter type realtime.wal_rls owner to supabase_realtime_admin;

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

-- Schema.
grant usage on schema realtime to postgres with grant option;
grant usage on schema realtime to anon, authenticated, service_role;
grant all on schema realtime to supabase_realtime_admin with grant option;

-- Functions: postgres and dashboard_user may run all of them; the API roles get explicit
-- EXECUTE on the Postgres-changes helpers (PUBLIC keeps its default EXECUTE on all).
do $$
declare
    fn regprocedure;
begin
    for fn in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'realtime'::regnamespace
    loop
        execute format('grant all on function %s to postgres, dashboard_user', fn);
    end loop;
end $$;

grant all on function realtime.apply_rls(jsonb, integer) to anon, authenticated, service_role;
grant all on function realtime.build_prepared_statement_sql(text, regclass, realtime.wal_column[])
    to anon, authenticated, service_role;
grant all on function realtime."cast"(text, regtype) to anon, authenticated, service_role;
grant all on function realtime.check_equality_op(realtime.equality_op, regtype, text, text)
    to anon, authenticated, service_role;
grant all on function realtime.check_equality_op(realtime.equality_op, regtype, text, text, boolean)
    to anon, authenticated, service_role;
grant all on function realtime.is_visible_through_filters(realtime.wal_column[], realtime.user_defined_filter[])
    to anon, authenticated, service_role;
grant all on function realtime.quote_wal2json(regclass) to anon, authenticated, service_role;
grant all on function realtime.subscription_check_filters() to anon, authenticated, service_role;
grant all on function realtime.to_regrole(text) to anon, authenticated, service_role;

-- Tables and the subscription id sequence.
grant all on table realtime.messages to postgres, dashboard_user;
grant select, insert, update on table realtime.messages to anon, authenticated, service_role;
grant all on table realtime.subscription to postgres, dashboard_user;
grant select on table realtime.subscription to anon, authenticated, service_role;
grant all on sequence realtime.subscription_id_seq to postgres, dashboard_user;
grant usage on sequence realtime.subscription_id_seq to anon, authenticated, service_role;

-- Objects supabase_admin creates later (such as partitions made by that role) start with the
-- same rights for postgres and dashboard_user. Only a member of supabase_admin may say so.
do $$
begin
    if exists (select 1 from pg_catalog.pg_roles where rolname = 'supabase_admin')
       and pg_catalog.pg_has_role(current_user, 'supabase_admin', 'MEMBER') then
        alter default privileges for role supabase_admin in schema realtime
            grant all on tables to postgres, dashboard_user;
        alter default privileges for role supabase_admin in schema realtime
            grant all on sequences to postgres, dashboard_user;
        alter default privileges for role supabase_admin in schema realtime
            grant all on functions to postgres, dashboard_user;
    end if;
end $$;

-- The ledger records its own insertion time, as in the dump (only its owner may say so).
do $$
begin
    if pg_catalog.pg_has_role(
        current_user,
        (select relowner from pg_catalog.pg_class where oid = 'realtime.schema_migrations'::regclass),
        'MEMBER'
    ) then
        alter table realtime.schema_migrations alter column inserted_at set default now();
    end if;
end $$;
