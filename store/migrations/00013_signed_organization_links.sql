-- v3 security: linking a workspace to an organization gives the workspace's
-- resolver tokens that organization's keys, so a link is a grant, signed
-- like a token row: HMAC-SHA256 under the admin keys, which the database
-- never holds, over the workspace and the organization. A link written with
-- a database role alone names no valid signature and is not followed.

-- +goose Up
ALTER TABLE workspace_settings ADD COLUMN link_key_id text NOT NULL DEFAULT '' CHECK (char_length(link_key_id) <= 16);
ALTER TABLE workspace_settings ADD COLUMN link_signature bytea CHECK (link_signature IS NULL OR length(link_signature) = 32);

-- +goose Down
ALTER TABLE workspace_settings DROP COLUMN link_signature;
ALTER TABLE workspace_settings DROP COLUMN link_key_id;
