ALTER TABLE tenants ADD COLUMN IF NOT EXISTS suspend boolean DEFAULT false;
