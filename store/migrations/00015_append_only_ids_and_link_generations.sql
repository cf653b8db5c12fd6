-- v3 security, after a hostile review of the serving roles' grants:
--
-- * Audit rows and records of proxied calls take their ids from their own
--   sequence, whatever an INSERT names (OVERRIDING SYSTEM VALUE needs no
--   privilege): a serving role could otherwise jump the ids (the audit
--   stream skips a gap; keybroker's own inserts then collide) or place rows
--   out of order. An audit row is dated by the database.
-- * A key's cooldown can be at most an hour and five minutes away, as the
--   broker asks (MaxRetryAfter), whoever writes it.
-- * An organization link is signed over a generation that only grows and a
--   settings row is never deleted by a serving role (a purge resets it), so
--   an old signature cannot be replayed to undo an unlink.
-- * A proxy token's revocation lasts at most as long as the token could
--   (and is dated by the database), so the set every replica holds stays
--   small.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION assign_own_id() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    seq regclass := pg_get_serial_sequence(quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), 'id')::regclass;
BEGIN
    -- The owner (who could lift this trigger anyway) is left alone: its
    -- maintenance, and tests of retention, date rows themselves.
    IF pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER') THEN
        RETURN NEW;
    END IF;
    -- An id the identity gave is at most the sequence's last value; one
    -- named by the INSERT past it is replaced (a named id below it is a
    -- hole of a rolled-back insert, or collides with its row).
    IF NEW.id > pg_sequence_last_value(seq) OR pg_sequence_last_value(seq) IS NULL THEN
        NEW.id := nextval(seq);
    END IF;
    IF TG_TABLE_NAME = 'audit_events' THEN
        NEW.occurred_at := now();
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_own_id BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION assign_own_id();
CREATE TRIGGER proxy_calls_own_id BEFORE INSERT ON proxy_calls FOR EACH ROW EXECUTE FUNCTION assign_own_id();

-- +goose StatementBegin
CREATE FUNCTION provider_keys_bounded_cooldown() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cooldown_until IS NOT NULL AND NEW.cooldown_until > now() + interval '65 minutes' THEN
        NEW.cooldown_until := now() + interval '1 hour';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER provider_keys_bounded_cooldown BEFORE INSERT OR UPDATE ON provider_keys
    FOR EACH ROW EXECUTE FUNCTION provider_keys_bounded_cooldown();

ALTER TABLE workspace_settings ADD COLUMN link_generation bigint NOT NULL DEFAULT 0 CHECK (link_generation >= 0);
-- +goose StatementBegin
CREATE FUNCTION workspace_settings_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.link_generation <> 0 OR NEW.organization IS NOT NULL THEN
            RAISE EXCEPTION 'workspace_settings: a new row starts unlinked, at generation 0';
        END IF;
    ELSIF NEW.link_generation < OLD.link_generation THEN
        RAISE EXCEPTION 'workspace_settings: a link generation never goes back';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER workspace_settings_generation BEFORE INSERT OR UPDATE ON workspace_settings
    FOR EACH ROW EXECUTE FUNCTION workspace_settings_generation();

-- +goose StatementBegin
CREATE FUNCTION proxy_token_revocations_bounded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revoked_at := now();
    IF NEW.expires_at > now() + interval '65 minutes' THEN
        NEW.expires_at := now() + interval '65 minutes';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER proxy_token_revocations_bounded BEFORE INSERT ON proxy_token_revocations
    FOR EACH ROW EXECUTE FUNCTION proxy_token_revocations_bounded();
UPDATE proxy_token_revocations SET expires_at = least(expires_at, revoked_at + interval '65 minutes');

-- +goose Down
DROP TRIGGER proxy_token_revocations_bounded ON proxy_token_revocations;
DROP FUNCTION proxy_token_revocations_bounded();
DROP TRIGGER workspace_settings_generation ON workspace_settings;
DROP FUNCTION workspace_settings_generation();
ALTER TABLE workspace_settings DROP COLUMN link_generation;
DROP TRIGGER provider_keys_bounded_cooldown ON provider_keys;
DROP FUNCTION provider_keys_bounded_cooldown();
DROP TRIGGER proxy_calls_own_id ON proxy_calls;
DROP TRIGGER audit_events_own_id ON audit_events;
DROP FUNCTION assign_own_id();
