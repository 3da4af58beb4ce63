-- 20240109165339 AddUpdateGrantToChannels
do $$
begin
    if to_regclass('realtime.channels') is not null then
        grant update on realtime.channels to postgres, anon, authenticated, service_role;
    end if;
end $$;
