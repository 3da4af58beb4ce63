-- Settings key rename; only rows that still carry the old key are touched.
UPDATE extensions
SET settings = (settings - 'poll_interval') || jsonb_build_object('poll_interval_ms', settings -> 'poll_interval')
WHERE type = 'postgres_cdc_rls' AND settings ? 'poll_interval';
