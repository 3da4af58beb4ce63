-- 20240108234812 AddChannelsColumnForWriteCheck
alter table if exists realtime.channels add column if not exists "check" boolean default false;
