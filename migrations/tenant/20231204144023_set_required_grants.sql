-- 20231204144023 SetRequiredGrants
grant usage on schema realtime to postgres, anon, authenticated, service_role;
grant select on all tables in schema realtime to postgres, anon, authenticated, service_role;
grant execute on all functions in schema realtime to postgres, anon, authenticated, service_role;
grant usage on all sequences in schema realtime to postgres, anon, authenticated, service_role;
