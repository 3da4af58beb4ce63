-- 20211210212804 EnableGenericSubscriptionClaims
-- Subscriptions carry the subscriber's JWT claims instead of a user id. The table rewrite
-- runs only while the table still has its 2021 shape (a `user_id` column); subscriptions are
-- ephemeral, so they are dropped.
do $$
begin
    if exists (
        select 1 from pg_attribute
        where attrelid = 'realtime.subscription'::regclass
          and attname = 'user_id'
          and not attisdropped
    ) then
        truncate table realtime.subscription restart identity;
        alter table realtime.subscription
            drop constraint if exists subscription_entity_user_id_filters_key cascade,
            drop column if exists email cascade,
            drop column if exists created_at cascade;
        alter table realtime.subscription rename user_id to subscription_id;
    end if;
end $$;

-- functions/to_regrole.sql is installed just before this file: the generated column needs it.
do $$
begin
    if not exists (
        select 1 from pg_attribute
        where attrelid = 'realtime.subscription'::regclass
          and attname = 'claims'
          and not attisdropped
    ) then
        alter table realtime.subscription
            add column claims jsonb not null,
            add column claims_role regrole not null
                generated always as (realtime.to_regrole(claims ->> 'role')) stored,
            add column created_at timestamp not null default timezone('utc', now());
        create unique index subscription_subscription_id_entity_filters_key
            on realtime.subscription (subscription_id, entity, filters);
    end if;
end $$;

revoke usage on schema realtime from authenticated;
revoke all on realtime.subscription from authenticated;

do $$
begin
    if exists (
        select 1
        from pg_type t
        join pg_attribute a on a.attrelid = t.typrelid
        where t.typname = 'wal_rls'
          and t.typnamespace = 'realtime'::regnamespace
          and a.attname = 'users'
          and not a.attisdropped
    ) then
        alter type realtime.wal_rls rename attribute users to subscription_ids cascade;
    end if;
end $$;

-- apply_rls now returns a set; the old single-row form cannot be replaced in place.
drop function if exists realtime.apply_rls(jsonb, integer);
