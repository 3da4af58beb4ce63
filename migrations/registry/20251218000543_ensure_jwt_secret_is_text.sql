ALTER TABLE tenants
  ALTER COLUMN jwt_secret TYPE text,
  ALTER COLUMN jwt_secret DROP NOT NULL;
