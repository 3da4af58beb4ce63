-- 20211116024918 CreateRealtimeSubscriptionTable
-- Filter types and the subscription table in their first (2021) shape; later versions
-- reshape them. Type checks are schema-qualified so a same-named type elsewhere is ignored.
do $$
begin
    if not exists (
        select 1 from pg_type
        where typname = 'equality_op' and typnamespace = 'realtime'::regnamespace
    ) then
        create type realtime.equality_op as enum ('eq', 'neq', 'lt', 'lte', 'gt', 'gte');
    end if;

    if not exists (
        select 1 from pg_type
        where typname = 'user_defined_filter' and typnamespace = 'realtime'::regnamespace
    ) then
        create type realtime.user_defined_filter as (
            column_name text,
            op realtime.equality_op,
            value text
        );
    end if;
end $$;

create table if not exists realtime.subscription (
    id bigint not null generated always as identity,
    user_id uuid not null,
    email varchar(255),
    entity regclass not null,
    filters realtime.user_defined_filter[] not null default '{}',
    created_at timestamp not null default timezone('utc', now()),
    constraint pk_subscription primary key (id),
    unique (entity, user_id, filters)
);

create index if not exists ix_realtime_subscription_entity
    on realtime.subscription using hash (entity);
