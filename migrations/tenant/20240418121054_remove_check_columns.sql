-- 20240418121054 RemoveCheckColumns
alter table realtime.channels drop column if exists "check";
alter table realtime.broadcasts drop column if exists "check";
alter table realtime.presences drop column if exists "check";
