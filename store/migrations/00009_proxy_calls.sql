-- Calls through the credential proxy, for the platform's billing and
-- audits: which key served each call (scope, key id, version), what the
-- provider answered, how long it took, whether it was BYOK. Each replica
-- keeps them in memory and adds them here in batches. Never a key, a token
-- or a body.

-- +goose Up
CREATE TABLE proxy_calls (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL,
    workspace    text NOT NULL CHECK (workspace ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    provider     text NOT NULL CHECK (provider ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    scope        text NOT NULL CHECK (scope IN ('', 'workspace', 'organization', 'hosted')),
    key_id       text NOT NULL CHECK (key_id = '' OR key_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    key_version  integer NOT NULL CHECK (key_version >= 0),
    status       integer NOT NULL CHECK (status BETWEEN 0 AND 999),
    duration_ms  double precision NOT NULL CHECK (duration_ms >= 0),
    byok         boolean NOT NULL,
    retried      boolean NOT NULL,
    bytes_out    bigint NOT NULL CHECK (bytes_out >= 0),
    caller       text NOT NULL CHECK (char_length(caller) <= 64),
    request_id   text NOT NULL CHECK (char_length(request_id) <= 64)
);
CREATE INDEX proxy_calls_workspace_at ON proxy_calls (workspace, at);

-- +goose Down
DROP TABLE proxy_calls;
