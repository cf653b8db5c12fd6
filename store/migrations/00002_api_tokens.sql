-- Bearer tokens of API callers, stored as SHA-256 hashes only; and the
-- request id on audit events.

-- +goose Up
CREATE TABLE api_tokens (
    id          text PRIMARY KEY CHECK (id ~ '^tok_[0-9a-f]{16}$'),
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role        text NOT NULL CHECK (role IN ('operator', 'admin', 'reader', 'resolver')),
    workspaces  text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz,
    -- admin and reader tokens name their workspaces; the others name none.
    CHECK ((role IN ('admin', 'reader')) = (cardinality(workspaces) > 0))
);

ALTER TABLE audit_events ADD COLUMN request_id text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE audit_events DROP COLUMN request_id;
DROP TABLE api_tokens;
