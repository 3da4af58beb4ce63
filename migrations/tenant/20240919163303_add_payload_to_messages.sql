-- 20240919163303 AddPayloadToMessages
-- Broadcast columns on the (not yet partitioned) realtime.messages; realtime.send and
-- realtime.broadcast_changes come from functions/. A partitioned realtime.messages already
-- has its final columns, so nothing is done to it.
do $$
begin
    if exists (
        select 1 from pg_class
        where oid = to_regclass('realtime.messages') and relkind = 'r'
    ) then
        alter table realtime.messages
            add column if not exists payload jsonb,
            add column if not exists event text,
            add column if not exists topic text,
            add column if not exists private boolean default true,
            alter column inserted_at type timestamp(0) without time zone,
            alter column inserted_at set default now(),
            alter column updated_at type timestamp(0) without time zone,
            alter column updated_at set default now();
    end if;
end $$;
