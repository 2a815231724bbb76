//! Why a local rotation call failed, and its classification.

use tonic::Code;

use crate::crypto::CryptoError;
use crate::drivers::{BuildError, DriverError};
use crate::proto::RotationType;
use crate::rotation::failure::{Classification, Classify, RETRY_SOON};
use crate::store::StoreError;

/// A local backend failure. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Another attempt holds the rotation's lease.
    #[error("rotation {rotation_id} is being rotated by attempt {attempt_id}; retry when it ends")]
    Busy {
        /// The rotation.
        rotation_id: String,
        /// The running attempt (the lease holder).
        attempt_id: String,
    },
    /// The request's type is not the registered rotation's type.
    #[error("rotation {rotation_id} is a {} rotation, not {}", .declared.slug().unwrap_or("?"), .requested.slug().unwrap_or("?"))]
    TypeMismatch {
        /// The rotation.
        rotation_id: String,
        /// Its registered type.
        declared: RotationType,
        /// The request's type.
        requested: RotationType,
    },
    /// The target refused or could not be reached; the stored credentials are unchanged.
    #[error("the rotation failed; the stored credentials are unchanged: {0}")]
    Driver(#[source] DriverError),
    /// The rotation cannot run with its configuration.
    #[error("the local rotation is misconfigured: {0}")]
    Build(#[source] BuildError),
    /// The registry does not fit the drivers (unknown app, option or type, bad parameters),
    /// named by config key.
    #[error("the local registry does not fit the drivers: {}", crate::config::ConfigError(.0.clone()))]
    Misconfigured(Vec<crate::config::ConfigProblem>),
    /// The store failed.
    #[error("the local store failed: {0}")]
    Store(#[source] StoreError),
    /// The attempt's event could not be encoded.
    #[error("the attempt's event could not be encoded: {0}")]
    Event(#[source] crate::events::EventsError),
    /// Another holder took the lease mid-attempt; this one stopped writing.
    #[error("the rotation's lease was taken over; this attempt stopped")]
    LostLease,
    /// A stored credential could not be decrypted.
    #[error("a stored credential cannot be decrypted: {0}")]
    Crypto(#[source] CryptoError),
    /// The rotation has no credential yet (its first create has not succeeded).
    #[error("rotation {0} has no issued credential yet")]
    NoCredential(String),
    /// The target stopped answering after it may have taken the candidate: the attempt stays
    /// open and completes in the background when the target answers again (it never ends
    /// failed while the target may hold the candidate).
    #[error(
        "attempt {attempt_id} could not finish: {cause}; it stays open and completes in the background when the target answers"
    )]
    Pending {
        /// The open attempt.
        attempt_id: String,
        /// The last failure.
        #[source]
        cause: DriverError,
    },
    /// A call with an idempotency key already seen, whose attempt failed: its failure again.
    #[error("attempt {attempt_id} of this idempotency key failed: {message}")]
    Replayed {
        /// The attempt the key named.
        attempt_id: String,
        /// Its redacted failure message.
        message: String,
    },
    /// The rotation would replace a credential that named consumers may still use: they have
    /// not all confirmed the committed version, and its handover grace has not ended. Nothing
    /// was attempted (a scheduled rotation is deferred, not failed).
    #[error(
        "rotation {rotation_id} waits for its consumers to confirm version {version} ({}) until {}",
        .unconfirmed.join(", "),
        .grace_ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )]
    HandoverPending {
        /// The rotation.
        rotation_id: String,
        /// The committed version the consumers are asked to confirm.
        version: u64,
        /// The named consumers that have not confirmed it.
        unconfirmed: Vec<String>,
        /// When the grace ends and the rotation goes ahead anyway.
        grace_ends_at: chrono::DateTime<chrono::Utc>,
    },
    /// A confirmation from a consumer the rotation does not name.
    #[error("rotation {rotation_id} names no consumer {consumer:?} (it names: {})", .named.join(", "))]
    ConsumerNotNamed {
        /// The rotation.
        rotation_id: String,
        /// The consumer in the request.
        consumer: String,
        /// The consumers the rotation names.
        named: Vec<String>,
    },
    /// A confirmation of a version that is not the rotation's committed one; not recorded.
    #[error(
        "version {version} is not the committed version of rotation {rotation_id}, which is {current}"
    )]
    VersionNotCurrent {
        /// The rotation.
        rotation_id: String,
        /// The version in the request.
        version: u64,
        /// The committed version (0 before the first commit).
        current: u64,
    },
}

impl From<StoreError> for LocalError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LostLease => Self::LostLease,
            other => Self::Store(other),
        }
    }
}

impl From<CryptoError> for LocalError {
    fn from(e: CryptoError) -> Self {
        Self::Crypto(e)
    }
}

impl Classify for LocalError {
    fn classify(&self) -> Classification {
        let class = Classification::new;
        match self {
            Self::Busy { .. } => class(Code::Aborted, "ROTATION_IN_PROGRESS", None),
            Self::TypeMismatch { .. } => {
                class(Code::InvalidArgument, "ROTATION_TYPE_MISMATCH", None)
            }
            Self::Driver(d) if d.is_transient() => class(Code::Unavailable, d.reason(), None),
            Self::Driver(d) => class(Code::FailedPrecondition, d.reason(), None),
            Self::Build(_) | Self::Misconfigured(_) => class(
                Code::FailedPrecondition,
                "LOCAL_ROTATION_MISCONFIGURED",
                None,
            ),
            Self::Store(e) if e.is_transient() => {
                class(Code::Unavailable, "STORE_BUSY", RETRY_SOON)
            }
            Self::Store(_) | Self::Event(_) => class(Code::Internal, "STORE_FAILED", None),
            Self::LostLease => class(Code::Aborted, "LEASE_LOST", None),
            Self::Crypto(_) => class(Code::Internal, "CREDENTIAL_UNREADABLE", None),
            Self::NoCredential(_) => class(Code::FailedPrecondition, "NO_CREDENTIAL_ISSUED", None),
            Self::Pending { .. } => class(
                Code::Unavailable,
                "ROTATION_PENDING",
                Some(std::time::Duration::from_secs(5)),
            ),
            Self::Replayed { .. } => {
                class(Code::FailedPrecondition, "ROTATION_FAILED_REPLAYED", None)
            }
            Self::HandoverPending { grace_ends_at, .. } => class(
                Code::FailedPrecondition,
                "HANDOVER_PENDING",
                // Retrying before the grace ends is refused again unless every consumer
                // confirmed; at least a second, so a caller never spins.
                Some(
                    (*grace_ends_at - chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .max(std::time::Duration::from_secs(1)),
                ),
            ),
            Self::ConsumerNotNamed { .. } => {
                class(Code::FailedPrecondition, "CONSUMER_NOT_NAMED", None)
            }
            Self::VersionNotCurrent { .. } => {
                class(Code::FailedPrecondition, "VERSION_NOT_CURRENT", None)
            }
        }
    }

    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::HandoverPending {
                version,
                unconfirmed,
                grace_ends_at,
                ..
            } => vec![
                ("unconfirmed_consumers", unconfirmed.join(",")),
                ("version", version.to_string()),
                (
                    "grace_ends_at",
                    grace_ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ),
            ],
            Self::ConsumerNotNamed { named, .. } => vec![("consumers", named.join(","))],
            Self::VersionNotCurrent { current, .. } => {
                vec![("committed_version", current.to_string())]
            }
            _ => Vec::new(),
        }
    }
}
