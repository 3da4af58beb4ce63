-- 20240321100241 AddPresencesPoliciesTable
-- Per-channel presence authorization (dropped again by 20240523004032; not created when
-- realtime.channels is already gone).
do $$
begin
    if to_regclass('realtime.channels') is null then
        return;
    end if;

    create table if not exists realtime.presences (
        id bigserial primary key,
        channel_id bigint not null references realtime.channels (id) on delete cascade,
        "check" boolean not null default false,
        inserted_at timestamp(0) without time zone not null,
        updated_at timestamp(0) without time zone not null
    );
    create unique index if not exists presences_channel_id_index on realtime.presences (channel_id);

    alter table realtime.presences enable row level security;
    grant select on realtime.presences to postgres, anon, authenticated, service_role;
    grant update on realtime.presences to postgres, anon, authenticated, service_role;
    grant insert on realtime.presences to postgres, anon, authenticated, service_role;
    grant usage on sequence realtime.presences_id_seq to postgres, anon, authenticated, service_role;
end $$;
