-- 20260527120000 AddSelectColumnsToSubscriptions
-- Subscriptions may select columns; the unique index includes them (PostgreSQL truncates its
-- name to subscription_subscription_id_entity_filters_action_filter_selec).
truncate table realtime.subscription;

drop index if exists realtime.subscription_subscription_id_entity_filters_action_filter_key;

alter table realtime.subscription add column if not exists selected_columns text[] default null;

create unique index if not exists
    subscription_subscription_id_entity_filters_action_filter_selected_columns_key
on realtime.subscription
    (subscription_id, entity, filters, action_filter, coalesce(selected_columns, '{}'));
