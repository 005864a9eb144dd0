-- The gateway's consumers and their API keys. Timestamps are Unix milliseconds.
CREATE TABLE gateway_consumers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tags TEXT NOT NULL DEFAULT '[]',
    consumer_group TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE gateway_api_keys (
    id TEXT PRIMARY KEY,
    consumer_id TEXT NOT NULL REFERENCES gateway_consumers(id) ON DELETE CASCADE,
    digest BLOB NOT NULL,
    scopes TEXT NOT NULL DEFAULT '[]',
    expires_at BIGINT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE INDEX gateway_api_keys_consumer ON gateway_api_keys (consumer_id);

-- One row: bumped in the same transaction as every change above, so each gateway node
-- notices a change with one cheap read per poll.
CREATE TABLE gateway_key_changes (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO gateway_key_changes (id, version) VALUES (1, 0);
