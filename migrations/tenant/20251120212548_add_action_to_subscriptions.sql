-- 20251120212548 AddActionToSubscriptions
-- Subscriptions may ask for one action only ('*' = all).
do $$
begin
    if not exists (
        select 1 from pg_attribute
        where attrelid = 'realtime.subscription'::regclass
          and attname = 'action_filter'
          and not attisdropped
    ) then
        alter table realtime.subscription
            add column action_filter text default '*'
                check (action_filter in ('*', 'INSERT', 'UPDATE', 'DELETE'));
    end if;
end $$;

-- Superseded by the selected_columns index of 20260527120000; not built once that exists.
do $$
begin
    if not exists (
        select 1 from pg_attribute
        where attrelid = 'realtime.subscription'::regclass
          and attname = 'selected_columns'
          and not attisdropped
    ) then
        create unique index if not exists subscription_subscription_id_entity_filters_action_filter_key
            on realtime.subscription (subscription_id, entity, filters, action_filter);
    end if;
end $$;

drop index if exists realtime.subscription_subscription_id_entity_filters_key;
