-- Tracked on-call schedules and the last known on-duty set of each (issue 5).
CREATE TABLE schedules (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    ical_url TEXT NOT NULL,
    transport TEXT NOT NULL,
    callback_url TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    calendar_name TEXT,
    on_duty TEXT,
    on_duty_detail TEXT,
    changed_at BIGINT,
    last_success_at BIGINT,
    last_error TEXT,
    last_error_at BIGINT,
    created_at BIGINT NOT NULL
);

-- Pending POSTs of the callback transport, retried with backoff until delivered.
CREATE TABLE schedule_callbacks (
    id BIGSERIAL PRIMARY KEY,
    schedule_id BIGINT NOT NULL,
    url TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX schedule_callbacks_due ON schedule_callbacks (delivered_at, next_attempt_at);

-- Advance reminders already queued (one per schedule, person and shift start): the
-- primary key makes "remind once" hold with any number of replicas.
CREATE TABLE schedule_reminders (
    schedule_id BIGINT NOT NULL,
    person_key TEXT NOT NULL,
    shift_start BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (schedule_id, person_key, shift_start)
);
