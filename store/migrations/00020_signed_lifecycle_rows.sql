-- v3 security: a rotation or a revocation at the provider makes keybroker
-- delete (or deactivate) keys at the provider with the scope's admin
-- credential, so its row is a command, signed like a token row or an
-- organization link: HMAC-SHA256 under the admin keys, which the database
-- never holds, over every id keybroker acts on (the provider's ids of the
-- keys, the account name, the admin credential's key id, the scope and the
-- key). A row inserted or changed with a database role alone names no
-- valid signature and is not acted on (docs/security.md).
--
-- Triggers freeze what a row names once written (only new_provider_key_id,
-- recorded at a rotation's create step, changes, and is signed again), so
-- even a row keybroker signed cannot be pointed at another key.
--
-- key_rotations.attempts: the failed attempts of the rotation's current
-- step; each pushes the next one back (claimed_until), and a rotation
-- failing that many times ends failed (docs/lifecycle.md).
--
-- provider_revocations.located: the provider confirmed, with the admin
-- credential, that it governs the key (a service account of its project, a
-- key of its organization). A 404 on deleting the key is "gone" only then:
-- a key of another project or organization is 404 too.

-- +goose Up
ALTER TABLE key_rotations ADD COLUMN sig_key_id text NOT NULL DEFAULT '' CHECK (char_length(sig_key_id) <= 16);
ALTER TABLE key_rotations ADD COLUMN signature bytea CHECK (signature IS NULL OR length(signature) = 32);
ALTER TABLE provider_revocations ADD COLUMN sig_key_id text NOT NULL DEFAULT '' CHECK (char_length(sig_key_id) <= 16);
ALTER TABLE provider_revocations ADD COLUMN signature bytea CHECK (signature IS NULL OR length(signature) = 32);
ALTER TABLE provider_revocations ADD COLUMN located boolean NOT NULL DEFAULT false;
ALTER TABLE key_rotations ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0);

-- +goose StatementBegin
CREATE FUNCTION key_rotations_frozen_ids() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.scope IS DISTINCT FROM OLD.scope OR NEW.scope_id IS DISTINCT FROM OLD.scope_id
       OR NEW.provider IS DISTINCT FROM OLD.provider OR NEW.key_id IS DISTINCT FROM OLD.key_id
       OR NEW.new_key_id IS DISTINCT FROM OLD.new_key_id OR NEW.admin_key_id IS DISTINCT FROM OLD.admin_key_id
       OR NEW.account_name IS DISTINCT FROM OLD.account_name OR NEW.old_provider_key_id IS DISTINCT FROM OLD.old_provider_key_id
       OR NEW.trigger IS DISTINCT FROM OLD.trigger OR NEW.grace_seconds IS DISTINCT FROM OLD.grace_seconds THEN
        RAISE EXCEPTION 'key_rotations: the ids a rotation acts on never change';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER key_rotations_frozen_ids BEFORE UPDATE ON key_rotations
    FOR EACH ROW EXECUTE FUNCTION key_rotations_frozen_ids();

-- +goose StatementBegin
CREATE FUNCTION provider_revocations_frozen_ids() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.scope IS DISTINCT FROM OLD.scope OR NEW.scope_id IS DISTINCT FROM OLD.scope_id
       OR NEW.provider IS DISTINCT FROM OLD.provider OR NEW.key_id IS DISTINCT FROM OLD.key_id
       OR NEW.provider_key_id IS DISTINCT FROM OLD.provider_key_id OR NEW.admin_key_id IS DISTINCT FROM OLD.admin_key_id THEN
        RAISE EXCEPTION 'provider_revocations: the ids a revocation acts on never change';
    END IF;
    IF OLD.located AND NOT NEW.located THEN
        RAISE EXCEPTION 'provider_revocations: a located key stays located';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER provider_revocations_frozen_ids BEFORE UPDATE ON provider_revocations
    FOR EACH ROW EXECUTE FUNCTION provider_revocations_frozen_ids();

-- +goose Down
DROP TRIGGER provider_revocations_frozen_ids ON provider_revocations;
DROP FUNCTION provider_revocations_frozen_ids();
DROP TRIGGER key_rotations_frozen_ids ON key_rotations;
DROP FUNCTION key_rotations_frozen_ids();
ALTER TABLE key_rotations DROP COLUMN attempts;
ALTER TABLE provider_revocations DROP COLUMN located;
ALTER TABLE provider_revocations DROP COLUMN signature;
ALTER TABLE provider_revocations DROP COLUMN sig_key_id;
ALTER TABLE key_rotations DROP COLUMN signature;
ALTER TABLE key_rotations DROP COLUMN sig_key_id;
