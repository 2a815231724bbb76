//! Why a local rotation call failed. Classified into gRPC only by `crate::error`.

use crate::drivers::{BuildError, DriverError};
use crate::local::crypto::CryptoError;
use crate::proto::RotationType;

/// A local backend failure. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
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
    Driver(DriverError),
    /// The rotation cannot run with its configuration.
    #[error("the local rotation is misconfigured: {0}")]
    Build(BuildError),
    /// The store failed.
    #[error("the local store failed: {message}")]
    Store {
        /// Secret-free detail.
        message: String,
        /// Whether retrying soon may pass.
        transient: bool,
    },
    /// Another holder took the lease mid-attempt; this one stopped writing.
    #[error("the rotation's lease was taken over; this attempt stopped")]
    LostLease,
    /// A stored credential could not be decrypted.
    #[error("a stored credential cannot be decrypted: {0}")]
    Crypto(CryptoError),
    /// The rotation has no credential yet (its first create has not succeeded).
    #[error("rotation {0} has no issued credential yet")]
    NoCredential(String),
    /// A call with an idempotency key already seen, whose attempt failed: its failure again.
    #[error("attempt {attempt_id} of this idempotency key failed: {message}")]
    Replayed {
        /// The attempt the key named.
        attempt_id: String,
        /// Its redacted failure message.
        message: String,
    },
}

impl From<crate::store::StoreError> for LocalError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::LostLease => Self::LostLease,
            other => Self::Store {
                transient: other.is_transient(),
                message: other.to_string(),
            },
        }
    }
}

impl From<CryptoError> for LocalError {
    fn from(e: CryptoError) -> Self {
        Self::Crypto(e)
    }
}
