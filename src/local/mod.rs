//! Local rotation: the pieces rotator needs to change credentials itself, crash-safely.

pub mod attempt;
pub mod crypto;
pub mod schedule;
