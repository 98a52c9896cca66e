-- Egress policy, port-URL access mode and network state of a capsule.
-- network_policy: the NetworkPolicy JSON as the client sent it ('{}' = all egress).
-- ports: 'public' (port URLs need no credential) or 'private'.
-- access_token_hash: SHA-256 hex of the private port-URL token (the token itself is shown once).
-- network_enabled / network_reason: what the host last reported (NULL until it has).
ALTER TABLE capsules ADD COLUMN network_policy TEXT NOT NULL DEFAULT '{}';
ALTER TABLE capsules ADD COLUMN ports TEXT NOT NULL DEFAULT 'public';
ALTER TABLE capsules ADD COLUMN access_token_hash TEXT;
ALTER TABLE capsules ADD COLUMN network_enabled BIGINT;
ALTER TABLE capsules ADD COLUMN network_reason TEXT;
