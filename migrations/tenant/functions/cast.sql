-- realtime.cast(text, regtype): a column value rendered as typed jsonb. bytea is kept as its
-- text form so that it is not encoded twice.
create or replace function realtime."cast"(val text, type_ regtype)
  returns jsonb
  language plpgsql
  immutable
as $function$
declare
  res jsonb;
begin
  if type_::text = 'bytea' then
    return to_jsonb(val);
  end if;
  execute format('select to_jsonb(%L::'|| type_::text || ')', val) into res;
  return res;
end
$function$;
