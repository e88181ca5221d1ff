-- Whether a call was answered, where the provider tells (`answered`, `no-answer`, `busy`,
-- `failed`, `canceled`; `awaiting` while a route step waits for it, `no-status` when none came
-- in time). `answer_deadline` is set while a step that requires an answer waits: the row is due
-- again at that time, and a worker that claims it settles the step instead of delivering again.
ALTER TABLE notifications ADD COLUMN answer TEXT;
ALTER TABLE notifications ADD COLUMN answer_deadline BIGINT;
