-- 20211122062447 GrantRealtimeUsageToAuthenticatedRole
grant usage on schema realtime to authenticated;
