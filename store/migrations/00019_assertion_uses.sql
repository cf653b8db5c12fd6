-- v3 identity: the first use of each platform assertion (and of each ID
-- token of `keybroker login`, under platform 'oidc-cli:'), shared by the
-- admin replicas (package auth/assertion, handlers' CLI sign-in), so that
-- one replayed to another replica within its lifetime is refused there
-- too. A row keeps the platform's id and a SHA-256 (of the assertion's jti,
-- or of the ID token's claims), never the token, until the token's expiry
-- by the database's clock; rows five minutes past it are deleted by the
-- replicas.
--
-- The runtime role (store.GrantRuntime) may INSERT rows that expire within
-- 15 minutes, and DELETE only rows five minutes past their expiry
-- (row-level security): with the admin pods' database password one can
-- neither forget a live use to let a replay through (a replica whose clock
-- runs behind the database's included) nor fill the table with rows that
-- never expire. The resolver role gets nothing.

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
CREATE POLICY assertion_uses_record ON assertion_uses FOR INSERT WITH CHECK (expires_at <= now() + interval '15 minutes');
CREATE POLICY assertion_uses_prune ON assertion_uses FOR DELETE USING (expires_at < now() - interval '5 minutes');

-- +goose Down
DROP TABLE assertion_uses;
