-- Environment of every command and what the inactivity TTL does.
-- envs: JSON object of environment variables given at create (E2B's envVars); every command
--   run through the E2B data plane gets them under its own.
-- on_timeout: 'pause' (Wrenn's TTL, the default) or 'kill' (E2B's default at its timeout).
ALTER TABLE capsules ADD COLUMN envs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE capsules ADD COLUMN on_timeout TEXT NOT NULL DEFAULT 'pause';
-- Secrets of the server shared by every replica (the key E2B capsules' access tokens are
-- derived from), made on first use.
CREATE TABLE IF NOT EXISTS server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- The guest's memory and disk sizes beside what it uses (E2B's metrics report both).
ALTER TABLE capsule_metrics ADD COLUMN mem_total_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE capsule_metrics ADD COLUMN disk_total_bytes BIGINT NOT NULL DEFAULT 0;
