-- v3 platform scale: the organizations named by workspace settings, in
-- order, for the scope listing's pages (store.ListScopes reads each source
-- in index order up to a page instead of sorting every scope).

-- +goose Up
CREATE INDEX workspace_settings_organization ON workspace_settings (organization) WHERE organization IS NOT NULL;

-- +goose Down
DROP INDEX workspace_settings_organization;
