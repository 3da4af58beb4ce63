-- 20220603231003 AddQuotedRegtypesSupport
-- realtime.wal_column gets its final shape (type_name + type_oid). Dropping the old type
-- drops the functions taking it; they come back from functions/ at the end of the run.
do $$
begin
    if not exists (
        select 1
        from pg_type t
        join pg_attribute a on a.attrelid = t.typrelid
        where t.typname = 'wal_column'
          and t.typnamespace = 'realtime'::regnamespace
          and a.attname = 'type_oid'
          and not a.attisdropped
    ) then
        drop type if exists realtime.wal_column cascade;
        create type realtime.wal_column as (
            name text,
            type_name text,
            type_oid oid,
            value jsonb,
            is_pkey boolean,
            is_selectable boolean
        );
    end if;
end $$;
