-- A message sent in parts (long SMS, long Telegram texts): how many parts went out, and a
-- digest of the backend and the parts they belong to, so a retry resumes after them.
ALTER TABLE notifications ADD COLUMN parts_sent BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN parts_digest TEXT;
