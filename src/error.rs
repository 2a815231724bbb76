//! The service's error type and its classification: the one place that decides the gRPC code,
//! the `ErrorInfo.reason` and whether a retry is safe. `api::status` turns a classification into
//! a `tonic::Status` with details. Every reason has a page in `docs/errors.md`.

use std::time::Duration;

use tonic::Code;

use crate::api::auth::AuthError;
use crate::api::authz::Denial;
use crate::api::rescue::{Rejection, RejectionKind};
use crate::proto::RotationType;
use crate::upstream::infisical::UpstreamError;

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
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A request field is missing or malformed. Nothing was sent anywhere.
    #[error("{message}")]
    InvalidArgument {
        /// The offending field.
        field: Field,
        /// What is wrong, for a person.
        message: String,
    },
    /// The type is valid but not enabled on this server.
    #[error("rotation type {} is not enabled on this server", .0.slug().unwrap_or("unspecified"))]
    TypeNotEnabled(RotationType),
    /// No backend serves this rotation.
    #[error(
        "no backend serves rotation {0}: it is not in the local registry and no Infisical upstream is configured"
    )]
    NoBackend(String),
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
    /// The caller's deadline passed; a started rotation still finishes and reports by event.
    #[error(
        "the deadline passed before the rotation finished; it continues and its outcome is published as an event"
    )]
    DeadlineExceeded,
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The local backend failed.
    #[error(transparent)]
    Local(#[from] crate::local::error::LocalError),
    /// A bug or an unexpected state; the detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// The decision for one error: code, reason and retry advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The gRPC code.
    pub code: Code,
    /// The stable `ErrorInfo.reason`, UPPER_SNAKE_CASE.
    pub reason: &'static str,
    /// When set, retrying after this delay is safe.
    pub retry_after: Option<Duration>,
}

const fn class(code: Code, reason: &'static str, retry_after: Option<Duration>) -> Classification {
    Classification {
        code,
        reason,
        retry_after,
    }
}

const SOON: Option<Duration> = Some(Duration::from_secs(1));

// === impl ServiceError ===

impl ServiceError {
    /// Shorthand for an invalid field.
    pub fn invalid(field: Field, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    /// Classifies the error. Exhaustive on purpose: a new variant must be decided here.
    pub fn classify(&self) -> Classification {
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
                },
                None,
            ),
            Self::TypeNotEnabled(_) => {
                class(Code::InvalidArgument, "ROTATION_TYPE_NOT_ENABLED", None)
            }
            Self::NoBackend(_) => class(Code::NotFound, "NO_BACKEND", None),
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
            Self::Overloaded => class(Code::ResourceExhausted, "OVERLOADED", SOON),
            Self::DeadlineExceeded => class(Code::DeadlineExceeded, "DEADLINE_EXCEEDED", None),
            Self::Internal(_) => class(Code::Internal, "INTERNAL", None),
            Self::Upstream(e) => classify_upstream(e),
            Self::Local(e) => classify_local(e),
        }
    }

    /// The message for the caller: the error text, except for internal errors.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => {
                "internal error; the server log has the detail under this request id".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Infisical's request id, when the upstream answered with one.
    pub fn upstream_req_id(&self) -> Option<&str> {
        match self {
            Self::Upstream(e) => e.req_id(),
            _ => None,
        }
    }
}

fn classify_local(e: &crate::local::error::LocalError) -> Classification {
    use crate::local::error::LocalError as L;
    match e {
        L::Busy { .. } => class(Code::Aborted, "ROTATION_IN_PROGRESS", None),
        L::TypeMismatch { .. } => class(Code::InvalidArgument, "ROTATION_TYPE_MISMATCH", None),
        L::Driver(d) if d.is_transient() => class(Code::Unavailable, d.reason(), None),
        L::Driver(d) => class(Code::FailedPrecondition, d.reason(), None),
        L::Build(_) => class(
            Code::FailedPrecondition,
            "LOCAL_ROTATION_MISCONFIGURED",
            None,
        ),
        L::Store {
            transient: true, ..
        } => class(Code::Unavailable, "STORE_BUSY", SOON),
        L::Store { .. } => class(Code::Internal, "STORE_FAILED", None),
        L::LostLease => class(Code::Aborted, "LEASE_LOST", None),
        L::Crypto(_) => class(Code::Internal, "CREDENTIAL_UNREADABLE", None),
        L::NoCredential(_) => class(Code::FailedPrecondition, "NO_CREDENTIAL_ISSUED", None),
        L::Replayed { .. } => class(Code::FailedPrecondition, "ROTATION_FAILED_REPLAYED", None),
    }
}

fn classify_upstream(e: &UpstreamError) -> Classification {
    match e {
        UpstreamError::Http(f) => match f.status {
            400 if f.is_rotation_in_progress() => class(
                Code::Aborted,
                "UPSTREAM_ROTATION_IN_PROGRESS",
                Some(Duration::from_secs(5)),
            ),
            400 if f.is_plan_restriction() => {
                class(Code::FailedPrecondition, "UPSTREAM_PLAN_RESTRICTED", None)
            }
            400 if f.is_type_mismatch() => {
                class(Code::InvalidArgument, "ROTATION_TYPE_MISMATCH", None)
            }
            400 => class(Code::FailedPrecondition, "UPSTREAM_REJECTED", None),
            401 => class(Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED", None),
            403 if f.is_token_rejection() => {
                class(Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED", None)
            }
            403 => class(Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED", None),
            404 if f.req_id.is_none() => {
                class(Code::InvalidArgument, "UPSTREAM_TYPE_UNSUPPORTED", None)
            }
            404 => class(Code::NotFound, "ROTATION_NOT_FOUND", None),
            422 => class(Code::InvalidArgument, "UPSTREAM_VALIDATION_FAILED", None),
            429 => class(
                Code::ResourceExhausted,
                "UPSTREAM_RATE_LIMITED",
                f.retry_after.or(Some(Duration::from_secs(60))),
            ),
            500 => class(Code::Internal, "UPSTREAM_ROTATION_FAILED", None),
            502 | 503 => class(Code::Unavailable, "UPSTREAM_UNAVAILABLE", SOON),
            504 => class(Code::DeadlineExceeded, "UPSTREAM_TIMEOUT", None),
            _ => class(Code::Internal, "UPSTREAM_ERROR", None),
        },
        UpstreamError::Connect(_) => class(Code::Unavailable, "UPSTREAM_UNREACHABLE", SOON),
        UpstreamError::Timeout { sent: false } => {
            class(Code::DeadlineExceeded, "DEADLINE_EXCEEDED", None)
        }
        UpstreamError::Timeout { sent: true } => {
            class(Code::DeadlineExceeded, "UPSTREAM_TIMEOUT", None)
        }
        UpstreamError::Transport(_) => class(Code::Unavailable, "UPSTREAM_CONNECTION_LOST", SOON),
        UpstreamError::Decode(_) => class(Code::Internal, "UPSTREAM_BAD_ANSWER", None),
        UpstreamError::LoginBackoff { retry_in } => {
            class(Code::Unavailable, "UPSTREAM_LOGIN_BACKOFF", Some(*retry_in))
        }
        // Never advise a retry: the rotation may have happened.
        UpstreamError::OutcomeUnknown { cause } => {
            let code = match classify_upstream(cause).code {
                Code::DeadlineExceeded => Code::DeadlineExceeded,
                Code::Unavailable => Code::Unavailable,
                _ => Code::Internal,
            };
            class(code, "ROTATION_OUTCOME_UNKNOWN", None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::infisical::HttpFailure;

    fn http(status: u16, error: &str, message: &str, req_id: Option<&str>) -> ServiceError {
        ServiceError::Upstream(UpstreamError::Http(HttpFailure {
            status,
            error_name: Some(error.into()),
            message: message.into(),
            req_id: req_id.map(Into::into),
            retry_after: None,
        }))
    }

    #[test]
    fn upstream_statuses_map_as_the_spec_recommends() {
        let r = Some("req-abcdefghijklmn");
        let cases = [
            (
                http(
                    400,
                    "BadRequest",
                    "A rotation is already in progress. Please try again shortly.",
                    r,
                ),
                Code::Aborted,
            ),
            (
                http(
                    400,
                    "BadRequest",
                    "Failed to rotate secret rotation secrets due to plan restriction. Upgrade plan to rotate secret rotation secrets.",
                    r,
                ),
                Code::FailedPrecondition,
            ),
            (
                http(
                    400,
                    "BadRequest",
                    "Secret Rotation with ID \"x\" is not configured for Auth0 Client Secret",
                    r,
                ),
                Code::InvalidArgument,
            ),
            (
                http(401, "UnauthorizedError", "Token missing", r),
                Code::Unauthenticated,
            ),
            (
                http(
                    403,
                    "TokenError",
                    "Your token has expired. Please re-authenticate.",
                    r,
                ),
                Code::Unauthenticated,
            ),
            (
                http(
                    403,
                    "PermissionDenied",
                    "You are not allowed to rotate-secrets on secret-rotation",
                    r,
                ),
                Code::PermissionDenied,
            ),
            (http(404, "NotFound", "Could not find", r), Code::NotFound),
            (
                http(404, "Not Found", "Route POST:/x not found", None),
                Code::InvalidArgument,
            ),
            (
                http(422, "ValidationFailure", "rotationId: Invalid uuid", r),
                Code::InvalidArgument,
            ),
            (
                http(
                    429,
                    "RateLimitExceeded",
                    "Rate limit exceeded. Please try again in 3 seconds",
                    r,
                ),
                Code::ResourceExhausted,
            ),
            (
                http(
                    500,
                    "InternalServerError",
                    "Infisical encountered an issue",
                    r,
                ),
                Code::Internal,
            ),
            (http(503, "ServiceUnavailable", "x", r), Code::Unavailable),
            (
                http(504, "GatewayTimeoutError", "Timeout error", r),
                Code::DeadlineExceeded,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.classify().code, code, "{error}");
        }
    }

    #[test]
    fn an_unknown_outcome_never_advises_a_retry() {
        let e = ServiceError::Upstream(UpstreamError::OutcomeUnknown {
            cause: Box::new(UpstreamError::Timeout { sent: true }),
        });
        let c = e.classify();
        assert_eq!(
            (c.code, c.reason, c.retry_after),
            (Code::DeadlineExceeded, "ROTATION_OUTCOME_UNKNOWN", None)
        );
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let e = ServiceError::Internal("database file /secret/path is corrupt".into());
        assert!(!e.public_message().contains("/secret/path"));
    }
}
