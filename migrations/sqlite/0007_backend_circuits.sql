-- The circuit breaker of each backend as last changed by any server, for the admin API and
-- `notify test`; the servers decide from their own memory and only write changes here.
CREATE TABLE backend_circuits (
    backend TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    failures BIGINT NOT NULL,
    opens BIGINT NOT NULL DEFAULT 0,
    open_until BIGINT,
    last_error TEXT,
    changed_at BIGINT NOT NULL
);
