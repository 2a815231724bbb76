//! Errors of the Infisical upstream, classified by what they prove about the rotation.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tonic::Code;

use crate::rotation::failure::{Classification, Classify, RETRY_SOON};

/// An error answer from Infisical (`{reqId, statusCode, message, error, details?}`).
#[derive(Debug, Clone)]
pub struct HttpFailure {
    /// HTTP status code.
    pub status: u16,
    /// The upstream `error` name, e.g. `PermissionDenied`.
    pub error_name: Option<String>,
    /// The upstream `message`; a 422's array of issues is joined into one line.
    pub message: String,
    /// Infisical's request id; absent on route-not-found answers.
    pub req_id: Option<String>,
    /// The wait a 429 asks for.
    pub retry_after: Option<Duration>,
}

/// Why a call to Infisical failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Infisical answered with an error status.
    #[error("Infisical answered {}: {}", .0.status, .0.message)]
    Http(HttpFailure),
    /// The connection failed before any byte of the request was sent.
    #[error("could not connect to Infisical: {0}")]
    Connect(String),
    /// No answer within the deadline. `sent` says whether the request may have reached Infisical.
    #[error("Infisical did not answer within the deadline")]
    Timeout {
        /// Whether the request was (possibly) sent.
        sent: bool,
    },
    /// The connection broke after the request was sent.
    #[error("the connection to Infisical broke mid-request: {0}")]
    Transport(String),
    /// The answer could not be read.
    #[error("Infisical answered with an unexpected body: {0}")]
    Decode(String),
    /// Logging in failed recently; rotator waits before trying again so the identity is not
    /// locked out.
    #[error("logging in to Infisical failed recently; next attempt in {} s", .retry_in.as_secs())]
    LoginBackoff {
        /// When the next login may be tried.
        retry_in: Duration,
    },
    /// A rotate call's outcome could not be established, even after reading the rotation back.
    #[error("the outcome of the rotation is unknown ({cause})")]
    OutcomeUnknown {
        /// What made the outcome ambiguous.
        cause: Box<UpstreamError>,
        /// `lastRotatedAt` before the call: a later value means the rotation happened.
        baseline: prost_types::Timestamp,
    },
}

// === impl HttpFailure ===

impl HttpFailure {
    /// This failure as the error of a call whose own answer had `req_id` (read back later).
    pub fn with_req_id(mut self, req_id: Option<&str>) -> UpstreamError {
        if self.req_id.is_none() {
            self.req_id = req_id.map(str::to_owned);
        }
        UpstreamError::Http(self)
    }

    /// Builds a failure from a status and the raw body of an error answer.
    pub fn from_body(status: u16, body: &[u8], retry_after_header: Option<&str>) -> Self {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            req_id: Option<String>,
            message: Option<Value>,
            error: Option<String>,
        }
        let parsed: Option<Body> = serde_json::from_slice(body).ok();
        let (req_id, message, error_name) = match parsed {
            Some(b) => (b.req_id, b.message.map(message_text), b.error),
            None => (None, None, None),
        };
        let message = message.unwrap_or_else(|| format!("HTTP {status} without an error body"));
        let retry_after = (status == 429)
            .then(|| retry_after(retry_after_header, &message))
            .flatten();
        Self {
            status,
            error_name,
            message,
            req_id,
            retry_after,
        }
    }

    /// 401, or 403 `TokenError`: the token was rejected before the route ran, so nothing changed.
    pub fn is_token_rejection(&self) -> bool {
        self.status == 401
            || (self.status == 403 && self.error_name.as_deref() == Some("TokenError"))
    }

    /// 400 "A rotation is already in progress…".
    pub fn is_rotation_in_progress(&self) -> bool {
        self.status == 400 && self.message.contains("already in progress")
    }

    /// 400 plan restriction.
    pub fn is_plan_restriction(&self) -> bool {
        self.status == 400 && self.message.contains("plan restriction")
    }

    /// 400 "… is not configured for <Display Name>": the type does not match the rotation.
    pub fn is_type_mismatch(&self) -> bool {
        self.status == 400 && self.message.contains("is not configured for")
    }

    /// 500 `DatabaseError` / "Something went wrong": the provider may have been changed.
    pub fn is_ambiguous_server_error(&self) -> bool {
        self.status == 500
            && (self.error_name.as_deref() == Some("DatabaseError")
                || self.message == "Something went wrong")
    }
}

/// A 422's message is an array of Zod issues; one line is easier on a person.
fn message_text(message: Value) -> String {
    match message {
        Value::String(s) => s,
        Value::Array(items) => items
            .iter()
            .map(|i| match (i.get("path"), i.get("message")) {
                (Some(path), Some(Value::String(m))) => format!("{}: {m}", path_text(path)),
                (_, Some(Value::String(m))) => m.clone(),
                _ => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn path_text(path: &Value) -> String {
    match path {
        Value::Array(parts) => parts
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| p.to_string())
            })
            .collect::<Vec<_>>()
            .join("."),
        other => other.to_string(),
    }
}

/// `Retry-After` if present, else the N of "try again in N seconds", else 60 s (the spec's rule).
fn retry_after(header: Option<&str>, message: &str) -> Option<Duration> {
    if let Some(secs) = header.and_then(|h| h.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    let from_message = message
        .split("try again in ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    Some(Duration::from_secs(from_message.unwrap_or(60)))
}

// === impl UpstreamError ===

impl UpstreamError {
    /// Whether a GET may be retried after this error.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http(f) => matches!(f.status, 500 | 502 | 503 | 504),
            Self::Connect(_) | Self::Timeout { .. } | Self::Transport(_) => true,
            Self::Decode(_) | Self::LoginBackoff { .. } | Self::OutcomeUnknown { .. } => false,
        }
    }

    /// Whether a rotate call that failed this way may nevertheless have rotated.
    pub fn is_ambiguous_for_rotate(&self) -> bool {
        match self {
            Self::Http(f) => matches!(f.status, 502..=504) || f.is_ambiguous_server_error(),
            Self::Timeout { sent } => *sent,
            Self::Transport(_) | Self::Decode(_) => true,
            Self::Connect(_) | Self::LoginBackoff { .. } | Self::OutcomeUnknown { .. } => false,
        }
    }

    /// Infisical's request id, when the answer carried one.
    pub fn req_id(&self) -> Option<&str> {
        match self {
            Self::Http(f) => f.req_id.as_deref(),
            Self::OutcomeUnknown { cause, .. } => cause.req_id(),
            _ => None,
        }
    }
}

impl Classify for UpstreamError {
    /// The codes the spec recommends for each upstream status (spec `infisical-api.md`).
    fn classify(&self) -> Classification {
        classify_upstream(self)
    }

    fn upstream_req_id(&self) -> Option<&str> {
        self.req_id()
    }
}

fn classify_upstream(e: &UpstreamError) -> Classification {
    match e {
        UpstreamError::Http(f) => match f.status {
            400 if f.is_rotation_in_progress() => Classification::new(
                Code::Aborted,
                "UPSTREAM_ROTATION_IN_PROGRESS",
                Some(Duration::from_secs(5)),
            ),
            400 if f.is_plan_restriction() => {
                Classification::new(Code::FailedPrecondition, "UPSTREAM_PLAN_RESTRICTED", None)
            }
            400 if f.is_type_mismatch() => {
                Classification::new(Code::InvalidArgument, "ROTATION_TYPE_MISMATCH", None)
            }
            400 => Classification::new(Code::FailedPrecondition, "UPSTREAM_REJECTED", None),
            401 => Classification::new(Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED", None),
            403 if f.is_token_rejection() => {
                Classification::new(Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED", None)
            }
            403 => Classification::new(Code::PermissionDenied, "UPSTREAM_PERMISSION_DENIED", None),
            404 if f.req_id.is_none() => {
                Classification::new(Code::InvalidArgument, "UPSTREAM_TYPE_UNSUPPORTED", None)
            }
            404 => Classification::new(Code::NotFound, "ROTATION_NOT_FOUND", None),
            422 => Classification::new(Code::InvalidArgument, "UPSTREAM_VALIDATION_FAILED", None),
            429 => Classification::new(
                Code::ResourceExhausted,
                "UPSTREAM_RATE_LIMITED",
                f.retry_after.or(Some(Duration::from_secs(60))),
            ),
            500 => Classification::new(Code::Internal, "UPSTREAM_ROTATION_FAILED", None),
            502 | 503 => Classification::new(Code::Unavailable, "UPSTREAM_UNAVAILABLE", RETRY_SOON),
            504 => Classification::new(Code::DeadlineExceeded, "UPSTREAM_TIMEOUT", None),
            _ => Classification::new(Code::Internal, "UPSTREAM_ERROR", None),
        },
        UpstreamError::Connect(_) => {
            Classification::new(Code::Unavailable, "UPSTREAM_UNREACHABLE", RETRY_SOON)
        }
        UpstreamError::Timeout { sent: false } => {
            Classification::new(Code::DeadlineExceeded, "DEADLINE_EXCEEDED", None)
        }
        UpstreamError::Timeout { sent: true } => {
            Classification::new(Code::DeadlineExceeded, "UPSTREAM_TIMEOUT", None)
        }
        UpstreamError::Transport(_) => {
            Classification::new(Code::Unavailable, "UPSTREAM_CONNECTION_LOST", RETRY_SOON)
        }
        UpstreamError::Decode(_) => {
            Classification::new(Code::Internal, "UPSTREAM_BAD_ANSWER", None)
        }
        UpstreamError::LoginBackoff { retry_in } => {
            Classification::new(Code::Unavailable, "UPSTREAM_LOGIN_BACKOFF", Some(*retry_in))
        }
        // Never advise a retry: the rotation may have happened.
        UpstreamError::OutcomeUnknown { cause, .. } => {
            let code = match classify_upstream(cause).code {
                Code::DeadlineExceeded => Code::DeadlineExceeded,
                Code::Unavailable => Code::Unavailable,
                _ => Code::Internal,
            };
            Classification::new(code, "ROTATION_OUTCOME_UNKNOWN", None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, error: &str, message: &str, req_id: Option<&str>) -> UpstreamError {
        UpstreamError::Http(HttpFailure {
            status,
            error_name: Some(error.into()),
            message: message.into(),
            req_id: req_id.map(Into::into),
            retry_after: None,
        })
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
        let e = UpstreamError::OutcomeUnknown {
            cause: Box::new(UpstreamError::Timeout { sent: true }),
            baseline: prost_types::Timestamp::default(),
        };
        let c = e.classify();
        assert_eq!(
            (c.code, c.reason, c.retry_after),
            (Code::DeadlineExceeded, "ROTATION_OUTCOME_UNKNOWN", None)
        );
    }

    #[test]
    fn a_422_array_message_becomes_one_readable_line() {
        let body = br#"{"reqId":"req-abcdefghijklmn","statusCode":422,"error":"ValidationFailure",
            "message":[{"code":"invalid_string","path":["rotationId"],"message":"Invalid uuid"}]}"#;
        let f = HttpFailure::from_body(422, body, None);
        assert_eq!(f.message, "rotationId: Invalid uuid");
        assert_eq!(f.req_id.as_deref(), Some("req-abcdefghijklmn"));
    }

    #[test]
    fn a_429_wait_comes_from_the_header_then_the_message_then_sixty_seconds() {
        let body = br#"{"reqId":"r","statusCode":429,"error":"RateLimitExceeded","message":"Rate limit exceeded. Please try again in 7 seconds"}"#;
        assert_eq!(
            HttpFailure::from_body(429, body, Some("3")).retry_after,
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            HttpFailure::from_body(429, body, None).retry_after,
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            HttpFailure::from_body(429, b"{}", None).retry_after,
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn token_errors_are_told_apart_from_permission_errors() {
        let expired = HttpFailure::from_body(403, br#"{"error":"TokenError","message":"Your token has expired. Please re-authenticate."}"#, None);
        let denied = HttpFailure::from_body(403, br#"{"error":"PermissionDenied","message":"You are not allowed to rotate-secrets on secret-rotation"}"#, None);
        assert!(expired.is_token_rejection());
        assert!(!denied.is_token_rejection());
    }
}
