ALTER TABLE tenants
  ADD COLUMN IF NOT EXISTS max_presence_events_per_second integer DEFAULT 10000,
  ADD COLUMN IF NOT EXISTS max_payload_size_in_kb integer DEFAULT 3000;
