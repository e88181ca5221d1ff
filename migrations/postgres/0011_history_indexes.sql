-- Reads that must not slow down as finished history piles up (a busy installation keeps
-- a million rows for its 30 days of retention).

-- The queue depth in /metrics: only rows still in the queue, whatever the history.
CREATE INDEX notifications_unfinished ON notifications (kind, created_at)
    WHERE status IN ('queued', 'delivering', 'awaiting_answer');

-- Retention deletes the oldest finished rows in small slices.
CREATE INDEX notifications_finished ON notifications (finished_at) WHERE finished_at IS NOT NULL;

-- `events list --user` uses notifications_email (lower(email)), made with the console's tables.
