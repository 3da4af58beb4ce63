-- 20260326120000 ListChangesWithSlotCount
-- realtime.list_changes gains the slot_changes_count column; a changed result type cannot be
-- replaced in place, so the old function is dropped (the new one comes from functions/).
drop function if exists realtime.list_changes(name, name, integer, integer);
