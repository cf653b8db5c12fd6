-- Pools of named keys (issue: pools, organizations, hosted keys through the
-- API). A key gains a name, a priority (lower serves first), an admin state
-- (active or disabled; the row's own state column stays the write
-- lifecycle, pending or active) and an optional allow-list of models. The
-- audit trail names scope and key id; tokens may reach organizations.

-- +goose Up
ALTER TABLE provider_keys ADD COLUMN name text NOT NULL DEFAULT '' CHECK (char_length(name) <= 120);
ALTER TABLE provider_keys ADD COLUMN priority integer NOT NULL DEFAULT 100 CHECK (priority BETWEEN 0 AND 1000);
ALTER TABLE provider_keys ADD COLUMN key_state text NOT NULL DEFAULT 'active' CHECK (key_state IN ('active', 'disabled'));
ALTER TABLE provider_keys ADD COLUMN models text[] NOT NULL DEFAULT '{}' CHECK (cardinality(models) <= 64);
CREATE INDEX provider_keys_pool ON provider_keys (scope, scope_id, provider);

ALTER TABLE audit_events RENAME COLUMN workspace TO scope_id;
ALTER TABLE audit_events ADD COLUMN scope text NOT NULL DEFAULT ''
    CHECK (scope IN ('', 'workspace', 'organization', 'hosted'));
ALTER TABLE audit_events ADD COLUMN key_id text NOT NULL DEFAULT '';
-- Every v1 event with a workspace was a workspace's; '' is operator-wide.
-- (The append-only trigger forbids UPDATE, so it is lifted for this
-- statement inside the migration's transaction.)
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change;
UPDATE audit_events SET scope = 'workspace' WHERE scope_id <> '';
UPDATE audit_events SET key_id = 'default' WHERE scope_id <> '' AND provider <> '' AND action LIKE 'key.%';
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change;
DROP INDEX audit_events_workspace;
CREATE INDEX audit_events_scope ON audit_events (scope, scope_id, id DESC);

ALTER TABLE api_tokens ADD COLUMN organizations text[] NOT NULL DEFAULT '{}';
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_workspaces;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scopes CHECK (
    CASE role WHEN 'operator' THEN cardinality(workspaces) = 0 AND cardinality(organizations) = 0
              WHEN 'resolver' THEN cardinality(organizations) = 0
              ELSE cardinality(workspaces) + cardinality(organizations) > 0 END);

-- +goose Down
DELETE FROM api_tokens WHERE cardinality(organizations) > 0;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scopes;
ALTER TABLE api_tokens DROP COLUMN organizations;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_workspaces CHECK (
    CASE role WHEN 'operator' THEN cardinality(workspaces) = 0
              WHEN 'resolver' THEN true
              ELSE cardinality(workspaces) > 0 END);

DROP INDEX audit_events_scope;
CREATE INDEX audit_events_workspace ON audit_events (scope_id, id DESC);
ALTER TABLE audit_events DROP COLUMN key_id;
ALTER TABLE audit_events DROP COLUMN scope;
ALTER TABLE audit_events RENAME COLUMN scope_id TO workspace;

DROP INDEX provider_keys_pool;
ALTER TABLE provider_keys DROP COLUMN models;
ALTER TABLE provider_keys DROP COLUMN key_state;
ALTER TABLE provider_keys DROP COLUMN priority;
ALTER TABLE provider_keys DROP COLUMN name;
