ALTER TABLE tenants ADD COLUMN IF NOT EXISTS max_events_per_second integer DEFAULT 10000;
