-- realtime.to_regrole(text): a plain cast, declared immutable so the generated column
-- realtime.subscription.claims_role may use it.
create or replace function realtime.to_regrole(role_name text)
  returns regrole
  language sql
  immutable
as $function$ select role_name::regrole $function$;
