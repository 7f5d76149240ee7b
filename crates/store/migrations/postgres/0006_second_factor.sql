-- TOTP second factor: the confirmed secret, the last time step used (so a code works once), and a
-- secret being set up but not yet confirmed.
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;
ALTER TABLE users ADD COLUMN totp_pending_secret TEXT;

-- Single-use recovery codes, by the SHA-256 of their normal form.
CREATE TABLE recovery_codes (
    user_id   TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT    NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- A session whose password was right but whose second factor is still to come.
ALTER TABLE sessions ADD COLUMN second_factor_pending BIGINT NOT NULL DEFAULT 0;
