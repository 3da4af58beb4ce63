-- 20240109165339 AddUpdateGrantToChannels
grant update on realtime.channels to postgres, anon, authenticated, service_role;
