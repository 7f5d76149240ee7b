-- Every message devices sent (events, state reports, command answers) and their presence changes.
-- A message id is unique per device, so a resend after a lost acknowledgement is stored once.
-- JSON payloads are kept as their text, byte for byte (cast to jsonb where a query looks inside),
-- anything else as bytes; exactly one of the two body columns is set. No foreign key: an insert
-- checks nothing it does not need. How this table grows to billions of rows: docs/events.md.
CREATE TABLE device_events (
    sequence     BIGINT  GENERATED ALWAYS AS IDENTITY,
    device_id    TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    received_at  BIGINT  NOT NULL,
    device_time  BIGINT,
    content_type TEXT    NOT NULL,
    body_json    TEXT,
    body_bytes   BYTEA,
    PRIMARY KEY (device_id, message_id)
);
-- Reading one device's events by time, in either direction, and paging by (time, sequence).
CREATE INDEX device_events_by_device_time ON device_events (device_id, received_at, sequence);
-- Retention deletes the oldest first; rows arrive in time order, so a BRIN index stays tiny.
CREATE INDEX device_events_by_time ON device_events USING brin (received_at);
