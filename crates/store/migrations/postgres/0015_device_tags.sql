-- Tags an operator puts on devices ("beta", "region-eu") to pick them, for example as the target
-- of a rollout (docs/firmware.md); and whether an offer lets a device go to an older version, so
-- that an offer sent again (after a restart of the broker) says what it said the first time.
CREATE TABLE device_tags (
    device_id TEXT NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    tag       TEXT NOT NULL,
    PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_by_tag ON device_tags (tag, device_id);
CREATE INDEX devices_by_model ON devices (model, device_id);

ALTER TABLE device_updates ADD COLUMN allow_downgrade INTEGER NOT NULL DEFAULT 0;
