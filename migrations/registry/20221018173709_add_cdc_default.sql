ALTER TABLE tenants ADD COLUMN IF NOT EXISTS postgres_cdc_default varchar(255) DEFAULT 'postgres_cdc_rls';
