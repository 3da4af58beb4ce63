ALTER TABLE tenants
  ALTER COLUMN name TYPE text,
  ALTER COLUMN external_id TYPE text,
  ALTER COLUMN jwt_secret TYPE text,
  ALTER COLUMN postgres_cdc_default TYPE text,
  ALTER COLUMN postgres_cdc_default SET DEFAULT 'postgres_cdc_rls';
