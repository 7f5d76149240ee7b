-- Warden's CA: the root and the intermediate, each with its private key sealed under the
-- configured key-encryption key. The root's key is NULL while it is kept offline.
CREATE TABLE ca_certificates (
    role            TEXT    PRIMARY KEY CHECK (role IN ('root', 'intermediate')),
    certificate_pem TEXT    NOT NULL,
    sealed_key      TEXT,
    created_at      BIGINT NOT NULL
);

-- Every certificate the CA issued: the inventory, and the source of the revocation list.
CREATE TABLE certificates (
    serial            TEXT    PRIMARY KEY,
    kind              TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    certificate_pem   TEXT    NOT NULL,
    revoked_at        BIGINT,
    revocation_reason TEXT
);
CREATE INDEX certificates_by_subject ON certificates (subject);
CREATE INDEX certificates_by_expiry ON certificates (not_after);

-- The number of the last revocation list signed (RFC 5280 section 5.2.3: it only grows).
CREATE TABLE crl_number (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    number BIGINT  NOT NULL
);
INSERT INTO crl_number (id, number) VALUES (1, 0);
