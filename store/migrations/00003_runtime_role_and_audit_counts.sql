-- v2 hardening: aggregated denials carry a count, and a caller's own
-- X-Request-Id is kept beside the id keybroker generated. The grants to the
-- runtime role are not a migration: `keybroker migrate --runtime-role`
-- applies them after every run (see store.Migrate).

-- +goose Up
ALTER TABLE audit_events ADD COLUMN event_count integer NOT NULL DEFAULT 1 CHECK (event_count >= 1);
ALTER TABLE audit_events ADD COLUMN client_request_id text NOT NULL DEFAULT '';
CREATE INDEX audit_events_all ON audit_events (id DESC);
-- Resolver tokens may be limited to listed workspaces; operators name none.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_workspaces CHECK (
    CASE role WHEN 'operator' THEN cardinality(workspaces) = 0
              WHEN 'resolver' THEN true
              ELSE cardinality(workspaces) > 0 END);

-- +goose Down
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_workspaces;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_check CHECK ((role IN ('admin', 'reader')) = (cardinality(workspaces) > 0));
DROP INDEX audit_events_all;
ALTER TABLE audit_events DROP COLUMN client_request_id;
ALTER TABLE audit_events DROP COLUMN event_count;
