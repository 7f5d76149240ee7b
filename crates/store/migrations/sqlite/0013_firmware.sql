-- Firmware updates (docs/firmware.md). The signing keys have the token keys' timeline; their
-- private_pem holds the key sealed under the key-encryption key.
CREATE TABLE firmware_keys (
    kid         TEXT   NOT NULL PRIMARY KEY,
    private_pem TEXT   NOT NULL,
    public_x    TEXT   NOT NULL,
    public_y    TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    usable_from BIGINT NOT NULL,
    retired_at  BIGINT
);

-- A release: the file lives in the firmware directory under its SHA-256; the manifest is the
-- signed JWS devices are sent.
CREATE TABLE firmware_releases (
    release_id TEXT   NOT NULL PRIMARY KEY,
    model      TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT   NOT NULL,
    notes      TEXT   NOT NULL,
    manifest   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (model, version)
);

-- One device's way through one release: offered, downloading, installing, succeeded or failed.
CREATE TABLE device_updates (
    device_id  TEXT   NOT NULL,
    release_id TEXT   NOT NULL REFERENCES firmware_releases (release_id),
    state      TEXT   NOT NULL,
    progress   INTEGER,
    reason     TEXT,
    offered_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, release_id)
);
CREATE INDEX device_updates_by_release ON device_updates (release_id, state);
