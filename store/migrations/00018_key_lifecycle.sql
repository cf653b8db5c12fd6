-- The key lifecycle (docs/lifecycle.md): expiry, rotation and revocation at
-- the provider. Nothing here is key material: the provider's id of a key (an
-- OpenAI service account id, an Anthropic API key id) names it at the
-- provider, as a key id names it in keybroker.
--
--   provider_keys.expires_at       when the key stops working (an admin's
--                                  word, or the provider's); not served after
--   provider_keys.provider_key_id  the key's id at its provider, when known
--   key_expiry_warnings            one row per key.expiring event sent: the
--                                  primary key makes every replica's attempt
--                                  after the first a no-op (sent once)
--   scope_lifecycle                a scope's rotateAfter (maximum key age)
--   key_rotations                  a rotation at the provider, each step
--                                  recorded before it is taken, so that a
--                                  restart resumes or rolls it back
--   provider_revocations           a revocation at the provider, retried
--                                  until the provider confirms it
--   key_usage_daily                resolves per key version, day and
--                                  resolver token, added in the batches
--                                  key_usage is (never a write per resolve)
--
-- The rotation runner's lease (one replica at a time resumes rotations and
-- retries revocations) joins admin_leases.

-- +goose Up
ALTER TABLE provider_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE provider_keys ADD COLUMN provider_key_id text CHECK (char_length(provider_key_id) BETWEEN 1 AND 200);

CREATE TABLE key_expiry_warnings (
    scope      text NOT NULL,
    scope_id   text NOT NULL,
    provider   text NOT NULL,
    key_id     text NOT NULL,
    expires_at timestamptz NOT NULL,
    step_days  integer NOT NULL CHECK (step_days IN (1, 7, 14)),
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_id, provider, key_id, expires_at, step_days)
);

CREATE TABLE scope_lifecycle (
    scope                text NOT NULL CHECK (scope IN ('workspace', 'organization', 'hosted')),
    scope_id             text NOT NULL,
    rotate_after_seconds bigint CHECK (rotate_after_seconds BETWEEN 3600 AND 315360000),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    updated_by           text NOT NULL DEFAULT '',
    PRIMARY KEY (scope, scope_id)
);

CREATE TABLE key_rotations (
    id                   uuid PRIMARY KEY,
    scope                text NOT NULL,
    scope_id             text NOT NULL,
    provider             text NOT NULL,
    key_id               text NOT NULL,
    new_key_id           text NOT NULL,
    admin_key_id         text NOT NULL,
    trigger              text NOT NULL CHECK (trigger IN ('manual', 'schedule')),
    step                 text NOT NULL CHECK (char_length(step) BETWEEN 1 AND 40),
    state                text NOT NULL CHECK (state IN ('running', 'done', 'failed', 'rolled_back')),
    account_name         text NOT NULL CHECK (char_length(account_name) BETWEEN 1 AND 200),
    new_provider_key_id  text CHECK (char_length(new_provider_key_id) <= 200),
    old_provider_key_id  text CHECK (char_length(old_provider_key_id) <= 200),
    grace_seconds        bigint NOT NULL CHECK (grace_seconds >= 0),
    delete_after         timestamptz,
    claimed_until        timestamptz,
    error                text NOT NULL DEFAULT '' CHECK (char_length(error) <= 500),
    started_by           text NOT NULL,
    started_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
-- One rotation of a key runs at a time.
CREATE UNIQUE INDEX key_rotations_running ON key_rotations (scope, scope_id, provider, key_id) WHERE state = 'running';

CREATE TABLE provider_revocations (
    id               uuid PRIMARY KEY,
    scope            text NOT NULL,
    scope_id         text NOT NULL,
    provider         text NOT NULL,
    key_id           text NOT NULL,
    provider_key_id  text NOT NULL CHECK (char_length(provider_key_id) BETWEEN 1 AND 200),
    admin_key_id     text NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text NOT NULL DEFAULT '' CHECK (char_length(last_error) <= 500),
    next_attempt_at  timestamptz NOT NULL,
    requested_by     text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_revocations_pending ON provider_revocations (next_attempt_at) WHERE state = 'pending';

CREATE TABLE key_usage_daily (
    scope     text NOT NULL CHECK (scope IN ('workspace', 'organization', 'hosted')),
    scope_id  text NOT NULL,
    provider  text NOT NULL,
    key_id    text NOT NULL,
    version   integer NOT NULL CHECK (version >= 0),
    day       date NOT NULL,
    caller    text NOT NULL CHECK (char_length(caller) <= 64),
    resolves  bigint NOT NULL CHECK (resolves >= 0),
    PRIMARY KEY (scope, scope_id, provider, key_id, version, day, caller)
);

ALTER TABLE admin_leases DROP CONSTRAINT admin_leases_name_check;
ALTER TABLE admin_leases ADD CONSTRAINT admin_leases_name_check CHECK (name IN ('audit-stream', 'reconciler', 'lifecycle'));

-- +goose Down
DELETE FROM admin_leases WHERE name = 'lifecycle';
ALTER TABLE admin_leases DROP CONSTRAINT admin_leases_name_check;
ALTER TABLE admin_leases ADD CONSTRAINT admin_leases_name_check CHECK (name IN ('audit-stream', 'reconciler'));
DROP TABLE key_usage_daily;
DROP TABLE provider_revocations;
DROP TABLE key_rotations;
DROP TABLE scope_lifecycle;
DROP TABLE key_expiry_warnings;
ALTER TABLE provider_keys DROP COLUMN provider_key_id;
ALTER TABLE provider_keys DROP COLUMN expires_at;
