//! What a Supabase database image provides before Realtime first connects (POSTGRES.md §5.2).

/// Roles, schemas, `auth` helpers and the empty `supabase_realtime` publication.
///
/// Run once per cluster in `template1` by a superuser; roles are cluster-wide, the rest is
/// copied into every database created from the template.
pub const BOOTSTRAP_SQL: &str = r#"
create role anon          nologin noinherit;
create role authenticated nologin noinherit;
create role service_role  nologin noinherit bypassrls;
create role authenticator login noinherit password 'authenticator';
create role dashboard_user nosuperuser createdb createrole replication;
create role supabase_realtime_admin nologin noinherit noreplication;
alter  role supabase_realtime_admin set search_path = public, extensions, realtime;
grant  anon, authenticated, service_role to supabase_realtime_admin;
grant  anon, authenticated, service_role to authenticator;
grant  set on parameter log_min_messages to supabase_realtime_admin;
create role postgres login createdb createrole replication password 'postgres';

create schema if not exists extensions;
create schema if not exists realtime authorization supabase_admin;
grant usage on schema realtime to anon, authenticated, service_role;
grant all   on schema realtime to supabase_realtime_admin with grant option;
grant usage on schema public   to anon, authenticated, service_role;
grant create, usage on schema public to supabase_realtime_admin;

create schema if not exists auth authorization supabase_admin;
grant usage on schema auth to anon, authenticated, service_role, supabase_realtime_admin;
create or replace function auth.uid() returns uuid language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid $$;
create or replace function auth.role() returns text language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'))::text $$;
create or replace function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                  nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$;
grant execute on all functions in schema auth to anon, authenticated, service_role, supabase_realtime_admin;

create publication supabase_realtime;
"#;
