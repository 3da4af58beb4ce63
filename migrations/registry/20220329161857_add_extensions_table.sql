-- Extensions of a tenant, removed with it.
CREATE TABLE IF NOT EXISTS extensions (
  id uuid PRIMARY KEY,
  type varchar(255),
  settings jsonb,
  tenant_external_id varchar(255)
    CONSTRAINT extensions_tenant_external_id_fkey
    REFERENCES tenants (external_id) ON DELETE CASCADE,
  inserted_at timestamp(0) without time zone NOT NULL,
  updated_at timestamp(0) without time zone NOT NULL
);
ALTER TABLE extensions ADD COLUMN IF NOT EXISTS type varchar(255);
ALTER TABLE extensions ADD COLUMN IF NOT EXISTS settings jsonb;
ALTER TABLE extensions ADD COLUMN IF NOT EXISTS tenant_external_id varchar(255);
ALTER TABLE extensions ADD COLUMN IF NOT EXISTS inserted_at timestamp(0) without time zone NOT NULL;
ALTER TABLE extensions ADD COLUMN IF NOT EXISTS updated_at timestamp(0) without time zone NOT NULL;
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint
    WHERE conrelid = 'extensions'::regclass AND conname = 'extensions_tenant_external_id_fkey'
  ) THEN
    ALTER TABLE extensions
      ADD CONSTRAINT extensions_tenant_external_id_fkey
      FOREIGN KEY (tenant_external_id) REFERENCES tenants (external_id) ON DELETE CASCADE;
  END IF;
END
$$;
CREATE UNIQUE INDEX IF NOT EXISTS extensions_tenant_external_id_type_index
  ON extensions (tenant_external_id, type);
