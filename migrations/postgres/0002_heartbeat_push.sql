-- Integrations OnCall creates (its heartbeat). `heartbeat_token` is the secret in the
-- heartbeat link; `state` moves new → alive on the first beat, alive → silent when beats
-- stop, silent → alive when they resume. Each transition is one conditional UPDATE, so
-- exactly one process announces it.
CREATE TABLE integrations (
    id               BIGSERIAL PRIMARY KEY,
    public_id        TEXT   NOT NULL UNIQUE,
    name             TEXT   NOT NULL UNIQUE,
    kind             TEXT   NOT NULL,
    heartbeat_token  TEXT   NOT NULL UNIQUE,
    state            TEXT   NOT NULL DEFAULT 'new',
    last_beat_at     BIGINT,
    state_changed_at BIGINT,
    created_at       BIGINT NOT NULL
);

-- Mobile devices by push registration token; `user_id` is a directory public id, NULL while
-- unassigned (pushes then go to the fallback route).
CREATE TABLE devices (
    id            BIGSERIAL PRIMARY KEY,
    token         TEXT   NOT NULL UNIQUE,
    user_id       TEXT,
    label         TEXT   NOT NULL DEFAULT '',
    first_seen_at BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
