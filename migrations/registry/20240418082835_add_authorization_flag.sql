ALTER TABLE tenants ADD COLUMN IF NOT EXISTS enable_authorization boolean DEFAULT false;
