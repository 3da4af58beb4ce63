ALTER TABLE tenants ADD COLUMN IF NOT EXISTS migrations_ran integer DEFAULT 0;
