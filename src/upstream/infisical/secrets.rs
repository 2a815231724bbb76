//! Infisical's secrets API (v4), as the `infisical` delivery sink uses it: read what a folder
//! holds (keys, versions and metadata, never values) and upsert a batch of secrets.
//!
//! - `GET /api/v4/secrets?projectId&environment&secretPath&viewSecretValue=false`
//! - `PATCH /api/v4/secrets/batch` with `mode = "upsert"`: one transaction that updates the
//!   keys that exist and creates the others (create permission is checked only for those).
//!   A path under a change policy answers `{approval}` instead of writing.
//!
//! Request bodies hold values; they are never logged or traced, and the answers' values are
//! dropped while decoding.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::Idempotency;
use super::{Infisical, UpstreamError};
use crate::config::InfisicalAuth;
use crate::context::CallContext;
use crate::secret::SecretString;

/// A folder of an environment of a project.
#[derive(Debug, Clone, Copy)]
pub struct Folder<'a> {
    /// The project's id.
    pub project_id: &'a str,
    /// The environment's slug.
    pub environment: &'a str,
    /// The folder's path, e.g. `/` or `/app/db`.
    pub secret_path: &'a str,
}

/// What Infisical holds for one key; never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// The key.
    pub key: String,
    /// Infisical's own version of it (1 when created, one more per change).
    pub version: u64,
    /// Its unencrypted metadata, `(key, value)`.
    pub metadata: Vec<(String, String)>,
    /// Whether an Infisical secret rotation manages it (Infisical then ignores value writes).
    pub is_rotated: bool,
}

/// The answer to an upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    /// The secrets as written.
    Written(Vec<StoredSecret>),
    /// A change policy turned the write into an approval request (nothing written yet).
    ApprovalRequired {
        /// The request's id, when the answer has one.
        id: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSecret {
    secret_key: String,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    secret_metadata: Option<Vec<RawMetadata>>,
    #[serde(default)]
    is_rotated_secret: Option<bool>,
}

#[derive(Deserialize)]
struct RawMetadata {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default, rename = "isEncrypted")]
    is_encrypted: bool,
}

// === impl RawSecret ===

impl RawSecret {
    fn stored(self) -> StoredSecret {
        StoredSecret {
            key: self.secret_key,
            version: self.version,
            metadata: self
                .secret_metadata
                .unwrap_or_default()
                .into_iter()
                .filter(|m| !m.is_encrypted)
                .map(|m| (m.key, m.value.unwrap_or_default()))
                .collect(),
            is_rotated: self.is_rotated_secret.unwrap_or(false),
        }
    }
}

/// The `secrets` array of an answer, values left out.
fn stored_secrets(answer: &Value) -> Result<Vec<StoredSecret>, UpstreamError> {
    let Some(items) = answer.get("secrets").and_then(Value::as_array) else {
        return Err(UpstreamError::Decode(
            "the answer has no `secrets` array".into(),
        ));
    };
    items
        .iter()
        .map(|item| {
            // Decoding never copies `secretValue`: RawSecret has no field for it.
            RawSecret::deserialize(item)
                .map(RawSecret::stored)
                .map_err(|e| UpstreamError::Decode(format!("a secret of the answer: {e}")))
        })
        .collect()
}

// === impl Infisical ===

impl Infisical {
    /// A client of the same Infisical (HTTP client, URL, CA, organization) that logs in as
    /// another machine identity, with its own token cache.
    pub fn for_identity(&self, auth: InfisicalAuth) -> Self {
        Self {
            rest: self.rest.clone(),
            tokens: self.tokens.for_identity(auth),
            last_rotated: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The secrets of `folder`: keys, versions and metadata, without values
    /// (`viewSecretValue=false`, which needs only the describe permission).
    ///
    /// # Errors
    ///
    /// The call's failure (404 for an unknown project, environment or folder).
    pub async fn folder_secrets(
        &self,
        folder: Folder<'_>,
        ctx: &CallContext,
    ) -> Result<Vec<StoredSecret>, UpstreamError> {
        let query = [
            ("projectId", folder.project_id),
            ("environment", folder.environment),
            ("secretPath", folder.secret_path),
            ("viewSecretValue", "false"),
            ("expandSecretReferences", "false"),
            ("include_imports", "false"),
        ];
        let answer = self
            .rest
            .call(
                &self.tokens,
                Method::GET,
                "api/v4/secrets",
                &query,
                ctx,
                Idempotency::Idempotent,
            )
            .await?;
        stored_secrets(&answer)
    }

    /// Writes `secrets` into `folder` in one batch: existing keys are updated, missing ones
    /// created, each with `metadata`. Sent again only when nothing can have been written (a
    /// refused token, a connection that never opened, a 429's wait): a 5xx is the caller's to
    /// retry.
    ///
    /// # Errors
    ///
    /// The call's failure, or [`UpstreamError::Decode`] for an answer that is neither written
    /// secrets nor an approval request.
    pub async fn upsert_secrets(
        &self,
        folder: Folder<'_>,
        secrets: &[(&str, &SecretString)],
        metadata: &[(&str, &str)],
        ctx: &CallContext,
    ) -> Result<Upserted, UpstreamError> {
        let metadata: Vec<Value> = metadata
            .iter()
            .map(|(key, value)| json!({ "key": key, "value": value, "isEncrypted": false }))
            .collect();
        let secrets: Vec<Value> = secrets
            .iter()
            .map(|(key, value)| {
                json!({
                    "secretKey": key,
                    "secretValue": value.expose(),
                    "secretMetadata": metadata,
                })
            })
            .collect();
        let body = json!({
            "projectId": folder.project_id,
            "environment": folder.environment,
            "secretPath": folder.secret_path,
            "mode": "upsert",
            "secrets": secrets,
        });
        let answer = self
            .rest
            .call_with_body(
                &self.tokens,
                Method::PATCH,
                "api/v4/secrets/batch",
                &[],
                Some(&body),
                ctx,
                Idempotency::NotIdempotent,
            )
            .await?;
        if let Some(approval) = answer.get("approval") {
            return Ok(Upserted::ApprovalRequired {
                id: approval
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        stored_secrets(&answer).map(Upserted::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_without_values() {
        let answer = json!({ "secrets": [
            { "id": "1", "secretKey": "DB_PASSWORD", "secretValue": "hunter2-value", "version": 3,
              "secretMetadata": [
                { "key": "rotator-version", "value": "7", "isEncrypted": false },
                { "key": "private", "value": "x", "isEncrypted": true } ],
              "isRotatedSecret": false },
            { "secretKey": "DB_USER", "version": 1 } ] });
        let stored = stored_secrets(&answer).expect("decodes");
        assert_eq!(
            stored[0],
            StoredSecret {
                key: "DB_PASSWORD".into(),
                version: 3,
                metadata: vec![("rotator-version".into(), "7".into())],
                is_rotated: false,
            }
        );
        assert_eq!((stored[1].version, stored[1].is_rotated), (1, false));
        assert!(!format!("{stored:?}").contains("hunter2-value"));
        assert!(stored_secrets(&json!({ "approval": {} })).is_err());
    }
}
