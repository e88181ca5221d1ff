-- Every change of a backend's circuit breaker, oldest to newest, so that "why was nobody
-- called at 03:12?" can be answered after the fact (`events circuits`, the admin API).
-- Kept for `queue.retention`, like the notifications.
CREATE TABLE circuit_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    backend    TEXT   NOT NULL,
    state      TEXT   NOT NULL,  -- closed, open, half_open
    failures   BIGINT NOT NULL,  -- failures in a row at the change
    open_until BIGINT,           -- while open: when the next probe may go (Unix ms)
    error      TEXT,             -- the failure that opened it
    changed_at BIGINT NOT NULL
);
CREATE INDEX circuit_changes_changed_at ON circuit_changes (changed_at);
