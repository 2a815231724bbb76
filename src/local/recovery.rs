//! Background recovery: resumes the attempts left open, so neither start-up nor a caller ever
//! waits for a target that does not answer.
//!
//! A pass runs at start (a crashed process's attempts), when an attempt is left open because its
//! target stopped answering after it may have taken the candidate (waking recovery from idle),
//! and then again with backoff (1 s doubling to 30 s) while any attempt stays open. A resumed attempt verifies
//! before it guesses: the candidate sealed in the store is applied again or committed once the
//! target answers, so the attempt never ends failed while the target may hold it. Stopping
//! aborts the task; an attempt cut off mid-way is resumed by the next start like a crashed one.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::backend::LocalBackend;

/// The first wait after a pass that left attempts open.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between passes while attempts stay open.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The running recovery task; [`Recovery::stop`] (or drop) aborts it.
#[derive(Debug)]
pub struct Recovery {
    task: JoinHandle<()>,
}

// === impl Recovery ===

impl Recovery {
    /// Spawns recovery over `backend`: a pass now, then on each wake-up and with backoff while
    /// attempts stay open.
    pub fn spawn(backend: Arc<LocalBackend>) -> Self {
        let wake = backend.recovery_signal();
        let task = tokio::spawn(async move {
            let mut delay = FIRST_RETRY;
            loop {
                let open = match backend.resume_open_attempts().await {
                    Ok(open) => open,
                    Err(error) => {
                        tracing::warn!(%error, "recovery could not read open attempts");
                        1
                    }
                };
                if open == 0 {
                    delay = FIRST_RETRY;
                    wake.notified().await;
                    continue;
                }
                tracing::info!(
                    open,
                    retry_in_ms = delay.as_millis() as u64,
                    "attempts stay open; recovery retries them"
                );
                // Wake-ups only end an idle wait: attempts parking during a pass (this pass's
                // own included) are retried by the backoff, and the gap between passes is when
                // a caller can resume an attempt itself.
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        });
        Self { task }
    }

    /// Stops the task.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Recovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}
