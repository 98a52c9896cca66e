-- Template builds from recipes, their logs, and the templates they made.
-- builds.status: queued | running | succeeded | failed | cancelled.
-- builds.capsule_id / host_template: what a running build holds on the host, so a restart
-- can clean up after it.
CREATE TABLE IF NOT EXISTS builds (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    recipe TEXT NOT NULL,
    base TEXT NOT NULL,
    vcpus BIGINT NOT NULL,
    memory_mb BIGINT NOT NULL,
    step BIGINT NOT NULL,
    steps BIGINT NOT NULL,
    phase TEXT NOT NULL,
    capsule_id TEXT,
    host_template TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX IF NOT EXISTS builds_status ON builds(status);
-- The build log: every line of every step's output, in order (seq from 0).
CREATE TABLE IF NOT EXISTS build_log (
    build_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    step BIGINT NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
);
-- Templates made by builds: listed as base templates for every team.
CREATE TABLE IF NOT EXISTS built_templates (
    name TEXT PRIMARY KEY,
    host_name TEXT NOT NULL,
    build_id TEXT NOT NULL,
    vcpus BIGINT NOT NULL,
    memory_mb BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
