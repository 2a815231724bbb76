-- Local rotation state. Times are Unix milliseconds (UTC).

-- One row per registered local rotation: what `GetSecretRotation` reports.
CREATE TABLE local_rotations (
    rotation_id                TEXT    PRIMARY KEY,
    -- The slot applications should use (0 or 1); meaningful once a credential is stored.
    active_index               INTEGER NOT NULL DEFAULT 0,
    -- 'success' or 'failed'.
    status                     TEXT    NOT NULL DEFAULT 'success',
    last_rotated_at            INTEGER,
    last_rotation_attempted_at INTEGER,
    next_rotation_at           INTEGER,
    is_last_rotation_manual    INTEGER NOT NULL DEFAULT 1,
    -- Redacted; never holds a secret.
    last_message               TEXT,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
);

-- The stored credential of each slot, AES-256-GCM sealed with (rotation_id, slot) as
-- associated data. Written only by a COMMIT.
CREATE TABLE local_credentials (
    rotation_id TEXT    NOT NULL REFERENCES local_rotations (rotation_id),
    slot        INTEGER NOT NULL CHECK (slot IN (0, 1)),
    key_id      TEXT    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (rotation_id, slot)
);

-- Attempts: the intent (sealed candidate, target slot) is stored before the target is touched.
CREATE TABLE local_attempts (
    attempt_id    TEXT    PRIMARY KEY,
    rotation_id   TEXT    NOT NULL REFERENCES local_rotations (rotation_id),
    slot          INTEGER NOT NULL CHECK (slot IN (0, 1)),
    -- prepared | applied | verified | committed | failed
    state         TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    candidate     BLOB    NOT NULL,
    fencing_token INTEGER NOT NULL,
    -- 'manual' or 'scheduled'.
    trigger_kind  TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    transient     INTEGER NOT NULL DEFAULT 0,
    regenerations INTEGER NOT NULL DEFAULT 0,
    -- Redacted reason of a failure.
    error         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE INDEX local_attempts_open ON local_attempts (rotation_id)
    WHERE state IN ('prepared', 'applied', 'verified');

-- One lease per rotation; the fencing token only grows.
CREATE TABLE local_leases (
    rotation_id   TEXT    PRIMARY KEY,
    holder        TEXT    NOT NULL,
    fencing_token INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
