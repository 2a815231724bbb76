//! Failpoints for the crash and concurrency tests, inert unless `ROTATOR_FAILPOINT` is set
//! (read once):
//! - `<boundary>` aborts the process (as `kill -9` would end it) right after that attempt-state
//!   boundary is durable: `prepared`, `applied`, `verified` or `committed` (and `issued`: a
//!   provider has issued a secret that is not recorded yet);
//! - `<boundary>:pause=<ms>` holds the attempt there for that long, so a test can act while an
//!   attempt is known to be mid-way (a second replica's call, a reload).

use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable naming the failpoint.
pub const FAILPOINT_VAR: &str = "ROTATOR_FAILPOINT";

/// What a configured failpoint does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Abort,
    Pause(Duration),
}

/// Parses a failpoint setting into its boundary and action; `None` when malformed.
fn parse(setting: &str) -> Option<(String, Action)> {
    match setting.split_once(":pause=") {
        None => Some((setting.to_owned(), Action::Abort)),
        Some((boundary, ms)) => {
            let ms = ms.parse().ok()?;
            Some((
                boundary.to_owned(),
                Action::Pause(Duration::from_millis(ms)),
            ))
        }
    }
}

/// Acts when `boundary` is the configured failpoint: aborts the process, or pauses.
pub async fn hit(boundary: &str) {
    static CONFIGURED: OnceLock<Option<(String, Action)>> = OnceLock::new();
    let configured =
        CONFIGURED.get_or_init(|| std::env::var(FAILPOINT_VAR).ok().as_deref().and_then(parse));
    match configured {
        Some((at, Action::Abort)) if at == boundary => std::process::abort(),
        Some((at, Action::Pause(wait))) if at == boundary => tokio::time::sleep(*wait).await,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        assert_eq!(parse("applied"), Some(("applied".into(), Action::Abort)));
        assert_eq!(
            parse("verified:pause=250"),
            Some(("verified".into(), Action::Pause(Duration::from_millis(250))))
        );
        assert_eq!(parse("verified:pause=soon"), None);
    }
}
