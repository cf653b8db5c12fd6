-- v3 security: a token row is accepted only when keybroker signed it. The
-- signature (HMAC-SHA256 under a signing key the database never holds,
-- named by key_id) covers what the row grants: id, hash, role, scopes and
-- expiry. A row inserted or changed with a database role alone, however
-- privileged the role, names no valid signature and is refused.
--
-- Revocation only ever goes one way: a trigger refuses any change to what
-- the signature covers and any un-revoking, for every role but the owner's
-- own maintenance (it may lift the trigger; the serving roles own nothing
-- and cannot). Serving roles may no longer delete token rows (grants in
-- store.GrantRuntime).

-- +goose Up
ALTER TABLE api_tokens ADD COLUMN key_id text NOT NULL DEFAULT '' CHECK (char_length(key_id) <= 16);
ALTER TABLE api_tokens ADD COLUMN signature bytea CHECK (signature IS NULL OR length(signature) = 32);

-- +goose StatementBegin
CREATE FUNCTION api_tokens_revocation_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.token_hash IS DISTINCT FROM OLD.token_hash
       OR NEW.role IS DISTINCT FROM OLD.role OR NEW.workspaces IS DISTINCT FROM OLD.workspaces
       OR NEW.organizations IS DISTINCT FROM OLD.organizations OR NEW.expires_at IS DISTINCT FROM OLD.expires_at
       OR NEW.created_at IS DISTINCT FROM OLD.created_at OR NEW.created_by IS DISTINCT FROM OLD.created_by THEN
        RAISE EXCEPTION 'api_tokens: only revocation and re-signing change a token row';
    END IF;
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'api_tokens: a revocation is final';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER api_tokens_revocation_only BEFORE UPDATE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION api_tokens_revocation_only();

-- No serving role may even store a resolver token's row (it could not sign
-- it either): they are minted out of band, by the owner's CLI. The owner
-- bypasses row-level security; every other role meets these policies.
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_tokens_read ON api_tokens FOR SELECT USING (true);
CREATE POLICY api_tokens_add ON api_tokens FOR INSERT WITH CHECK (role <> 'resolver');
CREATE POLICY api_tokens_revoke ON api_tokens FOR UPDATE USING (true) WITH CHECK (true);

-- +goose Down
DROP POLICY api_tokens_revoke ON api_tokens;
DROP POLICY api_tokens_add ON api_tokens;
DROP POLICY api_tokens_read ON api_tokens;
ALTER TABLE api_tokens DISABLE ROW LEVEL SECURITY;
DROP TRIGGER api_tokens_revocation_only ON api_tokens;
DROP FUNCTION api_tokens_revocation_only();
ALTER TABLE api_tokens DROP COLUMN signature;
ALTER TABLE api_tokens DROP COLUMN key_id;
