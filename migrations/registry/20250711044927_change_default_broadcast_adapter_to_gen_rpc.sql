ALTER TABLE tenants
  ALTER COLUMN broadcast_adapter TYPE varchar(255),
  ALTER COLUMN broadcast_adapter SET DEFAULT 'gen_rpc';
