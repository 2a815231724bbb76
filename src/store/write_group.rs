//! Group commit for the local-rotation writes on SQLite.
//!
//! A local rotation writes its state several times (lease, PREPARE, APPLIED, VERIFIED, COMMIT),
//! each durable before the next step. Written alone, each write is a transaction of its own with
//! one WAL fsync, on the store's one writer connection: with many rotations running at once
//! (1,000 falling due in one scan) the fsyncs queue one behind another and bound the rate.
//!
//! Here one writer task takes every write waiting at that moment (up to [`MAX_GROUP`]) and runs
//! them in one transaction, each member inside a SAVEPOINT of its own, then commits once: one
//! fsync for the group. A member whose body fails is rolled back to its savepoint, so it writes
//! nothing and its neighbours are unaffected (a fenced write that lost its lease, say). Each
//! caller gets its body's value only after the group's COMMIT returned, so a write a caller saw
//! succeed is on disk exactly as before; if the COMMIT fails, every member gets that failure
//! and nothing of the group is written.
//!
//! A caller that stops waiting (its future dropped) does not stop its member: the write lands or
//! not with its group, as if the caller had crashed after sending it. Every write is fenced and
//! the attempt's state machine resumes from what is stored, so that is the same case as a crash.

use futures::future::BoxFuture;
use sqlx::Acquire as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use tracing::instrument::WithSubscriber as _;

use super::StoreError;
use super::group_commit::closed;

/// The most members one group commits.
const MAX_GROUP: usize = 64;

/// Writes that may wait for the writer task before senders wait for room.
const QUEUE: usize = 4 * MAX_GROUP;

/// How a member's outcome reaches its caller once the group's COMMIT is known.
type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// One member: runs its body on the group's connection (inside its savepoint) and says whether
/// it succeeded, with the way to answer its caller.
type Member =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Deliver)> + Send>;

/// How a member is kept apart from its neighbours in the group's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// Inside a SAVEPOINT of its own: a failed body is rolled back whole.
    Savepoint,
    /// Without one (two statements fewer on the writer connection): for a body whose failure
    /// leaves nothing that matters behind, such as a single write statement (SQLite undoes a
    /// failed statement by itself) or a lease renewal before an update that found no row; what
    /// its earlier statements wrote may commit. The group commits what ran before the failure
    /// and goes on in a new transaction, so a failure that ended SQLite's transaction never
    /// lets a later member autocommit.
    None,
}

/// A member waiting for the writer task, with its guard.
struct Queued {
    guard: Guard,
    member: Member,
}

/// The handle writes go through. Cheap to clone; the writer task ends when the last clone is
/// dropped.
#[derive(Debug, Clone)]
pub(crate) struct WriteGroups {
    queue: mpsc::Sender<Queued>,
}

// === impl WriteGroups ===

impl WriteGroups {
    /// Starts the writer task on the current tokio runtime, writing through `writer` (the store's
    /// one-connection write pool, which other writes share between groups).
    pub(crate) fn spawn(writer: SqlitePool) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        // No subscriber, as for every store call (`on_db!`): sqlx's worker thread would keep a
        // caller's span alive.
        tokio::spawn(run_groups(writer, pending).with_subscriber(tracing::Dispatch::none()));
        Self { queue }
    }

    /// Runs `body` as a member of the next group, kept apart from its neighbours by `guard`;
    /// returns its value once the group is committed (fsynced), or its error (then, under
    /// [`Guard::Savepoint`], it wrote nothing).
    ///
    /// # Errors
    ///
    /// The body's error; the group's COMMIT failed; the store is closed.
    pub(crate) async fn write<T, F>(&self, guard: Guard, body: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (done, answer) = oneshot::channel::<Result<T, StoreError>>();
        let member: Member = Box::new(move |connection| {
            Box::pin(async move {
                let outcome = body(connection).await;
                let ok = outcome.is_ok();
                let deliver: Deliver = Box::new(move |commit| {
                    let answer = match (outcome, commit) {
                        (Ok(_), Some(failed)) => Err(group_failed(failed)),
                        (outcome, _) => outcome,
                    };
                    let _ = done.send(answer);
                });
                (ok, deliver)
            })
        });
        self.queue
            .send(Queued { guard, member })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| not_run())?
    }
}

/// The writer task: waits for writes, commits each group as it finds it, answers its callers.
async fn run_groups(writer: SqlitePool, mut pending: mpsc::Receiver<Queued>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        // Members a group left for the next transaction (after an unguarded failure) go first.
        if group.is_empty() && pending.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        let mut delivers = Vec::with_capacity(group.len());
        let commit = write_group(&writer, &mut group, &mut delivers).await;
        for deliver in delivers {
            deliver(commit.as_ref().err());
        }
        if commit.is_err() {
            // Members that never ran (the group stopped early) are dropped unanswered: their
            // callers hear that nothing was written (`not_run`).
            group.clear();
        }
    }
}

/// Runs `group`'s members in one transaction, each as its [`Guard`] says (a lone member needs
/// no savepoint), and commits. Every member that ran leaves its answer in `delivers`; the
/// result is the COMMIT's. An unguarded member that fails ends the transaction there: what ran
/// commits, and the members not run yet stay in `group` for the next one. On an early error
/// the transaction is dropped (rolled back) and the members not yet run are dropped.
async fn write_group(
    writer: &SqlitePool,
    group: &mut Vec<Queued>,
    delivers: &mut Vec<Deliver>,
) -> Result<(), StoreError> {
    let mut connection = writer.acquire().await.map_err(StoreError::query)?;
    let mut transaction = connection.begin().await.map_err(StoreError::query)?;
    if group.len() == 1
        && let Some(Queued { member, .. }) = group.pop()
    {
        // Alone in its group, a member needs no savepoint: its failure rolls back the whole
        // transaction, which holds nothing else.
        let (ok, deliver) = member(&mut transaction).await;
        delivers.push(deliver);
        return if ok {
            transaction.commit().await.map_err(StoreError::query)
        } else {
            transaction.rollback().await.map_err(StoreError::query)
        };
    }
    let mut members = std::mem::take(group).into_iter();
    while let Some(Queued { guard, member }) = members.next() {
        if guard == Guard::None {
            let (ok, deliver) = member(&mut transaction).await;
            delivers.push(deliver);
            if !ok {
                group.extend(members);
                break;
            }
            continue;
        }
        let mut savepoint = transaction.begin().await.map_err(StoreError::query)?;
        let (ok, deliver) = member(&mut savepoint).await;
        let ended = if ok {
            savepoint.commit().await
        } else {
            savepoint.rollback().await
        };
        if let Err(error) = ended {
            // The savepoint could not be released or rolled back: the transaction is in an
            // unknown state, so none of the group may commit.
            delivers.push(deliver);
            return Err(StoreError::query(error));
        }
        delivers.push(deliver);
    }
    transaction.commit().await.map_err(StoreError::query)
}

/// The error a member whose body succeeded gets when its group's COMMIT failed (nothing of the
/// group is written); transient when the COMMIT's failure was.
fn group_failed(commit: &StoreError) -> StoreError {
    let error = sqlx::Error::Protocol(format!("the write's group did not commit: {commit}"));
    if commit.is_transient() {
        StoreError::Busy(error)
    } else {
        StoreError::Query(error)
    }
}

/// A member dropped before it ran: its group could not start or stopped early (the writer
/// connection failed), or the store was closing. Transient: nothing was written.
fn not_run() -> StoreError {
    StoreError::Busy(sqlx::Error::Protocol(
        "the write's group stopped before it ran; nothing was written".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::{Guard, WriteGroups};
    use crate::store::db::testing::TestStore;
    use crate::store::db::{Backend, on_db};
    use crate::store::{Store, StoreError};

    fn groups(store: &Store) -> &WriteGroups {
        let Backend::Sqlite { groups, .. } = &store.backend else {
            panic!("a SQLite store");
        };
        groups
    }

    /// Writes `id` as a member under `guard`; the body fails after its insert when `fail`.
    async fn insert(
        groups: &WriteGroups,
        guard: Guard,
        id: String,
        fail: bool,
    ) -> Result<String, StoreError> {
        groups
            .write(guard, move |tx| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO local_rotations (rotation_id, created_at, updated_at) \
                         VALUES ($1, 0, 0)",
                    )
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
                    if fail {
                        return Err(StoreError::Corrupt(format!("{id} refused")));
                    }
                    Ok(id)
                })
            })
            .await
    }

    /// 200 writes `r0`… at once, each under `guard(n)` and failing after its insert when
    /// `fails(n)`. Checks that every caller got its own body's outcome and returns the stored
    /// ids, sorted.
    async fn write_200_at_once(
        store: &Store,
        guard: fn(i64) -> Guard,
        fails: fn(i64) -> bool,
    ) -> Vec<String> {
        let mut writes = tokio::task::JoinSet::new();
        for n in 0..200_i64 {
            let groups = groups(store).clone();
            writes.spawn(async move {
                let outcome = insert(&groups, guard(n), format!("r{n}"), fails(n)).await;
                (n, outcome)
            });
        }
        while let Some(done) = writes.join_next().await {
            let (n, outcome) = done.expect("write task");
            match outcome {
                Ok(id) => assert_eq!(id, format!("r{n}"), "r{n} got its own value"),
                Err(StoreError::Corrupt(message)) => assert_eq!(message, format!("r{n} refused")),
                Err(other) => panic!("r{n}: {other}"),
            }
        }
        stored(store).await
    }

    async fn stored(store: &Store) -> Vec<String> {
        let mut ids: Vec<String> = on_db!(store, |writer, reader, postgres| {
            sqlx::query_scalar("SELECT rotation_id FROM local_rotations")
                .fetch_all(reader)
                .await
        })
        .expect("read");
        ids.sort();
        ids
    }

    fn ids(filter: impl Fn(i64) -> bool) -> Vec<String> {
        let mut ids: Vec<String> = (0..200)
            .filter(|n| filter(*n))
            .map(|n| format!("r{n}"))
            .collect();
        ids.sort();
        ids
    }

    /// Many writes at once, every third failing after it wrote: each caller gets its own body's
    /// outcome, a failed body leaves nothing behind, and its group's neighbours are stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_member_writes_nothing_and_its_neighbours_commit() {
        let test = TestStore::sqlite().await;
        let stored = write_200_at_once(&test.store, |_| Guard::Savepoint, |n| n % 3 == 0).await;
        assert_eq!(stored, ids(|n| n % 3 != 0));
        test.finish().await;
    }

    /// Unguarded and guarded members mixed, some of each failing after they wrote: every caller
    /// gets its own outcome and no member is left unrun; a failed guarded member left nothing,
    /// and the members after an unguarded failure commit in the next transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_after_an_unguarded_failure_still_commit() {
        let test = TestStore::sqlite().await;
        let guard = |n| {
            if n % 2 == 0 {
                Guard::None
            } else {
                Guard::Savepoint
            }
        };
        let mut stored = write_200_at_once(&test.store, guard, |n| n % 4 < 2).await;
        // Stored: every success; never a failed guarded member (n % 4 == 1). A failed
        // unguarded member's statement (n % 4 == 0) may stay: it is rolled back only when the
        // member was alone in its transaction.
        stored.retain(|id| id[1..].parse::<i64>().map_or(true, |n| n % 4 != 0));
        assert_eq!(stored, ids(|n| n % 4 >= 2));
        test.finish().await;
    }

    /// A body's SQL error is its own: the member is rolled back to its savepoint and the next
    /// write on the same connection works.
    #[tokio::test]
    async fn a_statement_error_is_the_members_alone() {
        let test = TestStore::sqlite().await;
        let groups = groups(&test.store);
        let broken = groups
            .write(Guard::Savepoint, |tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO no_such_table VALUES (1)")
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query)
                })
            })
            .await;
        assert!(matches!(broken, Err(StoreError::Query(_))), "{broken:?}");
        let fine = groups
            .write(Guard::Savepoint, |tx| {
                Box::pin(async move {
                    sqlx::query_scalar::<_, i64>("SELECT 41 + 1")
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(StoreError::query)
                })
            })
            .await
            .expect("the next write");
        assert_eq!(fine, 42);
        test.finish().await;
    }

    /// A write alone in its group runs without a savepoint: when its body fails after it
    /// wrote, the whole transaction is rolled back and nothing of it is stored.
    #[tokio::test]
    async fn a_lone_failed_member_writes_nothing() {
        let test = TestStore::sqlite().await;
        let groups = groups(&test.store);
        // One at a time: each is the only member of its group.
        for guard in [Guard::Savepoint, Guard::None] {
            let failed = insert(groups, guard, format!("lone-failed-{guard:?}"), true).await;
            assert!(matches!(failed, Err(StoreError::Corrupt(_))), "{failed:?}");
        }
        insert(groups, Guard::None, "lone-stored".to_owned(), false)
            .await
            .expect("stored");
        assert_eq!(stored(&test.store).await, vec!["lone-stored".to_owned()]);
        test.finish().await;
    }
}
