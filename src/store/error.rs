//! Store errors, classified by what the caller can do about them. Database error codes map to
//! these kinds here and nowhere else.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {}: {source}", .path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("cannot open the store: {0}")]
    Open(#[source] sqlx::Error),
    /// The schema could not be brought up to date, or an applied migration was changed.
    #[error("cannot migrate the store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database is busy or locked by another writer; retrying soon may succeed.
    #[error("the store is busy: {0}")]
    Busy(#[source] sqlx::Error),
    /// Any other database failure.
    #[error("store query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// Another holder took the rotation's lease (its fencing token moved on); nothing was
    /// written.
    #[error("the rotation's lease was taken over by another holder")]
    LostLease,
    /// A stored row does not decode.
    #[error("a stored row is malformed: {0}")]
    Corrupt(String),
}

// === impl StoreError ===

impl StoreError {
    /// A short, bounded name of the failure, for the `error.type` of spans.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DataDir { .. } | Self::Open(_) | Self::Migrate(_) => "open",
            Self::Busy(_) => "busy",
            Self::Query(_) => "query",
            Self::LostLease => "lost_lease",
            Self::Corrupt(_) => "corrupt",
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Busy(_))
    }

    /// Classifies a query error: busy/locked and pool exhaustion are transient.
    pub(crate) fn query(error: sqlx::Error) -> Self {
        let busy = match &error {
            sqlx::Error::PoolTimedOut => true,
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes in the low byte.
            sqlx::Error::Database(db) => db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
            _ => false,
        };
        if busy {
            Self::Busy(error)
        } else {
            Self::Query(error)
        }
    }
}
