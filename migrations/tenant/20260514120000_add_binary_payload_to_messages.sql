-- 20260514120000 AddBinaryPayloadToMessages
-- Binary broadcasts: a bytea payload, exclusive with the jsonb one. Upstream also added a
-- realtime.send(bytea, ...) overload here, which 20260603120000 drops again; it is not created.
alter table realtime.messages add column if not exists binary_payload bytea;

do $$
begin
    if not exists (
        select 1 from pg_constraint
        where conrelid = 'realtime.messages'::regclass
          and conname = 'messages_payload_exclusive'
    ) then
        alter table realtime.messages
            add constraint messages_payload_exclusive
            check (payload is null or binary_payload is null) not valid;
    end if;
end $$;
