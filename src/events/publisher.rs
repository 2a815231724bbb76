//! What the relay needs from a message broker: get ready, then publish in two steps (send, then
//! await the ack), so a batch can be in flight at once while each row is still marked sent only
//! after its own ack.

use std::future::Future;

use super::EventsError;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The full subject.
    pub subject: String,
    /// The de-duplication id (`Nats-Msg-Id`): the event id.
    pub message_id: String,
    /// Headers besides the de-duplication id.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: Vec<u8>,
}

/// A broker's acknowledgement of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The stream sequence the message is stored at.
    pub stream_seq: u64,
    /// The broker already had this message id (a re-publish); it stored nothing new.
    pub duplicate: bool,
}

/// A message already in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its de-duplication id (`Nats-Msg-Id`): the event id.
    pub message_id: String,
    /// Its stream sequence.
    pub stream_seq: u64,
}

/// A broker the relay publishes to.
pub trait Publisher: Send + Sync {
    /// Resolves when the broker has stored the message (or says it already had it).
    type Ack: Future<Output = Result<Acked, EventsError>> + Send;

    /// Connects if needed and creates or updates the stream. The relay calls it until it
    /// succeeds, and again whenever a publish finds no stream.
    ///
    /// # Errors
    ///
    /// The broker cannot be reached or refuses the stream settings.
    fn prepare(&self) -> impl Future<Output = Result<(), EventsError>> + Send;

    /// Sends one message; the ack is awaited separately.
    ///
    /// # Errors
    ///
    /// The message could not be handed to the broker (disconnected, no stream, too large).
    fn send(
        &self,
        message: OutgoingMessage,
    ) -> impl Future<Output = Result<Self::Ack, EventsError>> + Send;

    /// The messages stored after stream sequence `after`, oldest first, at most the newest
    /// `limit`: what a new relay leader checks before publishing, so an event its predecessor
    /// published but never marked sent is marked instead of published again.
    ///
    /// # Errors
    ///
    /// The stream cannot be read.
    fn stored_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Stored>, EventsError>> + Send;
}
