-- 20240418121054 RemoveCheckColumns
alter table if exists realtime.channels drop column if exists "check";
alter table if exists realtime.broadcasts drop column if exists "check";
alter table if exists realtime.presences drop column if exists "check";
