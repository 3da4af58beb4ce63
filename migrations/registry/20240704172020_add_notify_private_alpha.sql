ALTER TABLE tenants ADD COLUMN IF NOT EXISTS notify_private_alpha boolean DEFAULT false;
