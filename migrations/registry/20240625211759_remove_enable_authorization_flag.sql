ALTER TABLE tenants DROP COLUMN IF EXISTS enable_authorization;
