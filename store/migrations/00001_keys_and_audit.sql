-- Key metadata and the audit trail. No column ever holds a key or a
-- reversible form of it: masked_key is the preview rule of docs/architecture.md
-- (at most the first 6 and last 4 characters), fingerprint is an HMAC-SHA256
-- with a server-side pepper.

-- +goose Up
CREATE TABLE provider_keys (
    workspace   text NOT NULL CHECK (workspace ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    provider    text NOT NULL CHECK (provider ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- 'active': the columns below describe the current KV version.
    -- 'pending': a change is in flight (pending_*); the columns below still
    -- describe the last version known to be current (kv_version 0: none).
    state       text NOT NULL CHECK (state IN ('pending', 'active')),
    kv_version  integer NOT NULL DEFAULT 0 CHECK (kv_version >= 0),
    masked_key  text NOT NULL DEFAULT '' CHECK (length(masked_key) <= 16),
    fingerprint text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL,
    pending_id          uuid,
    pending_op          text CHECK (pending_op IN ('set', 'delete', 'rollback')),
    pending_since       timestamptz,
    pending_by          text,
    pending_masked_key  text CHECK (length(pending_masked_key) <= 16),
    pending_fingerprint text,
    PRIMARY KEY (workspace, provider),
    CHECK ((state = 'pending') = (pending_id IS NOT NULL)),
    CHECK (state = 'pending' OR kv_version > 0)
);
CREATE INDEX provider_keys_pending ON provider_keys (pending_since) WHERE state = 'pending';

CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    workspace   text NOT NULL,
    provider    text NOT NULL DEFAULT '', -- '' for workspace-wide events
    action      text NOT NULL,
    actor       text NOT NULL,
    remote_addr text NOT NULL DEFAULT '',
    outcome     text NOT NULL,
    kv_version  integer,
    masked_key  text CHECK (length(masked_key) <= 16),
    fingerprint text,
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_workspace ON audit_events (workspace, id DESC);

-- The audit trail is append-only, also for keybroker's own database role.
-- +goose StatementBegin
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- +goose Down
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP TABLE provider_keys;
