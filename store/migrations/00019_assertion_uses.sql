-- v3 identity: the first use of each platform assertion, shared by the
-- admin replicas (package auth/assertion), so that an assertion replayed
-- to another replica within its lifetime (at most five minutes) is refused
-- there too. A row keeps the platform's id and the SHA-256 of the
-- assertion's jti (never the assertion), until the assertion's expiry;
-- rows past it are deleted by the replicas.
--
-- The runtime role (store.GrantRuntime) may INSERT, and DELETE only rows
-- past their expiry (row-level security): with the admin pods' database
-- password one cannot forget a live use to let a replay through. The
-- resolver role gets nothing.

-- +goose Up
CREATE TABLE assertion_uses (
    platform   text NOT NULL CHECK (char_length(platform) BETWEEN 1 AND 64),
    jti_hash   bytea NOT NULL CHECK (length(jti_hash) = 32),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (platform, jti_hash)
);
CREATE INDEX assertion_uses_expiry ON assertion_uses (expires_at);
ALTER TABLE assertion_uses ENABLE ROW LEVEL SECURITY;
CREATE POLICY assertion_uses_read ON assertion_uses FOR SELECT USING (true);
CREATE POLICY assertion_uses_record ON assertion_uses FOR INSERT WITH CHECK (true);
CREATE POLICY assertion_uses_prune ON assertion_uses FOR DELETE USING (expires_at < now());

-- +goose Down
DROP TABLE assertion_uses;
