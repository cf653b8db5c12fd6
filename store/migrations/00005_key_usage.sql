-- Usage per key: resolves counted in each replica's memory and added here
-- in batches (never a write per resolve), and when the key was last used.
-- Keyed like a key: scope, scope id ('' for hosted), provider, key id.

-- +goose Up
CREATE TABLE key_usage (
    scope        text NOT NULL CHECK (scope IN ('workspace', 'organization', 'hosted')),
    scope_id     text NOT NULL,
    provider     text NOT NULL CHECK (provider ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    key_id       text NOT NULL CHECK (key_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    resolves     bigint NOT NULL DEFAULT 0 CHECK (resolves >= 0),
    last_used_at timestamptz NOT NULL,
    PRIMARY KEY (scope, scope_id, provider, key_id)
);

-- +goose Down
DROP TABLE key_usage;
