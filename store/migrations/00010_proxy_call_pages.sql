-- Pages of proxied calls (GET /v1/workspaces/{ws}/proxy-calls and the
-- operator's GET /v1/proxy-calls) walk ids newest first, per workspace or
-- over all of them; the owner's retention (keybroker proxy-calls prune)
-- deletes by age.

-- +goose Up
DROP INDEX proxy_calls_workspace_at;
CREATE INDEX proxy_calls_workspace_id ON proxy_calls (workspace, id);
CREATE INDEX proxy_calls_at ON proxy_calls (at);

-- +goose Down
DROP INDEX proxy_calls_at;
DROP INDEX proxy_calls_workspace_id;
CREATE INDEX proxy_calls_workspace_at ON proxy_calls (workspace, at);
