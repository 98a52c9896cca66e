CREATE TABLE IF NOT EXISTS teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id),
    name TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE TABLE IF NOT EXISTS capsules (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL,
    status TEXT NOT NULL,
    template TEXT NOT NULL,
    host_template TEXT NOT NULL,
    vcpus BIGINT NOT NULL,
    memory_mb BIGINT NOT NULL,
    timeout_sec BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    last_active_at BIGINT NOT NULL,
    last_updated BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS capsules_team ON capsules(team_id, status);
CREATE TABLE IF NOT EXISTS templates (
    team_id TEXT NOT NULL,
    name TEXT NOT NULL,
    host_name TEXT NOT NULL,
    vcpus BIGINT NOT NULL,
    memory_mb BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, name)
);
CREATE TABLE IF NOT EXISTS capsule_metrics (
    capsule_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    cpu_pct DOUBLE PRECISION NOT NULL,
    mem_bytes BIGINT NOT NULL,
    disk_bytes BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS capsule_metrics_ts ON capsule_metrics(capsule_id, ts);
CREATE TABLE IF NOT EXISTS team_samples (
    team_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    interval_sec BIGINT NOT NULL,
    running BIGINT NOT NULL,
    vcpus BIGINT NOT NULL,
    memory_mb BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS team_samples_ts ON team_samples(team_id, ts);
