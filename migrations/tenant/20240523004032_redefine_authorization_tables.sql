-- 20240523004032 RedefineAuthorizationTables
-- Authorization moves to RLS policies on realtime.messages. The table is created in its 2024
-- shape only when missing (20241030150047 later partitions it); realtime.topic() comes from
-- functions/ at the end of the run.
drop table if exists realtime.broadcasts cascade;
drop table if exists realtime.presences cascade;
drop table if exists realtime.channels cascade;

do $$
begin
    if to_regclass('realtime.messages') is null then
        create table realtime.messages (
            id bigserial primary key,
            topic text not null,
            extension text not null,
            inserted_at timestamp(0) without time zone not null,
            updated_at timestamp(0) without time zone not null
        );
        create index messages_topic_index on realtime.messages (topic);
    end if;
end $$;

alter table realtime.messages enable row level security;
grant select on realtime.messages to postgres, anon, authenticated, service_role;
grant update on realtime.messages to postgres, anon, authenticated, service_role;
grant insert on realtime.messages to postgres, anon, authenticated, service_role;

do $$
begin
    if to_regclass('realtime.messages_id_seq') is not null then
        grant usage on sequence realtime.messages_id_seq to postgres, anon, authenticated, service_role;
    end if;
end $$;

alter table realtime.messages owner to supabase_realtime_admin;

drop function if exists realtime.channel_name();
