-- 20240311171622 AddInsertAndDeleteGrantToChannels
grant insert, delete on realtime.channels to postgres, anon, authenticated, service_role;
grant insert on realtime.broadcasts to postgres, anon, authenticated, service_role;
grant usage on sequence realtime.broadcasts_id_seq to postgres, anon, authenticated, service_role;
