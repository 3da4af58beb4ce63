-- realtime.is_visible_through_filters: true when every filter holds for the change's columns.
-- No filters means visible; a filter on a column the change lacks means not visible.
create or replace function realtime.is_visible_through_filters(
  columns realtime.wal_column[],
  filters realtime.user_defined_filter[]
)
  returns boolean
  language sql
  stable
as $function$
    select
        filters is null
        or array_length(filters, 1) is null
        or coalesce(
            count(col.name) = count(1)
            and sum(
                realtime.check_equality_op(
                    op:=f.op,
                    type_:=coalesce(col.type_oid::regtype, col.type_name::regtype),
                    val_1:=col.value #>> '{}',
                    val_2:=f.value,
                    negate:=coalesce(f.negate, false)
                )::int
            ) filter (where col.name is not null) = count(col.name),
            false
        )
    from
        unnest(filters) f
        left join unnest(columns) col
            on f.column_name = col.name;
$function$;
