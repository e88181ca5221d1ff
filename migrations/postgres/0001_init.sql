-- Users OnCall sees through the cloud API. `public_id` is the id sent to OnCall (at most 20
-- characters); `email_key` is the lower-cased email so that lookups are case-insensitive.
CREATE TABLE directory_users (
    id           BIGSERIAL PRIMARY KEY,
    public_id    TEXT   NOT NULL UNIQUE,
    name         TEXT   NOT NULL DEFAULT '',
    username     TEXT   NOT NULL DEFAULT '',
    email        TEXT   NOT NULL,
    email_key    TEXT   NOT NULL UNIQUE,
    phone_number TEXT,
    active       BIGINT NOT NULL DEFAULT 1,
    role         TEXT   NOT NULL DEFAULT 'editor',
    timezone     TEXT   NOT NULL DEFAULT 'UTC',
    -- Per-backend addresses as a JSON object: {"telegram": "12345", "email": "a@b", "route": "sms_gw"}
    contacts     TEXT   NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Bumped by every directory write so that servers notice changes made by other processes.
CREATE TABLE directory_version (
    id      BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO directory_version (id, version) VALUES (1, 0);

-- The durable queue and the events log in one: a row per accepted notification.
-- `due_at` is when a worker may claim it next (NULL once final); a claim pushes it one lease
-- ahead, so a row whose worker died becomes due again by itself.
CREATE TABLE notifications (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT   NOT NULL,
    user_id      TEXT   NOT NULL DEFAULT '',
    email        TEXT   NOT NULL DEFAULT '',
    name         TEXT   NOT NULL DEFAULT '',
    phone_number TEXT,
    message      TEXT   NOT NULL,
    payload      TEXT,  -- kind-specific details as JSON (a push's title, data, device token)
    route        TEXT,  -- backend chosen at acceptance; NULL: the default for the kind
    dedup_key    TEXT,  -- hash of user, kind and message, for the duplicate window
    status       TEXT   NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    stage        BIGINT NOT NULL DEFAULT 0,  -- index into the kind's route (fallback step)
    stage_attempts BIGINT NOT NULL DEFAULT 0, -- attempts on the current step's backend
    due_at       BIGINT,
    claim        BIGINT,
    backend      TEXT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX notifications_due ON notifications (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX notifications_created ON notifications (created_at);
CREATE INDEX notifications_user_kind ON notifications (user_id, kind, created_at);
CREATE INDEX notifications_dedup ON notifications (dedup_key, created_at) WHERE dedup_key IS NOT NULL;

-- Every delivery attempt, whatever its outcome.
CREATE TABLE delivery_attempts (
    id              BIGSERIAL PRIMARY KEY,
    notification_id BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt         BIGINT NOT NULL,
    backend         TEXT   NOT NULL,
    outcome         TEXT   NOT NULL,
    error           TEXT,
    started_at      BIGINT NOT NULL,
    duration_ms     BIGINT NOT NULL
);
CREATE INDEX delivery_attempts_notification ON delivery_attempts (notification_id);
