ALTER TABLE extensions
  ALTER COLUMN type TYPE text,
  ALTER COLUMN tenant_external_id TYPE text;
