-- realtime.quote_wal2json(regclass): `schema.table` escaped for wal2json's `add-tables` option.
-- Identifiers are not double-quoted: wal2json parses backslash escapes instead.
create or replace function realtime.quote_wal2json(entity regclass)
  returns text
  language sql
  immutable
  strict
as $function$
  SELECT
    realtime.wal2json_escape_identifier(nsp.nspname::text)
    || '.'
    || realtime.wal2json_escape_identifier(pc.relname::text)
  FROM pg_class pc
  JOIN pg_namespace nsp ON pc.relnamespace = nsp.oid
  WHERE pc.oid = entity
$function$;
