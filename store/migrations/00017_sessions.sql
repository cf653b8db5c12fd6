-- v3 identity: the server-side sessions of people signed in with OpenID
-- Connect (package auth/session). The page's cookie and the CLI's session
-- token carry a "kbs_" token; a row keeps only its SHA-256 (token_hash),
-- never the token nor anything of the identity provider's tokens.
--
-- Like a token row (00011), a session row is accepted only when keybroker
-- signed it: key_id names a key of the admin ring (derived for sessions),
-- which the database never holds, and signature is its HMAC over what the
-- row grants (id, hash, issuer, subject, name, email, grants, via and the
-- absolute expiry). A row inserted with a serving role's credentials is
-- refused by keybroker, however well formed.
--
-- The runtime role (store.GrantRuntime) may INSERT and SELECT, and UPDATE
-- only last_seen_at, idle_expires_at, ended_at and ended_reason (a touch or
-- an end); the resolver role gets nothing. A trigger refuses, whoever
-- writes, any change to what the signature covers and any change to an
-- ended session: an end is final. The idle expiry never passes the
-- absolute one.

-- +goose Up
CREATE TABLE sessions (
    id              text PRIMARY KEY CHECK (id ~ '^ses_[0-9a-f]{16}$'),
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    issuer          text NOT NULL CHECK (char_length(issuer) BETWEEN 1 AND 512),
    subject         text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 255),
    name            text NOT NULL DEFAULT '' CHECK (char_length(name) <= 200),
    email           text NOT NULL DEFAULT '' CHECK (char_length(email) <= 320),
    grants          jsonb NOT NULL CHECK (jsonb_typeof(grants) = 'object' AND pg_column_size(grants) <= 262144),
    via             text NOT NULL CHECK (via IN ('page', 'cli')),
    created_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    idle_expires_at timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    ended_reason    text NOT NULL DEFAULT '' CHECK (char_length(ended_reason) <= 200),
    key_id          text NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 16),
    signature       bytea NOT NULL CHECK (length(signature) = 32),
    CHECK (expires_at > created_at),
    CHECK (idle_expires_at <= expires_at),
    CHECK ((ended_at IS NULL) = (ended_reason = ''))
);
-- Lookups by hash use the UNIQUE index; a person's sessions (List,
-- EndAllFor) this one.
CREATE INDEX sessions_person ON sessions (issuer, subject, created_at DESC);

-- +goose StatementBegin
CREATE FUNCTION sessions_touch_or_end_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.token_hash IS DISTINCT FROM OLD.token_hash
       OR NEW.issuer IS DISTINCT FROM OLD.issuer OR NEW.subject IS DISTINCT FROM OLD.subject
       OR NEW.name IS DISTINCT FROM OLD.name OR NEW.email IS DISTINCT FROM OLD.email
       OR NEW.grants IS DISTINCT FROM OLD.grants OR NEW.via IS DISTINCT FROM OLD.via
       OR NEW.created_at IS DISTINCT FROM OLD.created_at OR NEW.expires_at IS DISTINCT FROM OLD.expires_at
       OR NEW.key_id IS DISTINCT FROM OLD.key_id OR NEW.signature IS DISTINCT FROM OLD.signature THEN
        RAISE EXCEPTION 'sessions: only a touch or an end changes a session row';
    END IF;
    IF OLD.ended_at IS NOT NULL AND (NEW.ended_at IS DISTINCT FROM OLD.ended_at
       OR NEW.ended_reason IS DISTINCT FROM OLD.ended_reason
       OR NEW.last_seen_at IS DISTINCT FROM OLD.last_seen_at
       OR NEW.idle_expires_at IS DISTINCT FROM OLD.idle_expires_at) THEN
        RAISE EXCEPTION 'sessions: an end is final';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER sessions_touch_or_end_only BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_touch_or_end_only();

-- +goose Down
DROP TABLE sessions;
DROP FUNCTION sessions_touch_or_end_only();
