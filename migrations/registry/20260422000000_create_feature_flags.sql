CREATE TABLE IF NOT EXISTS feature_flags (
  id uuid PRIMARY KEY,
  name varchar(255) NOT NULL,
  enabled boolean NOT NULL DEFAULT false,
  inserted_at timestamp(0) without time zone NOT NULL,
  updated_at timestamp(0) without time zone NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS feature_flags_name_index ON feature_flags (name);
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS feature_flags jsonb NOT NULL DEFAULT '{}';
