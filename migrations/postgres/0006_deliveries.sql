-- Credential delivery to sinks (PostgreSQL): the same as migrations/sqlite/0005_deliveries.sql. Times are Unix milliseconds (UTC).

-- The committed version of each rotation: 1 for its first credential, one more per COMMIT.
ALTER TABLE local_rotations ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
UPDATE local_rotations SET version = 1 WHERE EXISTS
    (SELECT 1 FROM local_credentials c WHERE c.rotation_id = local_rotations.rotation_id);

-- One row per (rotation, sink). `wanted_version` is raised in the COMMIT transaction; the
-- delivery worker raises `delivered_version` after the sink took it, never lowers it.
CREATE TABLE local_deliveries (
    rotation_id       TEXT    NOT NULL,
    -- The sink's name within its rotation (docs/delivery.md, "Names").
    sink              TEXT    NOT NULL,
    wanted_version    BIGINT  NOT NULL,
    delivered_version BIGINT  NOT NULL DEFAULT 0,
    delivered_at      BIGINT ,
    -- Redacted; never holds a secret. NULL after a success.
    last_error        TEXT,
    -- When the current run of failures began; NULL after a success.
    failing_since     BIGINT ,
    -- Failed tries since the last success.
    failures          BIGINT  NOT NULL DEFAULT 0,
    -- Not tried again before this.
    next_try_at       BIGINT  NOT NULL,
    PRIMARY KEY (rotation_id, sink)
);

CREATE INDEX local_deliveries_pending ON local_deliveries (next_try_at)
    WHERE delivered_version < wanted_version;
