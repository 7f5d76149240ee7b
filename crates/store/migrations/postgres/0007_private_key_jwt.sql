-- A client that authenticates with a signed JWT (private_key_jwt) registers its public keys.
ALTER TABLE oauth_clients ADD COLUMN jwks TEXT;

-- Client assertions seen, by client and jti, until they expire: each works once.
CREATE TABLE used_client_assertions (
    client_id  TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX used_client_assertions_by_expiry ON used_client_assertions (expires_at);
