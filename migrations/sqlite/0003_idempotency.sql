-- Idempotency keys of RotateSecrets on local rotations: the first call with a key names the
-- attempt it ran; a later call with the same key answers with that attempt's outcome.
CREATE TABLE local_idempotency_keys (
    rotation_id TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    attempt_id  TEXT    NOT NULL,
    -- Unix milliseconds (UTC).
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (rotation_id, key)
);
