ALTER TABLE tenants
  ALTER COLUMN max_events_per_second TYPE integer,
  ALTER COLUMN max_events_per_second SET NOT NULL,
  ALTER COLUMN max_events_per_second SET DEFAULT 1000;
