-- Keys are named like broker.KeyRef: a scope (workspace, organization,
-- hosted), its id ('' for hosted), a provider and a key id. The v1 rows
-- are a workspace's key 'default'.

-- +goose Up
ALTER TABLE provider_keys RENAME COLUMN workspace TO scope_id;
ALTER TABLE provider_keys DROP CONSTRAINT provider_keys_workspace_check;
ALTER TABLE provider_keys ADD COLUMN scope text NOT NULL DEFAULT 'workspace'
    CHECK (scope IN ('workspace', 'organization', 'hosted'));
ALTER TABLE provider_keys ADD COLUMN key_id text NOT NULL DEFAULT 'default'
    CHECK (key_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$');
ALTER TABLE provider_keys ADD CONSTRAINT provider_keys_scope_id
    CHECK ((scope = 'hosted' AND scope_id = '') OR (scope <> 'hosted' AND scope_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'));
ALTER TABLE provider_keys DROP CONSTRAINT provider_keys_pkey;
ALTER TABLE provider_keys ADD PRIMARY KEY (scope, scope_id, provider, key_id);

-- +goose Down
ALTER TABLE provider_keys DROP CONSTRAINT provider_keys_pkey;
ALTER TABLE provider_keys DROP CONSTRAINT provider_keys_scope_id;
DELETE FROM provider_keys WHERE scope <> 'workspace' OR key_id <> 'default';
ALTER TABLE provider_keys DROP COLUMN key_id;
ALTER TABLE provider_keys DROP COLUMN scope;
ALTER TABLE provider_keys RENAME COLUMN scope_id TO workspace;
ALTER TABLE provider_keys ADD CONSTRAINT provider_keys_workspace_check CHECK (workspace ~ '^[a-z0-9][a-z0-9_-]{0,62}$');
ALTER TABLE provider_keys ADD PRIMARY KEY (workspace, provider);
