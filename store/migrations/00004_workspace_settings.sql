-- Workspace settings: the organization a workspace belongs to, and where its
-- calls' keys may come from when it has none (inherit from the
-- organization; fall back to the platform's billed hosted keys). A
-- workspace without a row has the defaults (no organization, inherit, hosted
-- fallback).

-- +goose Up
CREATE TABLE workspace_settings (
    workspace       text PRIMARY KEY CHECK (workspace ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    organization    text CHECK (organization ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    inherit         boolean NOT NULL DEFAULT true,
    hosted_fallback boolean NOT NULL DEFAULT true,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL
);

-- +goose Down
DROP TABLE workspace_settings;
