-- 20231204144025 EnableChannelsRls
-- The legacy authorization tables may already be gone (dropped by 20240523004032) when this
-- runs over a newer schema; every statement on them checks first.
alter table if exists realtime.channels enable row level security;
