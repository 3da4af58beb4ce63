-- 20231204144025 EnableChannelsRls
alter table realtime.channels enable row level security;
