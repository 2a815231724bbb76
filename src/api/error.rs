//! The api's error: what the api itself refuses (fields, identity, permission, framing,
//! overload) plus the engine's failures, each classified by its own type. `status` renders a
//! classification as a `tonic::Status`. Every reason has a page in `docs/errors.md`.

use tonic::Code;

use super::auth::AuthError;
use super::authz::Denial;
use super::rescue::{Rejection, RejectionKind};
use crate::engine::EngineError;
use crate::rotation::failure::{Classification, Classify, RETRY_SOON};

/// Which request field was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The `type` field.
    RotationType,
    /// The `rotation_id` field.
    RotationId,
    /// The rotation name lookup.
    RotationName,
    /// The `project_id` field.
    ProjectId,
    /// The `x-request-id` metadata.
    RequestId,
    /// Request metadata in general.
    Metadata,
    /// The `consumer` field (ConfirmCredentialInUse).
    Consumer,
    /// The `version` field (ConfirmCredentialInUse).
    Version,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A request field is missing or malformed. Nothing was sent anywhere.
    #[error("{message}")]
    InvalidArgument {
        /// The offending field.
        field: Field,
        /// What is wrong, for a person.
        message: String,
    },
    /// The caller proved no identity. Nothing was sent anywhere.
    #[error(transparent)]
    Unauthenticated(AuthError),
    /// The caller's identity lacks the permission. Nothing was sent anywhere.
    #[error("{0}")]
    PermissionDenied(Box<Denial>),
    /// tonic refused the request before a handler ran (bad protobuf or framing, too large,
    /// unknown method or encoding). Nothing was sent anywhere.
    #[error(transparent)]
    Rejected(Rejection),
    /// The server is at its concurrent-call bound.
    #[error("the server is at its limit of concurrent calls; retry shortly")]
    Overloaded,
    /// The engine or a backend failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

// === impl ServiceError ===

impl ServiceError {
    /// Shorthand for an invalid field.
    pub fn invalid(field: Field, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
    }
}

impl Classify for ServiceError {
    fn classify(&self) -> Classification {
        let class = Classification::new;
        match self {
            Self::InvalidArgument { field, .. } => class(
                Code::InvalidArgument,
                match field {
                    Field::RotationType => "INVALID_ROTATION_TYPE",
                    Field::RotationId => "INVALID_ROTATION_ID",
                    Field::RotationName => "INVALID_ROTATION_NAME",
                    Field::ProjectId => "INVALID_PROJECT_ID",
                    Field::RequestId => "INVALID_REQUEST_ID",
                    Field::Metadata => "INVALID_METADATA",
                    Field::Consumer => "INVALID_CONSUMER",
                    Field::Version => "INVALID_VERSION",
                },
                None,
            ),
            Self::Unauthenticated(_) => class(Code::Unauthenticated, "UNAUTHENTICATED", None),
            Self::PermissionDenied(_) => class(Code::PermissionDenied, "PERMISSION_DENIED", None),
            Self::Rejected(r) => match r.kind {
                RejectionKind::Malformed => class(Code::InvalidArgument, "MALFORMED_REQUEST", None),
                RejectionKind::TooLarge => {
                    class(Code::ResourceExhausted, "MESSAGE_TOO_LARGE", None)
                }
                RejectionKind::Unsupported => {
                    class(Code::Unimplemented, "UNSUPPORTED_REQUEST", None)
                }
            },
            Self::Overloaded => class(Code::ResourceExhausted, "OVERLOADED", RETRY_SOON),
            Self::Engine(e) => e.classify(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Engine(e) => e.public_message(),
            other => other.to_string(),
        }
    }

    fn upstream_req_id(&self) -> Option<&str> {
        match self {
            Self::Engine(e) => e.upstream_req_id(),
            _ => None,
        }
    }

    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Engine(e) => e.error_metadata(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_details_stay_in_the_log() {
        let panicked = tokio::spawn(async { panic!("database file /secret/path is corrupt") })
            .await
            .expect_err("the task panicked");
        let e = ServiceError::Engine(EngineError::TaskFailed(panicked));
        assert!(!e.public_message().contains("/secret/path"));
        assert_eq!(e.classify().reason, "INTERNAL");
    }
}
