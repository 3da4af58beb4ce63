-- Tenants table with a unique index on external_id. Columns are re-added one by one so that a
-- hand-created table missing some of them converges too.
CREATE TABLE IF NOT EXISTS tenants (
  id uuid PRIMARY KEY,
  name varchar(255),
  external_id varchar(255),
  jwt_secret varchar(500),
  max_concurrent_users integer DEFAULT 10000,
  inserted_at timestamp(0) without time zone NOT NULL,
  updated_at timestamp(0) without time zone NOT NULL
);
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS name varchar(255);
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS external_id varchar(255);
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS jwt_secret varchar(500);
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS max_concurrent_users integer DEFAULT 10000;
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS inserted_at timestamp(0) without time zone NOT NULL;
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS updated_at timestamp(0) without time zone NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS tenants_external_id_index ON tenants (external_id);
