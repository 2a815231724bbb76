//! Local rotation: the pieces rotator needs to rotate credentials itself, crash-safely, without
//! Infisical.
//!
//! - [`password`]: password requirements (validation, per-type symbol rules) and the generator.
//! - [`attempt`]: the attempt state machine as pure decisions.
//! - [`crypto`]: AES-256-GCM key ring for credentials at rest.
//! - [`schedule`]: when a rotation is next due.
//! - [`registry`]: the connections and rotations declared in the configuration.

pub mod attempt;
pub mod crypto;
pub mod password;
pub mod registry;
pub mod schedule;
