-- 20241030150047 MessagesPartitioning
-- realtime.messages becomes a table partitioned by day on inserted_at. Existing policies are
-- copied to the new table; existing rows are not (they are transient broadcasts and
-- authorization probes). Skipped when the table is already partitioned.
do $$
declare
    pol record;
    stmt text;
begin
    if not exists (
        select 1 from pg_class
        where oid = to_regclass('realtime.messages') and relkind = 'r'
    ) then
        return;
    end if;

    create table if not exists realtime.messages_new (
        id bigserial,
        uuid text default gen_random_uuid(),
        topic text not null,
        extension text not null,
        payload jsonb,
        event text,
        private boolean default false,
        updated_at timestamp not null default now(),
        inserted_at timestamp not null default now(),
        primary key (id, inserted_at)
    ) partition by range (inserted_at);

    alter table realtime.messages_new enable row level security;

    for pol in
        select * from pg_policies
        where schemaname = 'realtime' and tablename = 'messages'
    loop
        stmt := 'CREATE POLICY ' || quote_ident(pol.policyname) || ' ON realtime.messages_new '
            || case when pol.permissive = 'PERMISSIVE' then 'AS PERMISSIVE ' else 'AS RESTRICTIVE ' end
            || ' FOR ' || pol.cmd;
        if pol.roles is not null and array_length(pol.roles, 1) > 0 then
            stmt := stmt || ' TO ' || (select string_agg(quote_ident(r), ', ') from unnest(pol.roles) as r);
        end if;
        if pol.qual is not null then
            stmt := stmt || ' USING (' || pol.qual || ')';
        end if;
        if pol.with_check is not null then
            stmt := stmt || ' WITH CHECK (' || pol.with_check || ')';
        end if;
        raise notice 'Executing: %', stmt;
        execute stmt;
    end loop;

    alter table realtime.messages rename to messages_old;
    alter table realtime.messages_new rename to messages;
    drop table realtime.messages_old;
    create sequence if not exists realtime.messages_id_seq;
    alter table realtime.messages alter column id set default nextval('realtime.messages_id_seq');
end $$;

alter table realtime.messages owner to supabase_realtime_admin;

do $$
begin
    if to_regclass('realtime.messages_id_seq') is not null then
        grant usage on sequence realtime.messages_id_seq to postgres, anon, authenticated, service_role;
    end if;
end $$;

grant select on realtime.messages to postgres, anon, authenticated, service_role;
grant update on realtime.messages to postgres, anon, authenticated, service_role;
grant insert on realtime.messages to postgres, anon, authenticated, service_role;
alter table realtime.messages enable row level security;
