-- 20231204144024 CreateRlsHelperFunctions
-- realtime.channel_name(), the first policy helper (replaced by realtime.topic() and dropped
-- by 20240523004032).
create or replace function realtime.channel_name()
    returns text
    language sql
    stable
as $$
    select nullif(current_setting('realtime.channel_name', true), '')::text;
$$;
