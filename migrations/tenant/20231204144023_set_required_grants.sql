-- 20231204144023 SetRequiredGrants
-- Upstream granted EXECUTE on all functions of the schema; at this version those were the
-- Postgres-changes helpers named below. Naming them keeps a re-run over a newer schema from
-- granting functions that came later (send, topic, ...).
grant usage on schema realtime to postgres, anon, authenticated, service_role;
grant select on all tables in schema realtime to postgres, anon, authenticated, service_role;
grant usage on all sequences in schema realtime to postgres, anon, authenticated, service_role;

do $$
declare
    fn regprocedure;
begin
    for fn in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'realtime'::regnamespace
          and p.proname in (
              'apply_rls', 'build_prepared_statement_sql', 'cast', 'check_equality_op',
              'is_visible_through_filters', 'list_changes', 'quote_wal2json',
              'subscription_check_filters', 'to_regrole'
          )
          -- the 5-argument check_equality_op came in 2026 (granted by 20260706120000)
          and p.pronargs < 5
    loop
        execute format('grant execute on function %s to postgres, anon, authenticated, service_role', fn);
    end loop;
end $$;
