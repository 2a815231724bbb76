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
    /// Another holder took the lease (a rotation's, or the relay's): its fencing token moved
    /// on; nothing was written.
    #[error("the lease was taken over by another holder")]
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

    /// Classifies a query error: busy/locked, pool exhaustion, a lost connection and
    /// PostgreSQL's serialization, deadlock and shutdown codes are transient.
    pub(crate) fn query(error: sqlx::Error) -> Self {
        let busy = match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_code(&code)),
            _ => false,
        };
        if busy {
            Self::Busy(error)
        } else {
            Self::Query(error)
        }
    }
}

/// Whether a database error code (SQLite's number or PostgreSQL's SQLSTATE) says "try again".
fn is_transient_code(code: &str) -> bool {
    match code.parse::<i32>() {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes in the low byte.
        Ok(sqlite) if !code.starts_with('0') && code.len() < 5 => matches!(sqlite & 0xff, 5 | 6),
        // serialization_failure, deadlock_detected, lock_not_available, the connection
        // exception class (08…) and operator intervention (57P…: admin or crash shutdown).
        _ => {
            matches!(code, "40001" | "40P01" | "55P03")
                || code.starts_with("08")
                || code.starts_with("57P")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_transient_code;

    #[test]
    fn transient_codes_of_both_databases() {
        for code in [
            "5", "6", "517", "262", "40001", "40P01", "55P03", "08006", "57P01",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["19", "2067", "23505", "42P01", "22001"] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
}
