//! State shared by the rotations of one connection, kept by type: the first rotation built on a
//! connection creates it, the others reuse it (PostgreSQL's idle admin sessions).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// One connection's shared state. Cheap to clone: clones share the state.
#[derive(Clone, Default)]
pub struct ConnectionShared {
    /// Rotations at once against the connection (its `max_parallel_rotations`).
    max_parallel: usize,
    items: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

// === impl ConnectionShared ===

impl ConnectionShared {
    /// Empty state of a connection that runs at most `max_parallel` rotations at once.
    pub fn new(max_parallel: usize) -> Self {
        Self {
            max_parallel: max_parallel.max(1),
            items: Arc::default(),
        }
    }

    /// The connection's `max_parallel_rotations`.
    pub fn max_parallel(&self) -> usize {
        self.max_parallel
    }

    /// The shared `T`, created by `init` the first time.
    pub fn get_or_init<T: Any + Send + Sync + Clone>(&self, init: impl FnOnce() -> T) -> T {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = items
            .get(&TypeId::of::<T>())
            .and_then(|item| item.downcast_ref::<T>())
        {
            return found.clone();
        }
        let created = init();
        items.insert(TypeId::of::<T>(), Arc::new(created.clone()));
        created
    }
}

impl fmt::Debug for ConnectionShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionShared")
            .field("max_parallel", &self.max_parallel)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rotation_creates_and_the_others_share() {
        let shared = ConnectionShared::new(2);
        let first: Arc<u8> = shared.get_or_init(|| Arc::new(1));
        let second: Arc<u8> = shared.get_or_init(|| Arc::new(2));
        assert!(Arc::ptr_eq(&first, &second));
    }
}
