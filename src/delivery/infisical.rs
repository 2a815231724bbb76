//! The Infisical sink: the mapped secrets as secrets of one folder of one environment of an
//! Infisical project, written through the public secrets API (`upstream::infisical::secrets`).
//!
//! One try reads the folder's keys and metadata (never values), then writes every mapped
//! secret in one batch upsert (existing keys updated, missing ones created) with metadata
//! `rotator-rotation-id` and `rotator-version`. The metadata makes a try idempotent and never
//! backwards, even when two replicas deliver: if Infisical already holds this version or a
//! newer one of this rotation under every key, nothing is written, so a repeated delivery
//! makes no new Infisical version.
//!
//! A folder under a change policy turns the write into an approval request. The request is
//! remembered (in memory) for that version, so retries only read the folder until the request
//! is merged (then the version is held and the delivery succeeds) instead of filing another.
//!
//! The default identity is the service's `[infisical]` one (the same token manager as
//! forwarding: no second login); a sink may name its own, whose client is built on first use
//! and kept while its credentials stay the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::{Payload, SinkError};
use crate::config::InfisicalAuth;
use crate::config::sinks::{InfisicalIdentity, InfisicalSink};
use crate::context::CallContext;
use crate::upstream::infisical::secrets::{Folder, StoredSecret, Upserted};
use crate::upstream::infisical::{Infisical, UpstreamError};

/// The metadata key naming the rotation a secret was written for.
pub const ROTATION_ID_KEY: &str = "rotator-rotation-id";
/// The metadata key holding the rotation version a secret holds.
pub const VERSION_KEY: &str = "rotator-version";
/// The longest one try may take, its calls and their retries together.
const TRY_BUDGET: Duration = Duration::from_secs(60);

/// The Infisical clients sinks write with: the service's, and one per separate identity.
#[derive(Debug, Default)]
pub struct Clients {
    /// The service's client (`[infisical]`); `None` without that section.
    service: Option<Arc<Infisical>>,
    /// Clients of sinks' own identities, by client id and a digest of the secret (a reload
    /// that changes the secret gets a new client).
    identities: Mutex<HashMap<String, Arc<Infisical>>>,
    /// Approval requests a write became, by folder and rotation: the version and the request id.
    awaiting: Mutex<HashMap<String, (u64, Option<String>)>>,
}

// === impl Clients ===

impl Clients {
    /// Clients over the service's Infisical client.
    pub fn new(service: Option<Arc<Infisical>>) -> Self {
        Self {
            service,
            identities: Mutex::new(HashMap::new()),
            awaiting: Mutex::new(HashMap::new()),
        }
    }

    /// The approval request already filed for `version` under `key`, if any.
    fn awaiting(&self, key: &str, version: u64) -> Option<Option<String>> {
        let awaiting = self
            .awaiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        awaiting
            .get(key)
            .filter(|(v, _)| *v == version)
            .map(|(_, id)| id.clone())
    }

    fn set_awaiting(&self, key: String, entry: Option<(u64, Option<String>)>) {
        let mut awaiting = self
            .awaiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match entry {
            Some(entry) => awaiting.insert(key, entry),
            None => awaiting.remove(&key),
        };
    }

    fn for_sink(&self, identity: Option<&InfisicalIdentity>) -> Result<Arc<Infisical>, SinkError> {
        let Some(service) = &self.service else {
            return Err(SinkError(
                "rotator was started without [infisical]; restart it with that section".into(),
            ));
        };
        let Some(identity) = identity else {
            return Ok(Arc::clone(service));
        };
        let digest = Sha256::digest(identity.client_secret.expose().as_bytes());
        let key = format!("{}\0{}", identity.client_id, hex(&digest));
        let mut identities = self
            .identities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let client = identities.entry(key).or_insert_with(|| {
            Arc::new(service.for_identity(InfisicalAuth::UniversalAuth {
                client_id: identity.client_id.clone(),
                client_secret: identity.client_secret.clone(),
            }))
        });
        Ok(Arc::clone(client))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Delivers `payload` to `sink` with the client of its identity.
///
/// # Errors
///
/// [`SinkError`] with Infisical's status, error name, message and `reqId`; never a value.
pub async fn deliver(
    sink: &InfisicalSink,
    clients: &Clients,
    payload: &Payload<'_>,
) -> Result<(), SinkError> {
    let client = clients.for_sink(sink.identity.as_ref())?;
    let ctx = CallContext {
        deadline: Some(tokio::time::Instant::now() + TRY_BUDGET),
        ..CallContext::generated()
    };
    let folder = Folder {
        project_id: &sink.project_id,
        environment: &sink.environment,
        secret_path: &sink.secret_path,
    };
    let writes: Vec<(&str, &crate::secret::SecretString)> = payload
        .values
        .iter()
        .map(|(name, value)| (sink.key_of(name), value))
        .collect();
    let stored = client
        .folder_secrets(folder, &ctx)
        .await
        .map_err(|e| failure("reading the folder", &e))?;
    let approval_key = format!(
        "{}\0{}\0{}\0{}",
        payload.rotation_id, sink.project_id, sink.environment, sink.secret_path
    );
    match standing(&stored, &writes, payload) {
        Standing::Owed => {}
        Standing::Held => {
            clients.set_awaiting(approval_key, None);
            return Ok(());
        }
        Standing::Newer(version) => {
            tracing::info!(
                rotation_id = payload.rotation_id,
                version = payload.version,
                infisical_holds = version,
                "Infisical already holds a newer version; not written"
            );
            return Ok(());
        }
        Standing::Rotated(key) => {
            return Err(SinkError(format!(
                "the key {key} is managed by an Infisical secret rotation, which ignores \
                 written values; map another key (rename)"
            )));
        }
    }
    if let Some(id) = clients.awaiting(&approval_key, payload.version) {
        return Err(awaiting_approval(sink, id.as_deref()));
    }
    let version = payload.version.to_string();
    let metadata = [
        (ROTATION_ID_KEY, payload.rotation_id),
        (VERSION_KEY, version.as_str()),
    ];
    match client
        .upsert_secrets(folder, &writes, &metadata, &ctx)
        .await
        .map_err(|e| failure("writing the secrets", &e))?
    {
        Upserted::Written(written) => {
            let missing: Vec<&str> = writes
                .iter()
                .map(|(key, _)| *key)
                .filter(|key| !written.iter().any(|w| w.key == *key))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(SinkError(format!(
                    "Infisical's answer lacks the keys {}",
                    missing.join(", ")
                )))
            }
        }
        Upserted::ApprovalRequired { id } => {
            let error = awaiting_approval(sink, id.as_deref());
            clients.set_awaiting(approval_key, Some((payload.version, id)));
            Err(error)
        }
    }
}

fn awaiting_approval(sink: &InfisicalSink, id: Option<&str>) -> SinkError {
    SinkError(format!(
        "a change policy on {}{} holds the write as approval request {}; it is delivered once \
         approved (or exempt rotator's identity from the policy)",
        sink.environment,
        sink.secret_path,
        id.unwrap_or("(no id)")
    ))
}

/// What Infisical's folder says about the version to deliver.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    /// It must be written.
    Owed,
    /// Every key already holds this version of this rotation.
    Held,
    /// A key holds a newer version of this rotation (another replica was faster).
    Newer(u64),
    /// A key is managed by an Infisical rotation.
    Rotated(String),
}

fn standing(
    stored: &[StoredSecret],
    writes: &[(&str, &crate::secret::SecretString)],
    payload: &Payload<'_>,
) -> Standing {
    let mut all_held = true;
    for (key, _) in writes {
        let Some(secret) = stored.iter().find(|s| s.key == *key) else {
            all_held = false;
            continue;
        };
        if secret.is_rotated {
            return Standing::Rotated((*key).to_owned());
        }
        let meta = |name: &str| {
            secret
                .metadata
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let held = (meta(ROTATION_ID_KEY) == Some(payload.rotation_id))
            .then(|| meta(VERSION_KEY).and_then(|v| v.parse::<u64>().ok()))
            .flatten();
        match held {
            Some(v) if v > payload.version => return Standing::Newer(v),
            Some(v) if v == payload.version => {}
            _ => all_held = false,
        }
    }
    if all_held {
        Standing::Held
    } else {
        Standing::Owed
    }
}

/// A failed call as a sink error: what rotator was doing, the status, Infisical's error name
/// and message, and its `reqId`.
fn failure(doing: &str, error: &UpstreamError) -> SinkError {
    match error {
        UpstreamError::Http(f) => {
            let name = f.error_name.as_deref().unwrap_or("error");
            let req_id = f
                .req_id
                .as_deref()
                .map(|r| format!(" (reqId {r})"))
                .unwrap_or_default();
            SinkError(format!(
                "{doing}: Infisical answered HTTP {} {name}: {}{req_id}",
                f.status, f.message
            ))
        }
        other => SinkError(format!("{doing}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    fn stored(key: &str, rotation: &str, version: &str, rotated: bool) -> StoredSecret {
        StoredSecret {
            key: key.into(),
            version: 4,
            metadata: vec![
                (ROTATION_ID_KEY.into(), rotation.into()),
                (VERSION_KEY.into(), version.into()),
            ],
            is_rotated: rotated,
        }
    }

    #[test]
    fn a_version_is_written_once_and_never_over_a_newer_one() {
        let value = SecretString::new("v");
        let writes = [("A", &value), ("B", &value)];
        let values = [];
        let payload = Payload {
            rotation_id: "r",
            version: 3,
            values: &values,
        };
        let held = [stored("A", "r", "3", false), stored("B", "r", "3", false)];
        assert_eq!(standing(&held, &writes, &payload), Standing::Held);
        let older = [stored("A", "r", "3", false), stored("B", "r", "2", false)];
        assert_eq!(standing(&older, &writes, &payload), Standing::Owed);
        let missing = [stored("A", "r", "3", false)];
        assert_eq!(standing(&missing, &writes, &payload), Standing::Owed);
        let newer = [stored("A", "r", "4", false)];
        assert_eq!(standing(&newer, &writes, &payload), Standing::Newer(4));
        let other_rotation = [stored("A", "x", "9", false), stored("B", "r", "3", false)];
        assert_eq!(standing(&other_rotation, &writes, &payload), Standing::Owed);
        let rotated = [stored("B", "", "", true)];
        assert_eq!(
            standing(&rotated, &writes, &payload),
            Standing::Rotated("B".into())
        );
    }
}
