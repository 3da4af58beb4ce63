ALTER TABLE tenants ADD COLUMN IF NOT EXISTS gcm_migrated_at timestamp(0) without time zone;
