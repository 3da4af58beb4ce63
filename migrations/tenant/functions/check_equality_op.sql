-- realtime.check_equality_op: evaluates one subscription filter against one column value.
-- The 4-argument form is the legacy one (eq..in); the 5-argument form adds the PostgREST
-- operators and `negate` and is the one is_visible_through_filters calls.
create or replace function realtime.check_equality_op(
  op realtime.equality_op,
  type_ regtype,
  val_1 text,
  val_2 text
)
  returns boolean
  language plpgsql
  immutable
as $function$
/*
Casts *val_1* and *val_2* as type *type_* and check the *op* condition for truthiness
*/
declare
    op_symbol text = (
        case
            when op = 'eq' then '='
            when op = 'neq' then '!='
            when op = 'lt' then '<'
            when op = 'lte' then '<='
            when op = 'gt' then '>'
            when op = 'gte' then '>='
            when op = 'in' then '= any'
            else 'UNKNOWN OP'
        end
    );
    res boolean;
begin
    execute format(
        'select %L::'|| type_::text || ' ' || op_symbol
        || ' ( %L::'
        || (
            case
                when op = 'in' then type_::text || '[]'
                else type_::text end
        )
        || ')', val_1, val_2) into res;
    return res;
end;
$function$;

create or replace function realtime.check_equality_op(
  op realtime.equality_op,
  type_ regtype,
  val_1 text,
  val_2 text,
  negate boolean
)
  returns boolean
  language plpgsql
  stable
as $function$
declare
    op_symbol text;
    res boolean;
begin
    -- IS [NOT] DISTINCT FROM takes typed literals on both sides
    if op = 'isdistinct' then
        execute format(
            'select %L::%s %s %L::%s',
            val_1,
            type_::text,
            case when negate then 'IS NOT DISTINCT FROM' else 'IS DISTINCT FROM' end,
            val_2,
            type_::text
        ) into res;
        return res;
    end if;

    -- IS takes a keyword on the right (NULL, TRUE, FALSE, UNKNOWN), never a literal
    if op = 'is' then
        if val_2 not in ('null', 'true', 'false', 'unknown') then
            raise exception 'invalid value for is filter: must be null, true, false, or unknown';
        end if;
        execute format(
            'select %L::%s %s %s',
            val_1,
            type_::text,
            case when negate then 'IS NOT' else 'IS' end,
            upper(val_2)
        ) into res;
        return res;
    end if;

    op_symbol = case
        when op = 'eq'     then '='
        when op = 'neq'    then '!='
        when op = 'lt'     then '<'
        when op = 'lte'    then '<='
        when op = 'gt'     then '>'
        when op = 'gte'    then '>='
        when op = 'in'     then '= any'
        when op = 'like'   then 'LIKE'
        when op = 'ilike'  then 'ILIKE'
        when op = 'match'  then '~'
        when op = 'imatch' then '~*'
        else null
    end;

    if op_symbol is null then
        raise exception 'unsupported equality operator: %', op::text;
    end if;

    execute format(
        'select %L::%s %s (%L::%s)',
        val_1,
        type_::text,
        op_symbol,
        val_2,
        case when op = 'in' then type_::text || '[]' else type_::text end
    ) into res;

    return case when negate then not res else res end;
end;
$function$;
