-- Token signing keys and their timeline (see the tokens crate).
CREATE TABLE signing_keys (
    kid         TEXT    NOT NULL PRIMARY KEY,
    private_pem TEXT    NOT NULL,
    public_x    TEXT    NOT NULL,
    public_y    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    usable_from INTEGER NOT NULL,
    retired_at  INTEGER
) STRICT;

-- OAuth clients; secrets only as keyed hashes.
CREATE TABLE oauth_clients (
    client_id      TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('confidential', 'public')),
    secret_hash    TEXT,
    allowed_scopes TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;
