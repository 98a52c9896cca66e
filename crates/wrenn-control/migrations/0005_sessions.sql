-- Browser sessions: an API key exchanged for a cookie (POST /v1/sessions). Only the SHA-256
-- of the session token is stored; a session dies with its key (no row of api_keys, no
-- session) and at expires_at (unix ms).
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
