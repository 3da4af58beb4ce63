-- 20240401105812 CreateRealtimeAdminAndMoveOwnership
-- supabase_realtime_admin owns Realtime's objects from here on.

-- Roles are cluster-wide: another database of the cluster may be creating or granting the
-- same role at this moment, which surfaces as a duplicate and means the work is done.
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

grant all privileges on schema realtime to supabase_realtime_admin;
grant all privileges on all tables in schema realtime to supabase_realtime_admin;
grant all privileges on all sequences in schema realtime to supabase_realtime_admin;
grant all privileges on all functions in schema realtime to supabase_realtime_admin;

alter table if exists realtime.channels owner to supabase_realtime_admin;
alter table if exists realtime.broadcasts owner to supabase_realtime_admin;
alter table if exists realtime.presences owner to supabase_realtime_admin;

do $$
begin
    if to_regprocedure('realtime.channel_name()') is not null then
        alter function realtime.channel_name() owner to supabase_realtime_admin;
    end if;
end $$;

-- Granting a role needs ADMIN on it (superuser or CREATEROLE on PostgreSQL 15); without it
-- the membership is skipped with a notice rather than failing the whole upgrade.
do $$
begin
    if exists (
        select 1
        from pg_catalog.pg_auth_members m
        where m.roleid = 'supabase_realtime_admin'::regrole and m.member = 'postgres'::regrole
    ) then
        return;
    end if;
    if exists (
        select 1 from pg_catalog.pg_roles
        where rolname = current_user and (rolsuper or rolcreaterole)
    ) then
        grant supabase_realtime_admin to postgres;
    else
        raise notice 'skipping GRANT supabase_realtime_admin TO postgres: % may not grant roles', current_user;
    end if;
exception
    when unique_violation then null;
end $$;
