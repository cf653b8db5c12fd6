-- Key health: what the providers said of a key. health is 'failing' from a
-- refusal (401, 403, 402) until a test passes or an admin sets the key
-- active again; cooldown_until keeps a rate-limited or failing-over key out
-- of its pool until then (consecutive cooldowns back off).

-- +goose Up
ALTER TABLE provider_keys ADD COLUMN health text NOT NULL DEFAULT 'healthy' CHECK (health IN ('healthy', 'failing'));
ALTER TABLE provider_keys ADD COLUMN health_reason text NOT NULL DEFAULT '' CHECK (char_length(health_reason) <= 200);
ALTER TABLE provider_keys ADD COLUMN health_changed_at timestamptz;
ALTER TABLE provider_keys ADD COLUMN cooldown_until timestamptz;
ALTER TABLE provider_keys ADD COLUMN cooldowns integer NOT NULL DEFAULT 0 CHECK (cooldowns >= 0);

-- +goose Down
ALTER TABLE provider_keys DROP COLUMN cooldowns;
ALTER TABLE provider_keys DROP COLUMN cooldown_until;
ALTER TABLE provider_keys DROP COLUMN health_changed_at;
ALTER TABLE provider_keys DROP COLUMN health_reason;
ALTER TABLE provider_keys DROP COLUMN health;
