//! The embedded SQLite backend: one file under `data_dir`, WAL journal, full fsync on commit.
//!
//! Writes go through a pool of **one** connection: SQLite has a single writer anyway, and queuing
//! writers in the pool (an async wait) instead of in SQLite's busy handler (which sleeps 1, 2,
//! 5, 10… ms between tries) keeps commit latency flat. Reads use their own pool; in WAL mode they
//! never wait for the writer. The single writer also means sequence numbers commit in order,
//! which the relay's read cursor relies on.
//!
//! Migrations live in `migrations/sqlite/` and are compiled into the binary with `include_str!`,
//! then applied by sqlx's own [`Migrator`] (built with `Migrator::with_migrations`, no macros).
//! Why not `sqlx::migrate!`: it needs sqlx's `macros` feature (about two more minutes per release
//! build). Why not `Migrator::new(path)`: that reads the directory at run time, so a deployed
//! binary would need the SQL files beside it. Embedding keeps one self-contained binary while
//! sqlx still records each migration's checksum in `_sqlx_migrations`, so a changed or missing
//! migration is refused at start-up instead of silently diverging.

mod local;
mod outbox;

pub use self::local::LEASE_TTL as LOCAL_LEASE_TTL;

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::StoreError;

/// The database file name inside `data_dir`.
pub const DB_FILE: &str = "rotator.db";

/// Every SQLite migration, in version order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "outbox",
        include_str!("../../../migrations/sqlite/0001_outbox.sql"),
    ),
    (
        2,
        "local",
        include_str!("../../../migrations/sqlite/0002_local.sql"),
    ),
    (
        3,
        "idempotency",
        include_str!("../../../migrations/sqlite/0003_idempotency.sql"),
    ),
];

/// How long a writer waits for another writer's lock before the call fails as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. Cheap to clone: clones share the connection pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: every write.
    writer: SqlitePool,
    /// Reads only.
    reader: SqlitePool,
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/rotator.db` and applies pending migrations.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, the file cannot be opened, or a migration fails or was
    /// changed after it had been applied.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        Self::open_file(&data_dir.join(DB_FILE)).await
    }

    /// Opens (creating if needed) the database file at `path` and applies pending migrations.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub async fn open_file(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::Open)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk when it returns, so an event written before the gRPC
            // answer survives a power loss too (NORMAL would only survive a process crash).
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::Open)?;
        migrator().run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(StoreError::Open)?;
        Ok(Self { writer, reader })
    }

    /// The writer pool (one connection), for stores of other tables that must share a
    /// transaction with the outbox (a local rotation commits its state and its event together).
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// The reader pool, for queries that change nothing.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Closes every connection, waiting for running statements.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_outbox_contract_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        crate::store::contract::outbox_contract(&store).await;
    }

    #[tokio::test]
    async fn reopening_keeps_rows_and_skips_applied_migrations() {
        use crate::store::{ReadOutbox as _, WriteOutbox as _};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("nested"))
            .await
            .expect("open creates the directory");
        let event = crate::store::NewOutboxEvent {
            event_id: uuid::Uuid::now_v7(),
            subject: "ldap-password.failed".into(),
            payload: b"{}".to_vec(),
            rotation_id: "r".into(),
            trace_headers: Vec::new(),
            request_id: "q".into(),
            created_at: chrono::Utc::now(),
        };
        store.append(event).await.expect("append");
        store.close().await;
        let store = SqliteStore::open(&dir.path().join("nested"))
            .await
            .expect("reopen");
        assert_eq!(store.backlog().await.expect("backlog").depth, 1);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn a_changed_migration_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1")
            .execute(store.pool())
            .await
            .expect("tamper");
        store.close().await;
        let err = SqliteStore::open(dir.path()).await.expect_err("refused");
        assert!(matches!(err, StoreError::Migrate(_)), "{err:?}");
    }
}
