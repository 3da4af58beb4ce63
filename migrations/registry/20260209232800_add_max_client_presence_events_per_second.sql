ALTER TABLE tenants
  ADD COLUMN IF NOT EXISTS max_client_presence_events_per_window integer NULL,
  ADD COLUMN IF NOT EXISTS client_presence_window_ms integer NULL;
