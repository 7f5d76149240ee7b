-- Staged rollouts of a release (docs/firmware.md). The target is fixed when the rollout is made:
-- its devices in a shuffled order (position), of which each stage offers the first share.
CREATE TABLE rollouts (
    rollout_id        TEXT    NOT NULL PRIMARY KEY,
    release_id        TEXT    NOT NULL REFERENCES firmware_releases (release_id),
    stages            TEXT    NOT NULL,
    soak_seconds      BIGINT,
    failure_threshold INTEGER NOT NULL,
    allow_downgrade   INTEGER NOT NULL,
    state             TEXT    NOT NULL,
    stage             INTEGER NOT NULL,
    stage_done_at     BIGINT,
    reason            TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);
CREATE INDEX rollouts_by_state ON rollouts (state);

CREATE TABLE rollout_devices (
    rollout_id TEXT    NOT NULL REFERENCES rollouts (rollout_id),
    device_id  TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_by_position ON rollout_devices (rollout_id, position);
