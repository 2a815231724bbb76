//! The auto-rotation scheduler: a background task that, at start and then every scan interval
//! (`local.scan_interval_seconds`, default [`PERIOD`]), rotates every registered rotation with
//! auto-rotation on whose `next_rotation_at` has passed.
//!
//! Each due rotation goes through [`LocalBackend::rotate`], the same path as `RotateSecrets`
//! (lease, attempt, events), with the scheduled origin: the event's trigger is SCHEDULED and
//! `is_last_rotation_manual` is false. A final failure sets `next_rotation_at` to the next UTC
//! day at `rotate_at` (done by the backend's FAIL). Rotations run in parallel, within the
//! per-connection bound that calls share (`local::limits`), so one database is never flooded.
//! Each scan first resumes attempts left open whose lease has expired (a crashed replica's), and
//! ends by counting rotations still due: the `rotator.rotations.overdue` gauge. Stopping
//! aborts the task; an attempt cut off mid-way is resumed by recovery like a crashed one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use super::backend::{LocalBackend, Origin, Scope};
use super::error::LocalError;
use crate::config::registry::Registry;
use crate::proto::SecretRotation;

/// Time between two scans for due rotations, unless configured.
pub const PERIOD: Duration = Duration::from_secs(30);

/// A due rotation: its id and the connection it runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The rotation id.
    pub rotation_id: Uuid,
    /// The name of its connection (the key of the parallelism bound).
    pub connection: String,
}

/// Of the rotation ids the store reports due, those still registered with auto-rotation on,
/// in the store's order. Unknown or unparsable ids (a rotation removed from the config) and
/// rotations whose auto-rotation was switched off since are skipped.
pub fn select_due(registry: &Registry, stored_due: &[String]) -> Vec<Due> {
    stored_due
        .iter()
        .filter_map(|id| Uuid::parse_str(id).ok())
        .filter_map(|id| registry.rotation(id))
        .filter(|r| r.auto_rotation)
        .map(|r| Due {
            rotation_id: r.id,
            connection: r.connection.clone(),
        })
        .collect()
}

/// The running scheduler; [`Scheduler::stop`] (or drop) aborts it.
#[derive(Debug)]
pub struct Scheduler {
    task: JoinHandle<()>,
}

// === impl Scheduler ===

impl Scheduler {
    /// Spawns the scheduler over `backend`, scanning now and every `period`.
    pub fn spawn(backend: Arc<LocalBackend>, period: Duration) -> Self {
        let overdue = Arc::new(AtomicU64::new(0));
        crate::telemetry::metrics::set_overdue_source({
            let overdue = Arc::clone(&overdue);
            move || overdue.load(Ordering::Relaxed)
        });
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let started = tokio::time::Instant::now();
                if let Err(error) = backend.resume_open_attempts().await.map(drop) {
                    tracing::warn!(%error, "the scheduler could not read open attempts");
                }
                let scan = run_due(&backend, Utc::now(), started)
                    .await
                    .unwrap_or_else(|error| {
                        tracing::warn!(%error, "the scheduler could not read due rotations");
                        Scan::default()
                    });
                // Overdue: still due after the scan (held by another attempt, or unreadable).
                match backend.due_rotation_ids(Utc::now()).await {
                    Ok(stored) => {
                        let due = select_due(&backend.current().registry, &stored).len();
                        overdue.store(due as u64, Ordering::Relaxed);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the scheduler could not count overdue rotations")
                    }
                }
                scan.log(started.elapsed());
            }
        });
        Self { task }
    }

    /// Aborts the scheduler and any scheduled rotation still running.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one scan did: how many rotations were due and how long finding them took (open
/// attempts, the due query, the registry match), for the scan's log line.
#[derive(Debug, Default)]
struct Scan {
    due: usize,
    found_in: Duration,
}

impl Scan {
    /// One line per scan: INFO when it rotated something, DEBUG otherwise (every period).
    fn log(&self, elapsed: Duration) {
        let (due, scan_ms) = (self.due, self.found_in.as_secs_f64() * 1000.0);
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        if due > 0 {
            tracing::info!(due, scan_ms, elapsed_ms, "scheduler scan finished");
        } else {
            tracing::debug!(due, scan_ms, elapsed_ms, "scheduler scan finished");
        }
    }
}

/// Rotates every rotation due at `now` and waits for them all; they run in parallel within
/// the backend's per-connection bounds. Outcomes are logged; failures are already recorded by
/// the backend.
async fn run_due(
    backend: &Arc<LocalBackend>,
    now: DateTime<Utc>,
    started: tokio::time::Instant,
) -> Result<Scan, LocalError> {
    let stored = backend.due_rotation_ids(now).await?;
    let due = select_due(&backend.current().registry, &stored);
    let scan = Scan {
        due: due.len(),
        found_in: started.elapsed(),
    };
    let mut running = JoinSet::new();
    let (batched, single): (Vec<Due>, Vec<Due>) = {
        let current = backend.current();
        due.into_iter().partition(|item| {
            current
                .rotation(item.rotation_id)
                .is_ok_and(|(rotation, driver)| super::batch::batchable(rotation, driver))
        })
    };
    {
        let backend = Arc::clone(backend);
        let chunks: Vec<Vec<Uuid>> = batched
            .chunks(super::batch::BATCH)
            .map(|chunk| chunk.iter().map(|item| item.rotation_id).collect())
            .collect();
        running.spawn(async move {
            use futures::StreamExt as _;
            futures::stream::iter(chunks)
                .for_each_concurrent(super::batch::BATCHES_AT_ONCE, |ids| {
                    let backend = Arc::clone(&backend);
                    async move { backend.rotate_batch(&ids).await }
                })
                .await;
        });
    }
    for item in single {
        let backend = Arc::clone(backend);
        running.spawn(async move {
            let origin = Origin::background(Scope::Rotate, true);
            let rotation_id = item.rotation_id;
            log_outcome(rotation_id, &backend.rotate(rotation_id, origin).await);
        });
    }
    while running.join_next().await.is_some() {}
    Ok(scan)
}

/// Logs how a scheduled rotation ended: INFO when it committed or was skipped or deferred, WARN
/// when it failed (the failure is already recorded on the rotation).
pub(super) fn log_outcome(
    rotation_id: impl std::fmt::Display,
    result: &Result<SecretRotation, LocalError>,
) {
    match result {
        Ok(_) => tracing::info!(%rotation_id, "scheduled rotation committed"),
        Err(LocalError::Busy { attempt_id, .. }) => {
            tracing::info!(%rotation_id, %attempt_id, "scheduled rotation skipped: an attempt is running");
        }
        Err(error @ LocalError::HandoverPending { .. }) => {
            tracing::info!(%rotation_id, %error, "scheduled rotation deferred: waiting for consumers to confirm");
        }
        Err(error) => tracing::warn!(%rotation_id, %error, "scheduled rotation failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[connections]]
name = "pg"
app = "postgres"
host = "db.internal"
port = 5432
database = "postgres"
username = "admin"
password = "env:PG_ADMIN"

[[rotations]]
id = "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10"
name = "on"
type = "postgres-credentials"
connection = "pg"
parameters = { username1 = "a", username2 = "b" }
secrets_mapping = { username = "U", password = "P" }

[[rotations]]
id = "7d8c6b7f-4a8b-4bae-8b5a-7a1a4d2c3b21"
name = "off"
type = "postgres-credentials"
connection = "pg"
auto_rotation = false
parameters = { username1 = "c", username2 = "d" }
secrets_mapping = { username = "U", password = "P" }
"#;

    fn registry() -> Registry {
        let env = [
            ("PG_ADMIN", "pw"),
            (
                "ROTATOR_ENCRYPTION_KEY",
                "k1:q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
            ),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let mut table: toml::Table = CONFIG.parse().expect("toml");
        let mut problems = Vec::new();
        let registry = Registry::from_table(&mut table, &env, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        registry
    }

    #[test]
    fn only_registered_rotations_with_auto_rotation_on_are_due() {
        let registry = registry();
        let stored = vec![
            "7d8c6b7f-4a8b-4bae-8b5a-7a1a4d2c3b21".to_owned(), // auto-rotation off
            "00000000-0000-0000-0000-000000000001".to_owned(), // no longer registered
            "not-a-uuid".to_owned(),
            "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10".to_owned(),
        ];
        let due = select_due(&registry, &stored);
        assert_eq!(
            due,
            vec![Due {
                rotation_id: Uuid::parse_str("6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10").expect("uuid"),
                connection: "pg".to_owned(),
            }]
        );
        assert!(select_due(&registry, &[]).is_empty());
    }
}
