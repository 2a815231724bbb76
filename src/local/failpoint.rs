//! Crash failpoints for the crash test: `ROTATOR_FAILPOINT=<boundary>` aborts the process right
//! after that attempt-state boundary is durable (`prepared`, `applied`, `verified`, `committed`).
//! Inert unless the variable is set; read once.

use std::sync::OnceLock;

/// The environment variable naming the boundary to crash at.
pub const FAILPOINT_VAR: &str = "ROTATOR_FAILPOINT";

/// Aborts the process (as `kill -9` would end it) when `boundary` is the configured failpoint.
pub fn hit(boundary: &str) {
    static CONFIGURED: OnceLock<Option<String>> = OnceLock::new();
    let configured = CONFIGURED.get_or_init(|| std::env::var(FAILPOINT_VAR).ok());
    if configured.as_deref() == Some(boundary) {
        std::process::abort();
    }
}
