-- Web console sign-ins: only a hash of the session id is stored, so a copy of the database
-- cannot be replayed as a cookie. `user_id` is empty for an admin signed in with the token.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    admin BIGINT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- One-time codes (sign-in and phone verification), salted and hashed; `target` is the phone
-- number being verified, empty for a sign-in code.
CREATE TABLE console_codes (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    user_id TEXT NOT NULL,
    target TEXT NOT NULL,
    salt TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    used BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_codes_user ON console_codes (user_id, purpose, created_at);

-- A profile lists the person's last notifications by email (a phone verification code is
-- addressed to the number, with the person's email but no user id).
CREATE INDEX notifications_email ON notifications (lower(email));
