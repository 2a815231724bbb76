//! Idle admin sessions of one target connection, reused by the applies of all its rotations.
//!
//! An apply logs in as the admin, runs one `ALTER`, and is done. On PostgreSQL a login costs a
//! backend process and a SCRAM exchange (4096 PBKDF2 rounds on each side), more than the
//! `ALTER` itself, so a session is kept for the next apply instead of closed. The cache is
//! small (at most the connection's `max_parallel_rotations` sessions) and forgets a session
//! idle for longer than [`IDLE_FOR`]: a database sees at most that many rotator sessions, and
//! none for long after the last rotation. Verification never uses it: it must be a new login.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long an idle session is kept for reuse.
pub const IDLE_FOR: Duration = Duration::from_secs(30);

/// Idle sessions, newest last. Cheap to clone: clones share the sessions.
pub struct AdminSessions<C> {
    idle: Arc<Mutex<Vec<(C, Instant)>>>,
    capacity: usize,
}

/// What [`AdminSessions::take`] found.
pub struct Taken<C> {
    /// A session idle for less than [`IDLE_FOR`], newest first.
    pub session: Option<C>,
    /// Sessions idle for too long: the caller closes them.
    pub expired: Vec<C>,
}

// === impl AdminSessions ===

impl<C> AdminSessions<C> {
    /// An empty cache holding at most `capacity` idle sessions.
    pub fn new(capacity: usize) -> Self {
        Self {
            idle: Arc::new(Mutex::new(Vec::new())),
            capacity: capacity.max(1),
        }
    }

    /// The newest idle session still fresh at `now`, and the expired ones.
    pub fn take(&self, now: Instant) -> Taken<C> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh_from = idle
            .iter()
            .position(|(_, since)| now.saturating_duration_since(*since) < IDLE_FOR)
            .unwrap_or(idle.len());
        let expired = idle.drain(..fresh_from).map(|(c, _)| c).collect();
        Taken {
            session: idle.pop().map(|(c, _)| c),
            expired,
        }
    }

    /// Keeps `session` for reuse from `now`; hands it back when the cache is full.
    pub fn put(&self, session: C, now: Instant) -> Option<C> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= self.capacity {
            return Some(session);
        }
        idle.push((session, now));
        None
    }
}

impl<C> Clone for AdminSessions<C> {
    fn clone(&self) -> Self {
        Self {
            idle: Arc::clone(&self.idle),
            capacity: self.capacity,
        }
    }
}

impl<C> PartialEq for AdminSessions<C> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.idle, &other.idle)
    }
}

impl<C> Eq for AdminSessions<C> {}

impl<C> fmt::Debug for AdminSessions<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self.idle.lock().map_or(0, |idle| idle.len());
        f.debug_struct("AdminSessions")
            .field("idle", &idle)
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_fresh_session_first_expired_ones_handed_back_and_capacity_kept() {
        let sessions = AdminSessions::new(2);
        let start = Instant::now();
        assert!(sessions.put("old", start).is_none());
        assert!(sessions.put("new", start + IDLE_FOR).is_none());
        assert_eq!(sessions.put("third", start + IDLE_FOR), Some("third"));
        let taken = sessions.take(start + IDLE_FOR + Duration::from_secs(1));
        assert_eq!(taken.session, Some("new"));
        assert_eq!(taken.expired, vec!["old"]);
        let empty = sessions.take(start + IDLE_FOR * 3);
        assert!(empty.session.is_none() && empty.expired.is_empty());
    }
}
