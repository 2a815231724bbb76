//! A failure as a plain value. Every error type below the api classifies itself
//! ([`Classify`]); what travels up to events, spans and the attempt record is the [`Failure`] it
//! produces, not the error (which keeps its cause chain and need not be `Clone`).

use std::time::Duration;

use tonic::Code;

/// The decision for one error: gRPC code, stable reason and retry advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// The gRPC code.
    pub code: Code,
    /// The stable `ErrorInfo.reason`, UPPER_SNAKE_CASE; each has a page in `docs/errors.md`.
    pub reason: &'static str,
    /// When set, retrying after this delay is safe.
    pub retry_after: Option<Duration>,
}

/// Retry advice for failures that clear within a second or so.
pub const RETRY_SOON: Option<Duration> = Some(Duration::from_secs(1));

/// A classified failure with its public message: what an event, a span or a status carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Code, reason, retry advice.
    pub classification: Classification,
    /// The message for callers and subscribers; never a secret, never an internal detail.
    pub message: String,
    /// Infisical's `reqId`, when the upstream answered with one.
    pub upstream_req_id: Option<String>,
}

/// An error that knows its own classification.
pub trait Classify: std::error::Error {
    /// Code, reason and retry advice. Exhaustive in every implementation: a new variant must be
    /// decided there.
    fn classify(&self) -> Classification;

    /// The message for the caller: the error text unless the implementation hides it.
    fn public_message(&self) -> String {
        self.to_string()
    }

    /// Infisical's request id, when the upstream answered with one.
    fn upstream_req_id(&self) -> Option<&str> {
        None
    }

    /// Extra `ErrorInfo.metadata` entries that help a caller act (e.g. the consumers a
    /// handover still waits for); never a secret. Empty unless the implementation says more.
    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The failure as a plain value.
    fn failure(&self) -> Failure {
        Failure {
            classification: self.classify(),
            message: self.public_message(),
            upstream_req_id: self.upstream_req_id().map(str::to_owned),
        }
    }
}

// === impl Classification ===

impl Classification {
    /// A classification.
    pub const fn new(code: Code, reason: &'static str, retry_after: Option<Duration>) -> Self {
        Self {
            code,
            reason,
            retry_after,
        }
    }
}

// === impl Failure ===

impl Failure {
    /// The stable reason.
    pub fn reason(&self) -> &'static str {
        self.classification.reason
    }
}
