//! Per-connection bounds on rotations running at once, shared by `RotateSecrets` and the
//! scheduler, so that neither 100 parallel calls nor a burst of due rotations opens more
//! sessions on one database than its connection allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One semaphore per connection name, sized by the connection's bound.
#[derive(Debug, Default)]
pub struct ConnectionLimits {
    by_connection: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
}

// === impl ConnectionLimits ===

impl ConnectionLimits {
    /// Waits for a slot on `connection`, whose bound is `limit`. When a reload changed the
    /// bound, later callers use a new semaphore; holders of the old one finish undisturbed.
    pub async fn acquire(&self, connection: &str, limit: usize) -> OwnedSemaphorePermit {
        let semaphore = self.semaphore(connection, limit);
        loop {
            // Never closed, so acquiring only waits; the loop keeps that true by construction.
            if let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await {
                return permit;
            }
        }
    }

    fn semaphore(&self, connection: &str, limit: usize) -> Arc<Semaphore> {
        let mut map = self
            .by_connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry(connection.to_owned())
            .or_insert_with(|| (limit, Arc::new(Semaphore::new(limit))));
        if entry.0 != limit {
            *entry = (limit, Arc::new(Semaphore::new(limit)));
        }
        Arc::clone(&entry.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_bound_per_connection_and_a_new_bound_takes_effect() {
        let limits = ConnectionLimits::default();
        let a1 = limits.acquire("a", 1).await;
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire("a", 1))
                .await;
        assert!(waiting.is_err(), "a second rotation on a waits");
        let _b = limits.acquire("b", 1).await;
        let _a_raised = limits.acquire("a", 2).await;
        drop(a1);
        assert_eq!(limits.semaphore("a", 2).available_permits(), 1);
    }
}
