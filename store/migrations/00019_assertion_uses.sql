-- v3 identity: the first use of each platform assertion, shared by the
-- admin replicas (package auth/assertion), so that an assertion replayed
-- to another replica within its lifetime (at most five minutes) is refused
-- there too. A row keeps the platform's id and the SHA-256 of the
-- assertion's jti (never the assertion), until the assertion's expiry;
-- rows past it are deleted by the replicas.
--
-- The runtime role (store.GrantRuntime) may INSERT, and DELETE expired
-- rows; the resolver role gets nothing.

-- +goose Up
CREATE TABLE assertion_uses (
    platform   text NOT NULL CHECK (char_length(platform) BETWEEN 1 AND 64),
    jti_hash   bytea NOT NULL CHECK (length(jti_hash) = 32),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (platform, jti_hash)
);
CREATE INDEX assertion_uses_expiry ON assertion_uses (expires_at);

-- +goose Down
DROP TABLE assertion_uses;
