-- 20241108114728 MessagesUsingUuid
-- The message id becomes a uuid; the primary key is (id, inserted_at).
do $$
begin
    if exists (
        select 1 from pg_attribute
        where attrelid = to_regclass('realtime.messages')
          and attname = 'uuid'
          and not attisdropped
    ) then
        alter table realtime.messages
            drop column id,
            drop column uuid,
            add column id uuid not null default gen_random_uuid();
        alter table realtime.messages add primary key (id, inserted_at);
    end if;
end $$;

drop sequence if exists realtime.messages_id_seq;
