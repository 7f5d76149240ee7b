-- Grants revoked as a whole (a reused code or refresh token, a revoked refresh token): every token
-- issued under them is inactive.
CREATE TABLE revoked_grants (
    grant_id   TEXT    NOT NULL PRIMARY KEY,
    revoked_at BIGINT NOT NULL
);

-- Access tokens revoked one by one (RFC 7009), kept until they would have expired anyway.
CREATE TABLE revoked_access_tokens (
    jti        TEXT    NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_access_tokens_by_expiry ON revoked_access_tokens (expires_at);
