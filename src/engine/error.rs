//! Why the engine could not serve a call, and its classification.

use tonic::Code;

use crate::local::LocalError;
use crate::proto::RotationType;
use crate::rotation::failure::{Classification, Classify};
use crate::upstream::infisical::UpstreamError;

/// A routing failure or a backend's failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The type is valid but not enabled on this server.
    #[error("rotation type {} is not enabled on this server", .0.slug().unwrap_or("unspecified"))]
    TypeNotEnabled(RotationType),
    /// No backend serves this rotation.
    #[error(
        "no backend serves rotation {0}: it is not in the local registry and no Infisical upstream is configured"
    )]
    NoBackend(String),
    /// The call is about local rotations only (confirmed handover) and none has this id.
    #[error("no local rotation {0}: confirmed handover is for rotations rotator runs itself")]
    NotLocal(String),
    /// The caller's deadline passed; a started rotation still finishes and reports by event.
    #[error(
        "the deadline passed before the rotation finished; it continues and its outcome is published as an event"
    )]
    DeadlineExceeded,
    /// The task running the rotation panicked or was cancelled (a bug); logged, not returned.
    #[error("the rotation task failed: {0}")]
    TaskFailed(#[source] tokio::task::JoinError),
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The local backend failed.
    #[error(transparent)]
    Local(#[from] LocalError),
}

impl Classify for EngineError {
    fn classify(&self) -> Classification {
        match self {
            Self::TypeNotEnabled(_) => {
                Classification::new(Code::InvalidArgument, "ROTATION_TYPE_NOT_ENABLED", None)
            }
            Self::NoBackend(_) => Classification::new(Code::NotFound, "NO_BACKEND", None),
            Self::NotLocal(_) => {
                Classification::new(Code::NotFound, "LOCAL_ROTATION_NOT_FOUND", None)
            }
            Self::DeadlineExceeded => {
                Classification::new(Code::DeadlineExceeded, "DEADLINE_EXCEEDED", None)
            }
            Self::TaskFailed(_) => Classification::new(Code::Internal, "INTERNAL", None),
            Self::Upstream(e) => e.classify(),
            Self::Local(e) => e.classify(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::TaskFailed(_) => {
                "internal error; the server log has the detail under this request id".to_owned()
            }
            other => other.to_string(),
        }
    }

    fn upstream_req_id(&self) -> Option<&str> {
        match self {
            Self::Upstream(e) => e.req_id(),
            _ => None,
        }
    }

    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Local(e) => e.error_metadata(),
            _ => Vec::new(),
        }
    }
}
