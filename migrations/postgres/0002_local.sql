-- Local rotation state (PostgreSQL): the same tables as migrations/sqlite/0002_local.sql.
-- Times are Unix milliseconds (UTC); flags and small numbers are BIGINT so that one SQL text
-- binds the same Rust types on both databases.

CREATE TABLE local_rotations (
    rotation_id                TEXT    PRIMARY KEY,
    active_index               BIGINT  NOT NULL DEFAULT 0,
    -- 'success' or 'failed'.
    status                     TEXT    NOT NULL DEFAULT 'success',
    last_rotated_at            BIGINT,
    last_rotation_attempted_at BIGINT,
    next_rotation_at           BIGINT,
    is_last_rotation_manual    BIGINT  NOT NULL DEFAULT 1,
    -- Redacted; never holds a secret.
    last_message               TEXT,
    created_at                 BIGINT  NOT NULL,
    updated_at                 BIGINT  NOT NULL
);

-- AES-256-GCM sealed, (rotation_id, slot) as associated data. Written only by a COMMIT.
CREATE TABLE local_credentials (
    rotation_id TEXT    NOT NULL REFERENCES local_rotations (rotation_id),
    slot        BIGINT  NOT NULL CHECK (slot IN (0, 1)),
    key_id      TEXT    NOT NULL,
    ciphertext  BYTEA   NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (rotation_id, slot)
);

CREATE TABLE local_attempts (
    attempt_id    TEXT    PRIMARY KEY,
    rotation_id   TEXT    NOT NULL REFERENCES local_rotations (rotation_id),
    slot          BIGINT  NOT NULL CHECK (slot IN (0, 1)),
    -- prepared | applied | verified | committed | failed
    state         TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    candidate     BYTEA   NOT NULL,
    fencing_token BIGINT  NOT NULL,
    -- 'manual' or 'scheduled'.
    trigger_kind  TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    transient     BIGINT  NOT NULL DEFAULT 0,
    regenerations BIGINT  NOT NULL DEFAULT 0,
    error         TEXT,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE INDEX local_attempts_open ON local_attempts (rotation_id)
    WHERE state IN ('prepared', 'applied', 'verified');

-- One lease per rotation; the fencing token only grows.
CREATE TABLE local_leases (
    rotation_id   TEXT    PRIMARY KEY,
    holder        TEXT    NOT NULL,
    fencing_token BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
