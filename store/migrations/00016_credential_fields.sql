-- Credentials with several fields (docs/credentials.md): the kind of a
-- key's credential, its non-secret fields (a map field as an object of
-- strings) and the masked preview of each secret field. The secret values
-- stay in Vault; nothing here is one. The pending_* columns carry the same
-- for a change in flight, so that the reconciler can finish it. The
-- serving roles' grants are table-wide (the resolver's UPDATE is limited
-- to the health columns), so these columns need no grant of their own.

-- +goose Up
ALTER TABLE provider_keys ADD COLUMN credential_kind text NOT NULL DEFAULT 'api_key' CHECK (char_length(credential_kind) BETWEEN 1 AND 64);
ALTER TABLE provider_keys ADD COLUMN public_fields jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(public_fields) = 'object');
ALTER TABLE provider_keys ADD COLUMN masked_fields jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(masked_fields) = 'object');
ALTER TABLE provider_keys ADD COLUMN pending_credential_kind text CHECK (char_length(pending_credential_kind) <= 64);
ALTER TABLE provider_keys ADD COLUMN pending_public_fields jsonb CHECK (jsonb_typeof(pending_public_fields) = 'object');
ALTER TABLE provider_keys ADD COLUMN pending_masked_fields jsonb CHECK (jsonb_typeof(pending_masked_fields) = 'object');
-- Every key written so far is an api_key: its one secret field's preview.
UPDATE provider_keys SET masked_fields = jsonb_build_object('apiKey', masked_key) WHERE masked_key <> '';
UPDATE provider_keys SET pending_credential_kind = 'api_key', pending_masked_fields = jsonb_build_object('apiKey', pending_masked_key)
    WHERE pending_masked_key IS NOT NULL AND pending_masked_key <> '';

-- +goose Down
ALTER TABLE provider_keys DROP COLUMN pending_masked_fields;
ALTER TABLE provider_keys DROP COLUMN pending_public_fields;
ALTER TABLE provider_keys DROP COLUMN pending_credential_kind;
ALTER TABLE provider_keys DROP COLUMN masked_fields;
ALTER TABLE provider_keys DROP COLUMN public_fields;
ALTER TABLE provider_keys DROP COLUMN credential_kind;
