-- realtime.wal2json_escape_identifier(text): backslash-escapes the characters wal2json's
-- `add-tables` parser treats as separators (`\`, `,`, `.`) and any whitespace.
create or replace function realtime.wal2json_escape_identifier(name text)
  returns text
  language sql
  immutable
  strict
as $function$
  -- Prefix `\`, `,`, `.`, and any whitespace with `\`
  SELECT regexp_replace(name, '([\\,.[:space:]])', '\\\1', 'g')
$function$;
