-- Idempotency keys of RotateSecrets on local rotations (PostgreSQL): as
-- migrations/sqlite/0003_idempotency.sql.
CREATE TABLE local_idempotency_keys (
    rotation_id TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    attempt_id  TEXT    NOT NULL,
    -- Unix milliseconds (UTC).
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (rotation_id, key)
);
