ALTER TABLE tenants
  ALTER COLUMN jwt_secret TYPE text,
  ALTER COLUMN jwt_secret DROP NOT NULL;
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint
    WHERE conrelid = 'tenants'::regclass AND conname = 'jwt_secret_or_jwt_jwks_required'
  ) THEN
    ALTER TABLE tenants
      ADD CONSTRAINT jwt_secret_or_jwt_jwks_required
      CHECK (jwt_secret IS NOT NULL OR jwt_jwks IS NOT NULL);
  END IF;
END
$$;
