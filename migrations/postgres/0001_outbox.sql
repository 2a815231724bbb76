-- The events outbox (PostgreSQL): the same table as migrations/sqlite/0001_outbox.sql, in the
-- types both databases share so one SQL text serves both. Times are Unix microseconds (UTC).
CREATE TABLE outbox (
    -- Monotonic, never reused. Appends hold an advisory lock until commit, so sequence numbers
    -- become visible in order (see src/store/outbox.rs).
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- UUIDv7; the CloudEvents id and the Nats-Msg-Id.
    event_id      TEXT    NOT NULL UNIQUE,
    subject       TEXT    NOT NULL,
    -- The CloudEvents structured JSON message, exactly as published.
    payload       BYTEA   NOT NULL,
    rotation_id   TEXT    NOT NULL,
    -- W3C trace context of the originating call: JSON array of [name, value] pairs.
    trace_headers TEXT    NOT NULL DEFAULT '[]',
    request_id    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    attempts      BIGINT  NOT NULL DEFAULT 0,
    last_error    TEXT,
    -- Set only after the JetStream PublishAck.
    sent_at       BIGINT,
    stream_seq    BIGINT
);

CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
