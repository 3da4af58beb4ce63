ALTER TABLE tenants ADD COLUMN IF NOT EXISTS presence_enabled boolean NOT NULL DEFAULT false;
