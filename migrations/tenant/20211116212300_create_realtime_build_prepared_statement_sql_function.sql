-- 20211116212300 CreateRealtimeBuildPreparedStatementSqlFunction
-- realtime.wal_column in its first shape (a single `type` attribute). A wal_column that has
-- neither that shape nor the later one (20220603231003) is replaced; the function itself comes
-- from functions/ at the end of the run.
do $$
declare
    wal_column_rel oid;
begin
    select typrelid into wal_column_rel
    from pg_type
    where typname = 'wal_column' and typnamespace = 'realtime'::regnamespace;

    if wal_column_rel is not null and not exists (
        select 1 from pg_attribute
        where attrelid = wal_column_rel
          and attname in ('type', 'type_oid')
          and not attisdropped
    ) then
        drop type realtime.wal_column cascade;
        wal_column_rel := null;
    end if;

    if wal_column_rel is null then
        create type realtime.wal_column as (
            name text,
            type text,
            value jsonb,
            is_pkey boolean,
            is_selectable boolean
        );
    end if;
end $$;
