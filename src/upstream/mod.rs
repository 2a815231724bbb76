//! Backends that rotator forwards to.

pub mod infisical;
