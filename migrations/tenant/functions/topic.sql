-- realtime.topic(): the channel sub-topic under authorization, for RLS policies on
-- realtime.messages; NULL when unset or empty.
create or replace function realtime.topic()
  returns text
  language sql
  stable
as $function$
select nullif(current_setting('realtime.topic', true), '')::text;
$function$;
