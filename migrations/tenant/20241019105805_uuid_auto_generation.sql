-- 20241019105805 UuidAutoGeneration
do $$
begin
    if exists (
        select 1
        from pg_class c
        join pg_attribute a on a.attrelid = c.oid
        where c.oid = to_regclass('realtime.messages')
          and c.relkind = 'r'
          and a.attname = 'uuid'
          and not a.attisdropped
    ) then
        update realtime.messages set uuid = gen_random_uuid() where uuid is null;
        alter table realtime.messages
            alter column uuid set default gen_random_uuid(),
            alter column uuid set not null;
    end if;
end $$;
