-- A counter that every revocation raises in the transaction that records it, so that caches of
-- "this token is active" in every Warden process can notice a revocation with one cheap read.
CREATE TABLE revocation_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT  NOT NULL
);
INSERT INTO revocation_epoch (id, epoch) VALUES (1, 0);
