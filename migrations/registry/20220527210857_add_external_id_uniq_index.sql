-- A constraint that 20221223010058 drops again; skipped when the end state is already reached.
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint WHERE conrelid = 'tenants'::regclass AND conname = 'uniq_external_id'
  ) THEN
    ALTER TABLE tenants ADD CONSTRAINT uniq_external_id UNIQUE (external_id);
  END IF;
END
$$;
