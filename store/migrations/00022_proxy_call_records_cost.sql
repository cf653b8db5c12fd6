-- v3 platform scale: what a record of a proxied call costs PostgreSQL
-- (BenchmarkAddProxyCalls: about 25 µs per row before, 10 µs after, on the
-- 2-core VM of docs/benchmarks.md).
--
-- * The serving roles may INSERT only the columns keybroker writes, never
--   the id: the identity then always takes its id from the sequence, as
--   the per-row trigger of 00015 enforced (a plpgsql call, two catalog
--   lookups and two sequence reads per row: about 11 µs). The grants are
--   changed here for every role that could insert, so that no window opens
--   between this migration and `keybroker migrate`'s grants (and PUBLIC's
--   INSERT, which no role should have had, is revoked).
-- * The identifier checks say what the regular expressions said with
--   ltrim and octet_length (about 1 µs per row against 7 µs for three
--   regular expressions): 1 to 63 bytes of [a-z0-9_-], the first [a-z0-9].

-- +goose Up
DROP TRIGGER proxy_calls_own_id ON proxy_calls;

-- +goose StatementBegin
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT g.grantee::regrole::text
        FROM pg_class c, aclexplode(c.relacl) AS g
        WHERE c.oid = 'proxy_calls'::regclass AND g.privilege_type = 'INSERT'
          AND g.grantee <> c.relowner AND g.grantee <> 0
    LOOP
        EXECUTE format('REVOKE INSERT ON proxy_calls FROM %s', grantee);
        EXECUTE format('GRANT INSERT (at, workspace, provider, scope, key_id, key_version, status, duration_ms, byok, retried, bytes_out, caller, request_id) ON proxy_calls TO %s', grantee);
    END LOOP;
    -- Nobody is meant to hold it through PUBLIC; whoever did could now
    -- name ids.
    REVOKE INSERT ON proxy_calls FROM PUBLIC;
END;
$$;
-- +goose StatementEnd

ALTER TABLE proxy_calls
    DROP CONSTRAINT proxy_calls_workspace_check,
    DROP CONSTRAINT proxy_calls_provider_check,
    DROP CONSTRAINT proxy_calls_key_id_check,
    ADD CONSTRAINT proxy_calls_workspace_check CHECK (octet_length(workspace) BETWEEN 1 AND 63
        AND ltrim(workspace, 'abcdefghijklmnopqrstuvwxyz0123456789_-') = ''
        AND ltrim(left(workspace, 1), 'abcdefghijklmnopqrstuvwxyz0123456789') = ''),
    ADD CONSTRAINT proxy_calls_provider_check CHECK (octet_length(provider) BETWEEN 1 AND 63
        AND ltrim(provider, 'abcdefghijklmnopqrstuvwxyz0123456789_-') = ''
        AND ltrim(left(provider, 1), 'abcdefghijklmnopqrstuvwxyz0123456789') = ''),
    ADD CONSTRAINT proxy_calls_key_id_check CHECK (key_id = '' OR (octet_length(key_id) BETWEEN 1 AND 63
        AND ltrim(key_id, 'abcdefghijklmnopqrstuvwxyz0123456789_-') = ''
        AND ltrim(left(key_id, 1), 'abcdefghijklmnopqrstuvwxyz0123456789') = ''));

-- +goose Down
ALTER TABLE proxy_calls
    DROP CONSTRAINT proxy_calls_workspace_check,
    DROP CONSTRAINT proxy_calls_provider_check,
    DROP CONSTRAINT proxy_calls_key_id_check,
    ADD CONSTRAINT proxy_calls_workspace_check CHECK (workspace ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    ADD CONSTRAINT proxy_calls_provider_check CHECK (provider ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    ADD CONSTRAINT proxy_calls_key_id_check CHECK (key_id = '' OR key_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$');
-- +goose StatementBegin
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT a.grantee::regrole::text
        FROM pg_attribute att, aclexplode(att.attacl) AS a
        WHERE att.attrelid = 'proxy_calls'::regclass AND att.attname = 'at' AND a.privilege_type = 'INSERT'
    LOOP
        EXECUTE format('REVOKE INSERT (at, workspace, provider, scope, key_id, key_version, status, duration_ms, byok, retried, bytes_out, caller, request_id) ON proxy_calls FROM %s', grantee);
        EXECUTE format('GRANT INSERT ON proxy_calls TO %s', grantee);
    END LOOP;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER proxy_calls_own_id BEFORE INSERT ON proxy_calls FOR EACH ROW EXECUTE FUNCTION assign_own_id();
