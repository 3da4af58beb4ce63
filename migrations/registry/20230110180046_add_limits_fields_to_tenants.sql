ALTER TABLE tenants
  ADD COLUMN IF NOT EXISTS max_bytes_per_second integer NOT NULL DEFAULT 100000,
  ADD COLUMN IF NOT EXISTS max_channels_per_client integer NOT NULL DEFAULT 100,
  ADD COLUMN IF NOT EXISTS max_joins_per_second integer NOT NULL DEFAULT 500;
