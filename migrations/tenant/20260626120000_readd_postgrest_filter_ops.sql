-- 20260626120000 ReAddPostgrestFilterOps
-- Same change as 20260616120000, re-applied after the revert 20260624120000.
-- PostgREST filter operators and the `negate` flag on realtime.user_defined_filter; the
-- functions using them come from functions/. Subscriptions are ephemeral and are cleared so
-- the filter type can change arity with no stored values to rewrite.
alter type realtime.equality_op add value if not exists 'like';
alter type realtime.equality_op add value if not exists 'ilike';
alter type realtime.equality_op add value if not exists 'is';
alter type realtime.equality_op add value if not exists 'match';
alter type realtime.equality_op add value if not exists 'imatch';
alter type realtime.equality_op add value if not exists 'isdistinct';

truncate realtime.subscription;

-- OrioleDB cannot alter a type an index depends on: the unique index is rebuilt around it.
do $$
begin
    if exists (select 1 from pg_extension where extname = 'orioledb') then
        drop index if exists realtime.subscription_subscription_id_entity_filters_action_filter_selec;
    end if;
end $$;

do $$
begin
    if not exists (
        select 1
        from pg_type t
        join pg_attribute a on a.attrelid = t.typrelid
        where t.typname = 'user_defined_filter'
          and t.typnamespace = 'realtime'::regnamespace
          and a.attname = 'negate'
          and not a.attisdropped
    ) then
        alter type realtime.user_defined_filter add attribute negate boolean cascade;
    end if;
end $$;

do $$
begin
    if exists (select 1 from pg_extension where extname = 'orioledb') then
        create unique index if not exists subscription_subscription_id_entity_filters_action_filter_selec
            on realtime.subscription (subscription_id, entity, filters, action_filter, coalesce(selected_columns, '{}'));
    end if;
end $$;
