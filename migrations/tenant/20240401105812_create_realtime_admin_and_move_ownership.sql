-- 20240401105812 CreateRealtimeAdminAndMoveOwnership
-- supabase_realtime_admin owns Realtime's objects from here on.
do $$
begin
    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'supabase_realtime_admin') then
        create role supabase_realtime_admin with noinherit nologin noreplication;
    end if;
end $$;

grant all privileges on schema realtime to supabase_realtime_admin;
grant all privileges on all tables in schema realtime to supabase_realtime_admin;
grant all privileges on all sequences in schema realtime to supabase_realtime_admin;
grant all privileges on all functions in schema realtime to supabase_realtime_admin;

alter table realtime.channels owner to supabase_realtime_admin;
alter table realtime.broadcasts owner to supabase_realtime_admin;
alter table realtime.presences owner to supabase_realtime_admin;
alter function realtime.channel_name() owner to supabase_realtime_admin;

-- Granting a role needs ADMIN on it (superuser or CREATEROLE on PostgreSQL 15); without it
-- the membership is skipped with a notice rather than failing the whole upgrade.
do $$
begin
    if exists (
        select 1 from pg_catalog.pg_roles
        where rolname = current_user and (rolsuper or rolcreaterole)
    ) then
        grant supabase_realtime_admin to postgres;
    else
        raise notice 'skipping GRANT supabase_realtime_admin TO postgres: % may not grant roles', current_user;
    end if;
end $$;
