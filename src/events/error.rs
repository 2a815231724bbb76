//! Errors of the events pipeline, classified by what the relay does next.

use crate::store::StoreError;

/// Why an events operation failed. Messages never carry a secret: NATS credentials are not
/// formatted into them, and NATS errors do not echo them.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The NATS options could not be built (unreadable creds file or CA, bad nkey seed).
    #[error("invalid NATS settings ({setting}): {detail}")]
    Settings {
        /// The config key at fault, e.g. `nats.creds_file`.
        setting: &'static str,
        /// What is wrong, without the value.
        detail: String,
    },
    /// The client could not connect to NATS.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    /// The client is connected to no server right now (it keeps reconnecting by itself).
    #[error("NATS is disconnected")]
    Disconnected,
    /// The stream could not be created or updated.
    #[error("cannot create or update JetStream stream {stream}: {source}")]
    Stream {
        /// The stream name.
        stream: String,
        /// The server's answer.
        source: async_nats::jetstream::context::CreateStreamError,
    },
    /// The stream's messages could not be read (to find events a previous relay published).
    #[error("cannot read JetStream stream {stream}: {detail}")]
    ReadStream {
        /// The stream name.
        stream: String,
        /// The server's or client's answer.
        detail: String,
    },
    /// No stream listens on the subject (deleted, or its subjects changed).
    #[error("no JetStream stream accepts subject {0}")]
    NoStream(String),
    /// The publish or its ack timed out.
    #[error("JetStream did not acknowledge in time")]
    AckTimeout,
    /// Any other publish failure.
    #[error("publish failed: {0}")]
    Publish(#[source] async_nats::jetstream::context::PublishError),
    /// The event could not be encoded.
    #[error("cannot encode the event: {0}")]
    Encode(String),
    /// The outbox failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

// === impl EventsError ===

impl EventsError {
    /// Whether the stream must be created or updated again before publishing.
    pub fn needs_stream(&self) -> bool {
        matches!(self, Self::NoStream(_))
    }

    /// Whether the failure is the broker's (unreachable, no ack, no stream) rather than the
    /// outbox's or one event's: what makes a relay leader hand its lease to a replica that can
    /// reach NATS.
    pub fn is_broker(&self) -> bool {
        !matches!(
            self,
            Self::Settings { .. } | Self::Encode(_) | Self::Store(_)
        )
    }

    /// A short, bounded name of the failure, for the `error.type` of metrics and spans.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Settings { .. } => "settings",
            Self::Connect(_) => "connect",
            Self::Disconnected => "disconnected",
            Self::Stream { .. } => "stream",
            Self::ReadStream { .. } => "read_stream",
            Self::NoStream(_) => "no_stream",
            Self::AckTimeout => "timeout",
            Self::Publish(_) => "publish",
            Self::Encode(_) => "encode",
            Self::Store(_) => "store",
        }
    }

    /// Whether the same operation may succeed later without any change (NATS down, slow, busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect(_)
            | Self::Disconnected
            | Self::AckTimeout
            | Self::NoStream(_)
            | Self::Publish(_)
            | Self::Stream { .. }
            | Self::ReadStream { .. } => true,
            Self::Store(e) => e.is_transient(),
            Self::Settings { .. } | Self::Encode(_) => false,
        }
    }
}
