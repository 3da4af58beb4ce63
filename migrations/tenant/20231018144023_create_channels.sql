-- 20231018144023 CreateChannels
-- First authorization table (dropped again by 20240523004032).
create table if not exists realtime.channels (
    id bigserial primary key,
    name varchar(255) not null,
    inserted_at timestamp(0) without time zone not null,
    updated_at timestamp(0) without time zone not null
);

create unique index if not exists channels_name_index on realtime.channels (name);
