-- 20211116045059 CreateRealtimeCheckFiltersTrigger
-- The trigger that validates and normalises subscription rows. Its function
-- (functions/subscription_check_filters.sql) is installed just before this file.
drop trigger if exists tr_check_filters on realtime.subscription;

create trigger tr_check_filters
    before insert or update on realtime.subscription
    for each row
    execute function realtime.subscription_check_filters();
