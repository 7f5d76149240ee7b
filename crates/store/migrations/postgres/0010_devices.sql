-- Device models, each with an optional JSON Schema for its desired settings.
CREATE TABLE device_models (
    name            TEXT    NOT NULL PRIMARY KEY,
    settings_schema TEXT,
    created_at      BIGINT  NOT NULL
);

-- The registry. Secrets are kept only as keyed hashes; a used claim code's hash stays until the
-- device is released, so a second claim with it can be told "already claimed".
CREATE TABLE devices (
    device_id        TEXT    NOT NULL PRIMARY KEY,
    model            TEXT    NOT NULL REFERENCES device_models (name),
    owner_id         TEXT    REFERENCES users (id) ON DELETE SET NULL,
    password_hash    TEXT    NOT NULL,
    claim_code_hash  TEXT,
    firmware_version TEXT,
    created_at       BIGINT  NOT NULL,
    claimed_at       BIGINT,
    last_seen_at     BIGINT,
    online           BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_owner ON devices (owner_id);

-- Technician grants: one device, a set of actions, an expiry; revoked grants are kept for the record.
CREATE TABLE device_grants (
    grant_id   TEXT    NOT NULL PRIMARY KEY,
    device_id  TEXT    NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    grantee_id TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    granted_by TEXT    NOT NULL,
    actions    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX device_grants_by_grantee ON device_grants (grantee_id, expires_at);
CREATE INDEX device_grants_by_device ON device_grants (device_id);

-- Desired settings (versioned, written by people) and reported state (written by the device).
CREATE TABLE device_state (
    device_id          TEXT    NOT NULL PRIMARY KEY REFERENCES devices (device_id) ON DELETE CASCADE,
    desired            TEXT    NOT NULL,
    desired_version    BIGINT  NOT NULL,
    desired_updated_at BIGINT,
    reported           TEXT    NOT NULL,
    reported_at        BIGINT
);

-- Commands to devices and their answers.
CREATE TABLE device_commands (
    command_id  TEXT    NOT NULL PRIMARY KEY,
    device_id   TEXT    NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    sent_by     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    response    TEXT,
    answered_at BIGINT
);
CREATE INDEX device_commands_by_device ON device_commands (device_id, expires_at);
