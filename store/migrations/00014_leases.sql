-- Leader leases replace the PostgreSQL advisory locks that made one replica
-- at a time stream the audit trail, reconcile and probe failing keys. Any
-- database login may take any advisory lock id, so a sandbox-facing pod's
-- role could hold a lock for good and keep the audit trail from the SIEM
-- webhook. A lease is a row in a table only keybroker's serving roles may
-- write, and each table is granted to the roles that run its work
-- (store.GrantRuntime, store.GrantResolver):
--
--   admin_leases      the audit stream and the reconciler: the runtime role
--                     (modes admin and all) only, never the resolver role;
--   execution_leases  the prober: every role that reads keys (the resolver
--                     role; the runtime role in mode all).
--
-- A lease is taken when absent or expired, renewed by its holder, and
-- released (expired) when its holder stops. The audit stream's row keeps
-- its cursor (position: the last audit id delivered), so that the replica
-- that takes the stream over resumes after it. A trigger stamps who wrote
-- a row (holder_role: the database role, which no writer can choose) and
-- refuses a lease longer than ten minutes from now: a holder must keep
-- renewing, and its role shows.

-- +goose Up
CREATE TABLE admin_leases (
    name        text PRIMARY KEY CHECK (name IN ('audit-stream', 'reconciler')),
    holder      text NOT NULL CHECK (char_length(holder) BETWEEN 1 AND 200),
    holder_role text NOT NULL DEFAULT current_user,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    position    bigint CHECK (position >= 0)
);
CREATE TABLE execution_leases (
    name        text PRIMARY KEY CHECK (name IN ('prober')),
    holder      text NOT NULL CHECK (char_length(holder) BETWEEN 1 AND 200),
    holder_role text NOT NULL DEFAULT current_user,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    position    bigint CHECK (position >= 0)
);

-- +goose StatementBegin
CREATE FUNCTION leases_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name IS DISTINCT FROM OLD.name THEN
        RAISE EXCEPTION 'leases: a lease keeps its name';
    END IF;
    IF NEW.expires_at > now() + interval '10 minutes' THEN
        RAISE EXCEPTION 'leases: a lease ends at most 10 minutes from now (its holder renews it)';
    END IF;
    NEW.holder_role := current_user;
    NEW.renewed_at := now();
    IF TG_OP = 'INSERT' OR NEW.holder IS DISTINCT FROM OLD.holder THEN
        NEW.acquired_at := now();
    ELSE
        NEW.acquired_at := OLD.acquired_at;
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER admin_leases_stamp BEFORE INSERT OR UPDATE ON admin_leases
    FOR EACH ROW EXECUTE FUNCTION leases_stamp();
CREATE TRIGGER execution_leases_stamp BEFORE INSERT OR UPDATE ON execution_leases
    FOR EACH ROW EXECUTE FUNCTION leases_stamp();

-- +goose Down
DROP TABLE execution_leases;
DROP TABLE admin_leases;
DROP FUNCTION leases_stamp();
