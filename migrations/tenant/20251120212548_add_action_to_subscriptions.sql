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

create unique index if not exists subscription_subscription_id_entity_filters_action_filter_key
    on realtime.subscription (subscription_id, entity, filters, action_filter);

drop index if exists realtime.subscription_subscription_id_entity_filters_key;
