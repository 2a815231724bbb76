//! Local rotation: the pieces rotator needs to rotate credentials itself, without Infisical.
//!
//! - [`password`]: password requirements (validation, per-type symbol rules) and the generator.

pub mod password;
