//! What travels with one call from the api layer down to the backends.

use tokio::time::Instant;

/// The per-call facts every layer needs.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Our request id: the caller's `x-request-id` after validation, or a generated one.
    pub request_id: String,
    /// When the caller stops waiting (from `grpc-timeout`).
    pub deadline: Option<Instant>,
    /// The caller's `idempotency-key` metadata, when sent (validated like a request id).
    pub idempotency_key: Option<String>,
}

impl CallContext {
    /// A context with a fresh request id and no deadline (CLI, scheduler, tests).
    pub fn generated() -> Self {
        Self {
            request_id: new_request_id(),
            deadline: None,
            idempotency_key: None,
        }
    }

    /// Time left before the deadline, if there is one.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// A new request id: a UUIDv7, so ids sort by time.
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
