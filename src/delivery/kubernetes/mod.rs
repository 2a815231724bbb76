//! The `kubernetes-secret` sink: the mapped secrets as a Secret's `data`, then optionally a
//! rollout restart of Deployments that read it.
//!
//! - **Optimistic concurrency.** The Secret is read (GET), then created (POST) when absent or
//!   replaced (PUT) with the `resourceVersion` read, keeping every label, annotation and data
//!   key rotator does not own. A 409 Conflict (someone wrote in between, or created it first)
//!   re-reads and tries again, at most [`MAX_CONFLICTS`] times.
//! - **Never back.** The Secret carries the delivered version in `rotator.dev/version` (and the
//!   rotation in `rotator.dev/rotation-id`): a Secret already holding a newer version of this
//!   rotation is left as it is, and one written by another rotation is refused.
//! - **Restart once per version.** Each Deployment's pod template gets
//!   `kubectl.kubernetes.io/restartedAt` (what `kubectl rollout restart` sets) and
//!   `rotator.dev/version` by a strategic-merge PATCH. The timestamp is the one stored on the
//!   Secret with that version (`rotator.dev/delivered-at`), so a repeated delivery patches the
//!   same values and starts no second rollout.
//!
//! The connection is set up anew for every delivery ([`client`]; kubeconfig files are read by
//! `crate::config::kubeconfig`). Errors carry the HTTP status and the API's `Status.reason`/`message`, never a value.

pub mod client;

use std::collections::BTreeMap;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use self::client::Api;
use super::render::render;
use super::{Payload, Sink, SinkError};
use crate::config::sinks::{KubernetesData, KubernetesSecretSink};

/// The annotation holding the delivered version.
pub const VERSION_ANNOTATION: &str = "rotator.dev/version";
/// The annotation naming the rotation that writes the Secret.
pub const ROTATION_ANNOTATION: &str = "rotator.dev/rotation-id";
/// The annotation holding when the version was first written (reused by restarts).
pub const DELIVERED_AT_ANNOTATION: &str = "rotator.dev/delivered-at";
/// The pod-template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// How many 409 Conflicts one delivery re-reads after before it fails (and is retried later).
pub const MAX_CONFLICTS: u32 = 5;

/// Why a Kubernetes delivery failed; never holds a value.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// The connection could not be set up (files, kubeconfig, TLS).
    #[error("{0}")]
    Auth(String),
    /// No answer.
    #[error("{what} at {server}: {reason}")]
    Transport {
        /// The call.
        what: String,
        /// The API server.
        server: String,
        /// Why.
        reason: &'static str,
    },
    /// An unexpected answer.
    #[error("{what}: HTTP {status} {reason}: {message}")]
    Status {
        /// The call.
        what: String,
        /// The HTTP status.
        status: u16,
        /// `Status.reason` (`Forbidden`, `NotFound`, `Conflict`, `Invalid`, …).
        reason: String,
        /// `Status.message`, shortened.
        message: String,
    },
    /// The Secret is not rotator's to write, or keeps changing.
    #[error("{0}")]
    Refused(String),
}

impl KubernetesError {
    /// The HTTP status of an API answer, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<KubernetesError> for SinkError {
    fn from(e: KubernetesError) -> Self {
        SinkError(e.to_string())
    }
}

impl Sink for KubernetesSecretSink {
    async fn deliver(&self, payload: &Payload<'_>) -> Result<(), SinkError> {
        let data = self.data(payload)?;
        let api = Api::connect(&self.auth)?;
        let Some(at) = self.write_secret(&api, payload, &data).await? else {
            return Ok(());
        };
        for deployment in &self.restart_deployments {
            self.restart(&api, deployment, payload.version, &at).await?;
        }
        Ok(())
    }
}

// === impl KubernetesSecretSink ===

impl KubernetesSecretSink {
    /// The `data` rotator owns: data key → base64 of the value.
    fn data(&self, payload: &Payload<'_>) -> Result<BTreeMap<String, String>, SinkError> {
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        match &self.data {
            KubernetesData::Keys(keys) => Ok(payload
                .values
                .iter()
                .map(|(name, value)| {
                    let key = keys.get(name).unwrap_or(name);
                    (key.clone(), b64(value.expose()))
                })
                .collect()),
            KubernetesData::Rendered { key, format } => {
                let text = render(format, payload.values)?;
                Ok(BTreeMap::from([(key.clone(), b64(text.expose()))]))
            }
        }
    }

    fn secret_path(&self) -> String {
        format!(
            "/api/v1/namespaces/{}/secrets/{}",
            self.namespace, self.secret_name
        )
    }

    /// Brings the Secret to `payload.version`: the timestamp of that version's first write, or
    /// `None` when the Secret already holds a newer version (left as is).
    async fn write_secret(
        &self,
        api: &Api,
        payload: &Payload<'_>,
        data: &BTreeMap<String, String>,
    ) -> Result<Option<String>, KubernetesError> {
        let name = format!("{}/{}", self.namespace, self.secret_name);
        let version = payload.version.to_string();
        for _ in 0..=MAX_CONFLICTS {
            let what = format!("GET Secret {name}");
            let read = api
                .call(Method::GET, &self.secret_path(), None, &what)
                .await?;
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let annotations = json!({
                VERSION_ANNOTATION: version,
                ROTATION_ANNOTATION: payload.rotation_id,
                DELIVERED_AT_ANNOTATION: now,
            });
            match read.status {
                404 => {
                    let secret = json!({
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {
                            "name": self.secret_name,
                            "namespace": self.namespace,
                            "labels": { "app.kubernetes.io/managed-by": "rotator" },
                            "annotations": annotations,
                        },
                        "type": "Opaque",
                        "data": data,
                    });
                    let what = format!("POST Secret {name}");
                    let path = format!("/api/v1/namespaces/{}/secrets", self.namespace);
                    let created = api
                        .call(
                            Method::POST,
                            &path,
                            Some(("application/json", &secret)),
                            &what,
                        )
                        .await?;
                    match created.status {
                        200..=202 => return Ok(Some(now)),
                        // Created by someone else since the GET: read it again.
                        409 => continue,
                        _ => return Err(created.error(&what)),
                    }
                }
                200 => {
                    let mut secret = read.body;
                    let held = annotation(&secret, VERSION_ANNOTATION);
                    let owner = annotation(&secret, ROTATION_ANNOTATION);
                    if let Some(owner) = &owner
                        && owner != payload.rotation_id
                    {
                        return Err(KubernetesError::Refused(format!(
                            "the Secret {name} is written by rotation {owner}; give each \
                             rotation its own Secret"
                        )));
                    }
                    let held = held.and_then(|v| v.parse::<u64>().ok());
                    if owner.is_some() && held.is_some_and(|held| held > payload.version) {
                        tracing::info!(secret = %name, version = payload.version,
                            held = held.unwrap_or_default(),
                            "the Secret already holds a newer version; left as it is");
                        return Ok(None);
                    }
                    let current = secret.get("data").cloned().unwrap_or(Value::Null);
                    let same_data = data
                        .iter()
                        .all(|(k, v)| current.get(k).and_then(Value::as_str) == Some(v));
                    if held == Some(payload.version) && same_data {
                        let at = annotation(&secret, DELIVERED_AT_ANNOTATION).unwrap_or(now);
                        return Ok(Some(at));
                    }
                    merge(
                        &mut secret,
                        "data",
                        data.iter()
                            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
                    );
                    let metadata = secret.get_mut("metadata").ok_or_else(|| {
                        KubernetesError::Refused(format!(
                            "the API answered GET Secret {name} without metadata"
                        ))
                    })?;
                    if let Some(map) = annotations.as_object() {
                        merge(
                            metadata,
                            "annotations",
                            map.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().into())),
                        );
                    }
                    let what = format!("PUT Secret {name}");
                    let replaced = api
                        .call(
                            Method::PUT,
                            &self.secret_path(),
                            Some(("application/json", &secret)),
                            &what,
                        )
                        .await?;
                    match replaced.status {
                        200 | 201 => return Ok(Some(now)),
                        // Written by someone else since the GET: read it again.
                        409 => {
                            tracing::debug!(secret = %name, "conflict; reading the Secret again");
                            continue;
                        }
                        _ => return Err(replaced.error(&what)),
                    }
                }
                _ => return Err(read.error(&what)),
            }
        }
        Err(KubernetesError::Refused(format!(
            "the Secret {name} changed under every one of {} tries (409 Conflict); tried again \
             later",
            MAX_CONFLICTS + 1
        )))
    }

    /// `kubectl rollout restart` of one Deployment, for `version` written at `at`.
    async fn restart(
        &self,
        api: &Api,
        deployment: &str,
        version: u64,
        at: &str,
    ) -> Result<(), KubernetesError> {
        let path = format!(
            "/apis/apps/v1/namespaces/{}/deployments/{deployment}",
            self.namespace
        );
        let patch = json!({
            "spec": { "template": { "metadata": { "annotations": {
                RESTARTED_AT_ANNOTATION: at,
                VERSION_ANNOTATION: version.to_string(),
            }}}}
        });
        let what = format!("PATCH Deployment {}/{deployment}", self.namespace);
        let answer = api
            .call(
                Method::PATCH,
                &path,
                Some(("application/strategic-merge-patch+json", &patch)),
                &what,
            )
            .await?;
        if answer.status == 200 {
            Ok(())
        } else {
            Err(answer.error(&what))
        }
    }
}

/// The string annotation `key` of an object.
fn annotation(object: &Value, key: &str) -> Option<String> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(key)?
        .as_str()
        .map(str::to_owned)
}

/// Sets `entries` in the object map `field` of `object`, creating it when absent or null.
fn merge(object: &mut Value, field: &str, entries: impl Iterator<Item = (String, Value)>) {
    let Some(object) = object.as_object_mut() else {
        return;
    };
    let slot = object
        .entry(field)
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(serde_json::Map::new());
    }
    if let Some(map) = slot.as_object_mut() {
        map.extend(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_entries() {
        let mut secret = json!({ "data": { "other": "eA==" }, "metadata": {} });
        merge(
            &mut secret,
            "data",
            [("DB".to_owned(), json!("eQ=="))].into_iter(),
        );
        assert_eq!(secret["data"], json!({ "other": "eA==", "DB": "eQ==" }));
        let metadata = secret.get_mut("metadata").expect("metadata");
        merge(
            metadata,
            "annotations",
            [("a".to_owned(), json!("1"))].into_iter(),
        );
        assert_eq!(secret["metadata"]["annotations"]["a"], "1");
    }
}
