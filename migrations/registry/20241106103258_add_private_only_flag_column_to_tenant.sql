ALTER TABLE tenants ADD COLUMN IF NOT EXISTS private_only boolean NOT NULL DEFAULT false;
