-- 20240311171622 AddInsertAndDeleteGrantToChannels
do $$
begin
    if to_regclass('realtime.channels') is not null then
        grant insert, delete on realtime.channels to postgres, anon, authenticated, service_role;
    end if;
    if to_regclass('realtime.broadcasts') is not null then
        grant insert on realtime.broadcasts to postgres, anon, authenticated, service_role;
        grant usage on sequence realtime.broadcasts_id_seq to postgres, anon, authenticated, service_role;
    end if;
end $$;
