UPDATE tenants SET max_concurrent_users = 200 WHERE max_concurrent_users IS NULL;
ALTER TABLE tenants
  ALTER COLUMN max_events_per_second TYPE integer,
  ALTER COLUMN max_events_per_second SET NOT NULL,
  ALTER COLUMN max_events_per_second SET DEFAULT 100,
  ALTER COLUMN max_concurrent_users TYPE integer,
  ALTER COLUMN max_concurrent_users SET NOT NULL,
  ALTER COLUMN max_concurrent_users SET DEFAULT 200;
