-- 20260528120000 Wal2jsonEscapeSpecialChars
-- realtime.wal2json_escape_identifier, realtime.quote_wal2json and realtime.list_changes are
-- redefined (from functions/); upstream recreates list_changes, so it is dropped here.
drop function if exists realtime.list_changes(name, name, integer, integer);
