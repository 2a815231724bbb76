//! The state of the dependencies, for `/healthz`: whether NATS is connected and whether the
//! Infisical token is valid, each with the time it entered that state and the last failure's
//! reason.
//!
//! The modules that own a dependency push its state here (as they register gauge sources in
//! [`super::metrics`]): telemetry never imports them. A reason is a stable code (an
//! `ErrorInfo.reason`, an error kind), never a message, a token or a secret.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, SecondsFormat, Utc};

/// The NATS connection of the events relay.
pub const NATS: &str = "nats";
/// The relay lease: whether this replica's relay publishes the outbox (`leader`) or waits
/// for the lease (`follower`).
pub const RELAY: &str = "relay";
/// The machine-identity token rotator uses with Infisical.
pub const INFISICAL_TOKEN: &str = "infisical_token";

/// One dependency's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyHealth {
    /// A short lower_snake_case word: `connected`, `disconnected`, `valid`, `login_failing`, …
    pub state: &'static str,
    /// When the dependency entered `state` (unchanged while it stays there).
    pub since: DateTime<Utc>,
    /// The reason of the last failure while in a failing state: a stable code, never a secret.
    pub last_error: Option<String>,
}

static REGISTRY: OnceLock<Mutex<BTreeMap<&'static str, DependencyHealth>>> = OnceLock::new();

fn registry() -> &'static Mutex<BTreeMap<&'static str, DependencyHealth>> {
    REGISTRY.get_or_init(Mutex::default)
}

/// Records that `dependency` is in `state`. `since` moves only when the state changes, so a
/// failure repeated every few seconds still reads "failing since" its first occurrence;
/// `last_error` is always the latest (`None` clears it).
pub fn report(dependency: &'static str, state: &'static str, last_error: Option<String>) {
    report_at(dependency, state, last_error, Utc::now());
}

fn report_at(
    dependency: &'static str,
    state: &'static str,
    last_error: Option<String>,
    now: DateTime<Utc>,
) {
    let Ok(mut map) = registry().lock() else {
        return;
    };
    match map.get_mut(dependency) {
        Some(current) if current.state == state => current.last_error = last_error,
        _ => {
            map.insert(
                dependency,
                DependencyHealth {
                    state,
                    since: now,
                    last_error,
                },
            );
        }
    }
}

/// The state of `dependency`, when anything reported it.
pub fn get(dependency: &str) -> Option<DependencyHealth> {
    registry().lock().ok()?.get(dependency).cloned()
}

/// `dependency` as `/healthz` shows it: `null` when not reported (not configured).
pub fn to_json(dependency: &str) -> serde_json::Value {
    match get(dependency) {
        None => serde_json::Value::Null,
        Some(health) => serde_json::json!({
            "state": health.state,
            "since": health.since.to_rfc3339_opts(SecondsFormat::Secs, true),
            "last_error": health.last_error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_moves_only_when_the_state_changes() {
        let dep = "test_dependency";
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let t1 = DateTime::from_timestamp(1_700_000_060, 0).unwrap_or_default();
        report_at(dep, "failing", Some("FIRST".into()), t0);
        report_at(dep, "failing", Some("SECOND".into()), t1);
        let health = get(dep);
        assert_eq!(
            health,
            Some(DependencyHealth {
                state: "failing",
                since: t0,
                last_error: Some("SECOND".into()),
            })
        );
        report_at(dep, "ok", None, t1);
        assert_eq!(get(dep).map(|h| (h.state, h.since)), Some(("ok", t1)));
        assert_eq!(to_json(dep)["since"], "2023-11-14T22:14:20Z");
        assert!(to_json("never_reported").is_null());
    }
}
