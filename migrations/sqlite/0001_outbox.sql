-- The events outbox: one row per rotation-attempt event, written before the caller is answered
-- and published by the relay in `seq` order. Times are Unix microseconds (UTC).
CREATE TABLE outbox (
    -- Monotonic, never reused (AUTOINCREMENT), so pruning cannot make an old number come back.
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- UUIDv7; the CloudEvents id and the Nats-Msg-Id.
    event_id      TEXT    NOT NULL UNIQUE,
    -- The subject below the configured prefix, e.g. `postgres-credentials.completed`.
    subject       TEXT    NOT NULL,
    -- The CloudEvents structured JSON message, exactly as published.
    payload       BLOB    NOT NULL,
    -- Events of one rotation are published in `seq` order.
    rotation_id   TEXT    NOT NULL,
    -- W3C trace context of the originating call: JSON array of [name, value] pairs.
    trace_headers TEXT    NOT NULL DEFAULT '[]',
    request_id    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    -- Publish attempts that did not end in an ack.
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    -- Set only after the JetStream PublishAck.
    sent_at       INTEGER,
    -- The stream sequence JetStream acknowledged with.
    stream_seq    INTEGER
);

CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
