-- The relay lease: one row naming the replica whose relay publishes the outbox. Same shape as
-- local_leases. fencing_token grows at every takeover; a mark-sent runs only while its token
-- still holds the row. stream_seq is the highest JetStream sequence marked sent, where a new
-- leader starts reading the stream to find events its predecessor published but never marked.
CREATE TABLE relay_lease (
    name          TEXT    PRIMARY KEY,
    holder        TEXT    NOT NULL,
    fencing_token BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    stream_seq    BIGINT  NOT NULL DEFAULT 0
);
