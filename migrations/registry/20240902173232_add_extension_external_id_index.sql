CREATE INDEX IF NOT EXISTS extensions_tenant_external_id_index ON extensions (tenant_external_id);
