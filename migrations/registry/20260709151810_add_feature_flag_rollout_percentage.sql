ALTER TABLE feature_flags
  ADD COLUMN IF NOT EXISTS rollout_percentage integer NOT NULL DEFAULT 100,
  ADD COLUMN IF NOT EXISTS bucket_key varchar(255);
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_constraint
    WHERE conrelid = 'feature_flags'::regclass
      AND conname = 'rollout_percentage_must_be_between_0_and_100'
  ) THEN
    ALTER TABLE feature_flags
      ADD CONSTRAINT rollout_percentage_must_be_between_0_and_100
      CHECK (rollout_percentage >= 0 AND rollout_percentage <= 100);
  END IF;
END
$$;
