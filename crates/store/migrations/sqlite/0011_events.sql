-- Every message devices sent (events, state reports, command answers) and their presence changes.
-- A message id is unique per device, so a resend after a lost acknowledgement is stored once.
-- JSON payloads are kept as their text (queryable with the JSON functions), anything else as bytes;
-- exactly one of the two body columns is set. No foreign key: events outlive nothing they depend on,
-- and an insert checks nothing it does not need.
CREATE TABLE device_events (
    sequence     INTEGER PRIMARY KEY,
    device_id    TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    received_at  BIGINT  NOT NULL,
    device_time  BIGINT,
    content_type TEXT    NOT NULL,
    body_json    TEXT,
    body_bytes   BLOB,
    UNIQUE (device_id, message_id)
);
-- Reading one device's events by time, in either direction, and paging by (time, sequence).
CREATE INDEX device_events_by_device_time ON device_events (device_id, received_at, sequence);
-- Retention deletes the oldest first.
CREATE INDEX device_events_by_time ON device_events (received_at);
