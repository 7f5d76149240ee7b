-- The audit journal (docs/audit.md). Entries are numbered and each carries the hash of the one
-- before; the head row names the last one and is locked by every append, so appends from several
-- connections (or replicas) chain one after the other. Entries are never updated, and removed only
-- with their whole segment, after retention marked the segment's checkpoint: the triggers refuse
-- anything else. (Someone who can drop triggers can still change rows; the hash chain and the
-- signed checkpoints are what reveal it.)
CREATE TABLE audit_entries (
    seq         INTEGER PRIMARY KEY,
    at          BIGINT  NOT NULL,
    actor_kind  TEXT    NOT NULL,
    actor_id    TEXT    NOT NULL,
    actor_label TEXT,
    action      TEXT    NOT NULL,
    target_kind TEXT    NOT NULL,
    target_id   TEXT    NOT NULL,
    device_id   TEXT,
    outcome     TEXT    NOT NULL,
    source      TEXT,
    request_id  TEXT,
    detail      TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
-- An owner's access log: one device's entries in order.
CREATE INDEX audit_entries_by_device ON audit_entries (device_id, seq) WHERE device_id IS NOT NULL;
CREATE INDEX audit_entries_by_actor ON audit_entries (actor_kind, actor_id, seq);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Signed heads; each closes the segment first_seq..last_seq. pruned_at: when retention removed the
-- segment's entries (the checkpoint stays, as the anchor of what remains).
CREATE TABLE audit_checkpoints (
    number    BIGINT  PRIMARY KEY,
    first_seq BIGINT  NOT NULL,
    last_seq  BIGINT  NOT NULL,
    last_hash TEXT    NOT NULL,
    at        BIGINT  NOT NULL,
    key_id    TEXT    NOT NULL,
    signature TEXT    NOT NULL,
    pruned_at BIGINT
);

-- Keys that sign checkpoints: the public key in hex, the private key sealed under the
-- key-encryption key.
CREATE TABLE audit_keys (
    id             TEXT   PRIMARY KEY,
    public_key     TEXT   NOT NULL,
    sealed_private TEXT   NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TRIGGER audit_entries_never_updated BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are never updated');
END;

CREATE TRIGGER audit_entries_removed_only_by_retention BEFORE DELETE ON audit_entries
WHEN NOT EXISTS (
    SELECT 1 FROM audit_checkpoints
    WHERE pruned_at IS NOT NULL AND OLD.seq BETWEEN first_seq AND last_seq
)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are removed only with their segment, by retention');
END;
