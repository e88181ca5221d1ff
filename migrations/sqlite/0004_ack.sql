-- Alert groups OnCall told the relay about through its outgoing webhooks, with their latest
-- state, so that a reply can be matched to an open page and answered with who acted.
CREATE TABLE alert_groups (
    id         TEXT PRIMARY KEY,  -- OnCall's public key, I + 12 characters
    title      TEXT NOT NULL DEFAULT '',
    state      TEXT NOT NULL DEFAULT 'firing',  -- firing, acknowledged, resolved, silenced
    state_by   TEXT,              -- who changed the state last, as OnCall named them
    permalink  TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX alert_groups_updated ON alert_groups (updated_at);

-- Who was paged for which alert group (from personal-notification and escalation webhooks).
CREATE TABLE pages (
    alert_group_id TEXT   NOT NULL,
    email_key      TEXT   NOT NULL,  -- lower-cased email of the person paged
    seen_at        BIGINT NOT NULL,
    PRIMARY KEY (email_key, alert_group_id)
);
CREATE INDEX pages_seen ON pages (seen_at);

-- What people did from the channel that reached them, and what OnCall answered.
CREATE TABLE page_actions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    channel        TEXT   NOT NULL,  -- e.g. sms:<backend>
    email          TEXT   NOT NULL DEFAULT '',
    alert_group_id TEXT,
    action         TEXT   NOT NULL,
    outcome        TEXT   NOT NULL,  -- done, refused, not-found, throttled, forbidden, failed, unmatched, unknown
    detail         TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX page_actions_created ON page_actions (created_at);

-- Replies come from phone numbers.
CREATE INDEX directory_users_phone ON directory_users (phone_number);

-- Keys the relay made for itself and every replica shares (the one-click links' signing key).
CREATE TABLE relay_secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- One-click links already used: each works once.
CREATE TABLE used_links (
    nonce   TEXT PRIMARY KEY,
    used_at BIGINT NOT NULL
);
CREATE INDEX used_links_used ON used_links (used_at);

-- Work that one replica at a time does (e.g. polling a Telegram bot's updates): the holder
-- renews its lease; another replica takes over once it runs out.
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT   NOT NULL,
    until  BIGINT NOT NULL
);
