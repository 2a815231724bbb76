//! [`Store`]: the one store type, on SQLite (embedded, one process) or PostgreSQL (shared by
//! replicas).
//!
//! Both backends run the same SQL text: every statement uses `$N` placeholders, which sqlx
//! accepts on SQLite too, and only column types both databases share (`BIGINT`/`INTEGER` times
//! as Unix milli- or microseconds, `TEXT`, `BLOB`/`BYTEA`). [`on_db!`] runs one method body
//! against whichever pool the store holds, so each operation is written once; the few
//! differences (schema DDL, the PostgreSQL outbox lock) are named where they happen.
//!
//! **SQLite** keeps one file under `data_dir` in WAL mode with full fsync. Writes go through a
//! pool of one connection: SQLite has a single writer anyway, and queuing writers in the pool
//! (an async wait) instead of in SQLite's busy handler (which sleeps 1, 2, 5, 10… ms between
//! tries) keeps commit latency flat. Reads use their own pool and never wait for the writer.
//!
//! **PostgreSQL** (`ROTATOR_STORE_URL`) lets several replicas share leases, attempts and the
//! outbox. Leases and fenced writes are row-locked updates, so two replicas never interleave
//! an attempt; outbox appends take a transaction-scoped advisory lock so that sequence numbers
//! become visible in order, which the relay's read cursor relies on.
//!
//! Migrations live in `migrations/<backend>/` and are compiled in with `include_str!`, then
//! applied by sqlx's [`Migrator`] (no `macros` feature: about two more minutes per release
//! build), which records each checksum so a changed migration is refused at start-up. On
//! PostgreSQL the migrator holds an advisory lock, so replicas starting together migrate once.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::StoreError;
use super::group_commit::OutboxAppender;
use super::write_group::WriteGroups;

/// The database file name inside `data_dir`.
pub const DB_FILE: &str = "rotator.db";

/// A migration: (version, description, SQL).
type MigrationSource = (i64, &'static str, &'static str);

macro_rules! migrations {
    ($dir:literal: $(($version:literal, $name:literal)),* $(,)?) => {
        &[$((
            $version,
            $name,
            include_str!(concat!("../../migrations/", $dir, "/000", $version, "_", $name, ".sql")),
        )),*]
    };
}

/// Every SQLite migration, in version order.
const SQLITE_MIGRATIONS: &[MigrationSource] = migrations!(
    "sqlite": (1, "outbox"), (2, "local"), (3, "idempotency"), (4, "credential_ids"),
    (5, "relay_lease"), (6, "deliveries"), (7, "handover")
);

/// Every PostgreSQL migration, in version order: the same tables as SQLite's.
const POSTGRES_MIGRATIONS: &[MigrationSource] = migrations!(
    "postgres": (1, "outbox"), (2, "local"), (3, "idempotency"), (4, "credential_ids"),
    (5, "relay_lease"), (6, "deliveries"), (7, "handover")
);

/// The page cache of each SQLite reader connection, in KiB (negative: SQLite's unit for KiB).
/// SQLite's default is 2,000 KiB per connection; the reads are point lookups by rotation id and
/// short index scans, the OS keeps the file's pages cached anyway, and four readers at the
/// default held ~8 MB resident with 10,000 rotations (`benches/scale.rs`).
const READER_CACHE_KIB: &str = "-256";

/// The writer's page cache, in KiB: its writes touch a few pages per rotation, and at the
/// default it held another ~2 MB resident once start-up had written every rotation's row.
const WRITER_CACHE_KIB: &str = "-512";

/// How long a SQLite writer waits for another process's lock before the call fails as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections to a PostgreSQL store per process. Local rotations hold one only for a short
/// transaction, so a few serve many calls; 100 replicas × this stays under `max_connections`.
const POSTGRES_POOL_SIZE: u32 = 8;

/// How long a call waits for a free PostgreSQL connection before failing as busy.
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The pools of a store.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// One writer connection and a pool of readers.
    Sqlite {
        /// Every write.
        writer: SqlitePool,
        /// Reads only.
        reader: SqlitePool,
        /// Outbox appends, group-committed through `writer`.
        appender: OutboxAppender,
        /// Local-rotation writes, group-committed through `writer`.
        groups: WriteGroups,
    },
    /// One pool for both.
    Postgres(PgPool),
}

/// The store. Cheap to clone: clones share the connection pools.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    /// How long a rotation's lease lasts past each fenced write.
    pub(crate) lease_ttl: Duration,
}

/// Runs `$body` against the store's pools: `$writer` and `$reader` are bound to the backend's
/// write and read pools (the same pool on PostgreSQL) and `$postgres` to whether it is
/// PostgreSQL. The body is expanded once per backend, so it is written once and type-checked
/// against both.
///
/// The body runs under no tracing subscriber, so with no current span. sqlx's SQLite worker
/// thread keeps the span that was current when a command was sent, and can hold it for long
/// after a transaction (until its next command): a rotation's span would then never end, and
/// never be exported. The store transaction's own span (`in_transaction_span`) wraps the whole
/// call, outside; sqlx's own events are not wanted (statement logging is off anyway).
///
/// The dispatch is `Dispatch::none()`, never a new one per call: `Dispatch::new` registers every
/// callsite again under a global lock, which cost 14–21 % of a forwarded call's CPU.
macro_rules! on_db {
    ($store:expr, |$writer:ident, $reader:ident, $postgres:ident| $body:expr) => {{
        use tracing::instrument::WithSubscriber as _;
        match &$store.backend {
            $crate::store::db::Backend::Sqlite { writer, reader, .. } => {
                #[allow(unused_variables)]
                let ($writer, $reader, $postgres) = (writer, reader, false);
                async { $body }
                    .with_subscriber(tracing::Dispatch::none())
                    .await
            }
            $crate::store::db::Backend::Postgres(pool) => {
                #[allow(unused_variables)]
                let ($writer, $reader, $postgres) = (pool, pool, true);
                async { $body }
                    .with_subscriber(tracing::Dispatch::none())
                    .await
            }
        }
    }};
}
pub(crate) use on_db;

/// Runs `$body` as one write transaction: `$tx` is bound to the transaction's connection and
/// `$postgres` to whether it is PostgreSQL; the value is returned once the transaction is
/// committed, and an error writes nothing. On SQLite the body is a member of a group commit
/// ([`WriteGroups`]), so it must own what it uses (it runs on the writer task); on PostgreSQL
/// it is a transaction of its own on a pooled connection. As for [`on_db!`], the body is
/// expanded once per backend and runs under no tracing subscriber.
///
/// `write_tx!(store, one_effect, |tx, postgres| …)` marks a body whose failure leaves nothing
/// that matters behind (one write statement, or a fence renewal before a statement that found
/// no row): in a SQLite group it runs without a SAVEPOINT of its own ([`Guard::None`]).
macro_rules! write_tx {
    ($store:expr, one_effect, |$tx:ident, $postgres:ident| $body:expr) => {
        $crate::store::db::write_tx!(@guarded $store, $crate::store::write_group::Guard::None, |$tx, $postgres| $body)
    };
    ($store:expr, |$tx:ident, $postgres:ident| $body:expr) => {
        $crate::store::db::write_tx!(@guarded $store, $crate::store::write_group::Guard::Savepoint, |$tx, $postgres| $body)
    };
    (@guarded $store:expr, $guard:expr, |$tx:ident, $postgres:ident| $body:expr) => {{
        use tracing::instrument::WithSubscriber as _;
        match &$store.backend {
            $crate::store::db::Backend::Sqlite { groups, .. } => {
                groups
                    .write($guard, move |$tx: &mut sqlx::SqliteConnection| {
                        #[allow(unused_variables)]
                        let $postgres = false;
                        Box::pin(async move { $body })
                    })
                    .await
            }
            $crate::store::db::Backend::Postgres(pool) => {
                async {
                    #[allow(unused_variables)]
                    let $postgres = true;
                    let mut transaction = pool.begin().await.map_err(StoreError::query)?;
                    let value = {
                        let $tx: &mut sqlx::PgConnection = &mut *transaction;
                        async { $body }.await?
                    };
                    transaction.commit().await.map_err(StoreError::query)?;
                    Ok(value)
                }
                .with_subscriber(tracing::Dispatch::none())
                .await
            }
        }
    }};
}
pub(crate) use write_tx;

// === impl Store ===

impl Store {
    /// Opens the store the configuration names: PostgreSQL when `store_url` is set, else SQLite
    /// under `data_dir`, with the configured rotation lease TTL.
    ///
    /// # Errors
    ///
    /// As [`Store::open_sqlite`] or [`Store::open_postgres`].
    pub async fn open(config: &crate::config::Config) -> Result<Self, StoreError> {
        let store = match &config.store_url {
            Some(url) => Self::open_postgres(url.expose()).await?,
            None => Self::open_sqlite(&config.data_dir).await?,
        };
        Ok(store.with_lease_ttl(config.local_timing.lease_ttl))
    }

    /// Opens (creating if needed) `data_dir/rotator.db` and applies pending migrations.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, the file cannot be opened, or a migration fails or was
    /// changed after it had been applied.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        Self::open_sqlite_file(&data_dir.join(DB_FILE)).await
    }

    /// Opens (creating if needed) the SQLite database file at `path` and applies pending
    /// migrations.
    ///
    /// # Errors
    ///
    /// As [`Store::open_sqlite`].
    pub async fn open_sqlite_file(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::Open)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk when it returns, so an event written before the gRPC
            // answer survives a power loss too (NORMAL would only survive a process crash).
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // The outbox's group-commit statements (one per group size) beside the rest.
            .statement_cache_capacity(100 + super::group_commit::MAX_BATCH);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().pragma("cache_size", WRITER_CACHE_KIB))
            .await
            .map_err(StoreError::Open)?;
        migrator(SQLITE_MIGRATIONS).run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.pragma("cache_size", READER_CACHE_KIB))
            .await
            .map_err(StoreError::Open)?;
        let appender = OutboxAppender::spawn(writer.clone());
        let groups = WriteGroups::spawn(writer.clone());
        Ok(Self {
            backend: Backend::Sqlite {
                writer,
                reader,
                appender,
                groups,
            },
            lease_ttl: super::LEASE_TTL,
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://…`) and applies pending
    /// migrations.
    ///
    /// # Errors
    ///
    /// The URL does not parse, the server cannot be reached, or a migration fails.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(StoreError::Open)?
            .application_name("rotator");
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_POOL_SIZE)
            .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(StoreError::Open)?;
        migrator(POSTGRES_MIGRATIONS).run(&pool).await?;
        Ok(Self {
            backend: Backend::Postgres(pool),
            lease_ttl: super::LEASE_TTL,
        })
    }

    /// This store with rotation leases lasting `ttl` past each fenced write
    /// (`local.lease_ttl_seconds`).
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long a rotation's lease lasts past each fenced write.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// `db.system.name` of the backend, for the spans of its transactions.
    pub fn system(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Whether other processes may use this store at the same time (PostgreSQL), so a lease
    /// found held at start-up may belong to a live replica.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Closes every connection, waiting for running statements.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { writer, reader, .. } => {
                writer.close().await;
                reader.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Runs `sql` on the write connection and returns one text value (tests inspect the store).
    #[cfg(test)]
    pub(crate) async fn scalar_text(&self, sql: &'static str) -> Result<String, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            sqlx::query_scalar(sql)
                .fetch_one(writer)
                .await
                .map_err(StoreError::query)
        })
    }

    /// Runs one statement that returns nothing (tests tamper with rows through it).
    #[cfg(test)]
    pub(crate) async fn execute(&self, sql: &'static str) -> Result<(), StoreError> {
        on_db!(self, |writer, reader, postgres| {
            sqlx::query(sql)
                .execute(writer)
                .await
                .map(|_| ())
                .map_err(StoreError::query)
        })
    }
}

fn migrator(migrations: &'static [MigrationSource]) -> Migrator {
    Migrator::with_migrations(
        migrations
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

/// Typed reads of a result row by column name, the same on both backends. A column that does
/// not decode is [`StoreError::Corrupt`].
pub(crate) trait Columns {
    /// A non-null integer.
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable integer.
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A non-null text.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable text.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// A non-null byte string.
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                sqlx::Row::try_get(self, column).map_err(corrupt)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                sqlx::Row::try_get(self, column).map_err(corrupt)
            }
            fn text(&self, column: &str) -> Result<String, StoreError> {
                sqlx::Row::try_get(self, column).map_err(corrupt)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                sqlx::Row::try_get(self, column).map_err(corrupt)
            }
            fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
                sqlx::Row::try_get(self, column).map_err(corrupt)
            }
        }
    };
}
columns_for!(SqliteRow);
columns_for!(PgRow);

fn corrupt(error: sqlx::Error) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

/// Test scaffolding: a store of each backend, so every contract runs on both.
#[cfg(test)]
pub(crate) mod testing {
    use super::Store;

    /// The server that scratch PostgreSQL databases are created on: the machine's cluster
    /// (trust auth), or `ROTATOR_TEST_POSTGRES_ADMIN_URL`.
    fn admin_url() -> String {
        std::env::var("ROTATOR_TEST_POSTGRES_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
    }

    /// A store on a fresh backend, and what to clean up after it.
    pub(crate) struct TestStore {
        /// The store.
        pub(crate) store: Store,
        _dir: Option<tempfile::TempDir>,
        database: Option<String>,
    }

    impl TestStore {
        /// A SQLite store in a temporary directory.
        pub(crate) async fn sqlite() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open_sqlite(dir.path()).await.expect("open sqlite");
            Self {
                store,
                _dir: Some(dir),
                database: None,
            }
        }

        /// A PostgreSQL store in a database of its own on the test server.
        pub(crate) async fn postgres() -> Self {
            let name = format!("rotator_test_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&admin_url())
                .await
                .expect("the test PostgreSQL server (127.0.0.1:5432) is running");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .expect("create database");
            admin.close().await;
            let (base, _) = admin_url()
                .rsplit_once('/')
                .map(|(b, d)| (b.to_owned(), d.to_owned()))
                .expect("the admin URL names a database");
            let store = Store::open_postgres(&format!("{base}/{name}"))
                .await
                .expect("open postgres");
            Self {
                store,
                _dir: None,
                database: Some(name),
            }
        }

        /// Closes the store; dropping it then drops its scratch database.
        pub(crate) async fn finish(self) {
            self.store.close().await;
        }
    }

    impl Drop for TestStore {
        /// Drops the scratch database even when the test failed (from a thread with a runtime
        /// of its own: this may run inside the test's runtime, or while it unwinds).
        fn drop(&mut self) {
            let Some(name) = self.database.take() else {
                return;
            };
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(async {
                        if let Ok(admin) = sqlx::PgPool::connect(&admin_url()).await {
                            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await;
                            admin.close().await;
                        }
                    });
                }
            })
            .join();
        }
    }

    /// Declares `mod $name` with one test per backend, each running `$contract(&Store)`.
    macro_rules! on_each_backend {
        ($name:ident, $contract:path) => {
            mod $name {
                use $crate::store::db::testing::TestStore;

                #[tokio::test]
                async fn sqlite() {
                    let test = TestStore::sqlite().await;
                    $contract(&test.store).await;
                    test.finish().await;
                }

                #[tokio::test]
                async fn postgres() {
                    let test = TestStore::postgres().await;
                    $contract(&test.store).await;
                    test.finish().await;
                }
            }
        };
    }
    pub(crate) use on_each_backend;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ReadOutbox as _, WriteOutbox as _};

    testing::on_each_backend!(outbox, crate::store::contract::outbox_contract);

    /// Regression guard: building a `Dispatch` (or a subscriber turned into one) per call
    /// re-registers every callsite under a global lock; only telemetry's one-time install may.
    #[test]
    fn no_dispatch_is_built_per_call() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src.clone()];
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let install = path.ends_with("telemetry/mod.rs");
                // Spelled in pieces so that this test does not find itself.
                let per_call_subscriber = ["NoSubscriber", "::default()"].concat();
                let new_dispatch = ["Dispatch", "::new("].concat();
                for pattern in [&per_call_subscriber, &new_dispatch] {
                    let hits = text
                        .lines()
                        .filter(|l| {
                            l.contains(pattern.as_str()) && !l.trim_start().starts_with("//")
                        })
                        .count();
                    if hits > 0 && !(install && pattern == &new_dispatch) {
                        offenders.push(format!("{}: {pattern}", path.display()));
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:?}");
    }

    #[tokio::test]
    async fn sqlite_reopens_with_its_rows_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sqlite(&dir.path().join("nested"))
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
        let store = Store::open_sqlite(&dir.path().join("nested"))
            .await
            .expect("reopen");
        assert_eq!(store.backlog().await.expect("backlog").depth, 1);
        let mode = store
            .scalar_text("PRAGMA journal_mode")
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    async fn a_changed_migration_is_refused(store: &Store) {
        let tamper = if store.is_shared() {
            "UPDATE _sqlx_migrations SET checksum = decode('00', 'hex') WHERE version = 1"
        } else {
            "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1"
        };
        store.execute(tamper).await.expect("tamper");
        let refused = match &store.backend {
            Backend::Sqlite { writer, .. } => migrator(SQLITE_MIGRATIONS).run(writer).await,
            Backend::Postgres(pool) => migrator(POSTGRES_MIGRATIONS).run(pool).await,
        };
        assert!(
            matches!(
                refused,
                Err(sqlx::migrate::MigrateError::VersionMismatch(1))
            ),
            "{refused:?}"
        );
    }

    testing::on_each_backend!(changed_migration, super::a_changed_migration_is_refused);
}
