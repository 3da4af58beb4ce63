-- 20240919163305 ChangeMessagesIdType
-- A uuid column next to the bigint id (the final uuid id arrives with 20241108114728).
do $$
begin
    if exists (
        select 1 from pg_class
        where oid = to_regclass('realtime.messages') and relkind = 'r'
    ) then
        alter table realtime.messages add column if not exists uuid uuid;
    end if;
end $$;
