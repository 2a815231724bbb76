-- Confirmed handover (docs/delivery.md, "Confirmed handover"). Times are Unix milliseconds (UTC).

-- One row per (rotation, consumer): the newest committed version the consumer confirmed it
-- uses, and when it first confirmed that version. Only raised, never lowered; a repeated
-- confirmation of the same version changes nothing.
CREATE TABLE local_handover_confirmations (
    rotation_id  TEXT    NOT NULL,
    consumer     TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    confirmed_at INTEGER NOT NULL,
    PRIMARY KEY (rotation_id, consumer)
);

-- One row per (rotation, version) whose grace ended with consumers unconfirmed and let a
-- rotation through: written with its CredentialHandoverTimedOut event, so the event is
-- appended once per version however often the rotation is retried.
CREATE TABLE local_handover_timeouts (
    rotation_id  TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    timed_out_at INTEGER NOT NULL,
    PRIMARY KEY (rotation_id, version)
);
