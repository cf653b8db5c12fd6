-- Proxy tokens are stateless (signed, not stored), so ending one before its
-- expiry takes a record: its id and expiry, kept until it would have
-- expired anyway. Every replica holds the unexpired ones in memory and
-- learns of new ones through NOTIFY. The serving roles may add a
-- revocation, never remove one.

-- +goose Up
CREATE TABLE proxy_token_revocations (
    token_id   text PRIMARY KEY CHECK (token_id ~ '^ptk_[0-9a-f]{16}$'),
    workspace  text NOT NULL CHECK (workspace = '' OR workspace ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    revoked_by text NOT NULL CHECK (char_length(revoked_by) <= 128)
);
CREATE INDEX proxy_token_revocations_expires ON proxy_token_revocations (expires_at);

-- +goose Down
DROP TABLE proxy_token_revocations;
