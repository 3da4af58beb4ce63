-- Upstream runs this one outside a transaction and without the migration lock.
ALTER TABLE tenants
  ALTER COLUMN max_presence_events_per_second TYPE integer,
  ALTER COLUMN max_presence_events_per_second SET DEFAULT 1000;
