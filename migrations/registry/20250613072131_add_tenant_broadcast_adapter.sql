ALTER TABLE tenants ADD COLUMN IF NOT EXISTS broadcast_adapter varchar(255) DEFAULT 'phoenix';
