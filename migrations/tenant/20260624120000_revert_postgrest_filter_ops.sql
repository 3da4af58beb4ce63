-- 20260624120000 RevertPostgrestFilterOps
-- Takes back 20260616120000: drops `negate` and the 5-argument check_equality_op. Enum values
-- cannot be dropped and stay. 20260626120000 brings everything back.
truncate realtime.subscription;

drop function if exists realtime.check_equality_op(realtime.equality_op, regtype, text, text, boolean);

do $$
begin
    if exists (select 1 from pg_extension where extname = 'orioledb') then
        drop index if exists realtime.subscription_subscription_id_entity_filters_action_filter_selec;
    end if;
end $$;

do $$
begin
    if exists (
        select 1
        from pg_type t
        join pg_attribute a on a.attrelid = t.typrelid
        where t.typname = 'user_defined_filter'
          and t.typnamespace = 'realtime'::regnamespace
          and a.attname = 'negate'
          and not a.attisdropped
    ) then
        alter type realtime.user_defined_filter drop attribute negate cascade;
    end if;
end $$;

do $$
begin
    if exists (select 1 from pg_extension where extname = 'orioledb') then
        create unique index if not exists subscription_subscription_id_entity_filters_action_filter_selec
            on realtime.subscription (subscription_id, entity, filters, action_filter, coalesce(selected_columns, '{}'));
    end if;
end $$;
