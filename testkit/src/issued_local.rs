//! Local rotations of client secrets (Okta, Databricks, Azure, Auth0) through the real binary:
//! a config with one connection and one rotation, a start that may end at a failpoint, a run
//! killed at one, and the stored `{clientId, clientSecret, secretId}` credentials read back over
//! gRPC.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    GetGeneratedCredentialsRequest, RotateSecretsRequest, RotationType, generated_credential,
};
use tokio::process::Child;
use tonic::transport::Channel;

use crate::local_server::{
    attempt_states, free_port, rotator_command, wait_for_attempts_to_end, wait_serving,
};

/// The rotation id every config of this module uses.
pub const ROTATION_ID: &str = "0b5e3a1c-8d2f-4c6e-9a7b-1d3f5e7a9c2b";

/// One stored credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// `clientId` (from the parameters).
    pub client_id: String,
    /// `clientSecret`.
    pub client_secret: String,
    /// `secretId`: the provider's id (Azure's `keyId`; empty for Auth0, whose app has one
    /// secret).
    pub secret_id: String,
}

/// A running binary.
pub struct Running {
    /// The process, killed on drop.
    pub child: Child,
    /// A channel to its gRPC port.
    pub channel: Channel,
}

/// Writes `rotator.toml` in `dir`: the `[[connections]]` body `connection` (named "target") and
/// one rotation of `rotation_type` with `parameters` (an inline TOML table).
pub fn write_config(
    dir: &Path,
    connection: &str,
    rotation_type: &str,
    parameters: &str,
) -> PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "target"
{connection}

[[rotations]]
id = "{ROTATION_ID}"
name = "issued-secret"
type = "{rotation_type}"
connection = "target"
rotation_interval_days = 30
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = {parameters}
secrets_mapping = {{ clientId = "APP_CLIENT_ID", clientSecret = "APP_CLIENT_SECRET" }}
"#
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts the binary with `failpoint` and, when it serves, asks for a rotation of
/// `rotation_type`; returns once the process died at the failpoint, during the first create
/// (start-up) or that rotation. Panics when it did not fail.
pub async fn crash_at(
    binary: &str,
    dir: &Path,
    config: &Path,
    env: (&str, &str),
    failpoint: &str,
    rotation_type: RotationType,
) {
    let status = match start(binary, dir, config, env, Some(failpoint)).await {
        Err(status) => status,
        Ok(running) => {
            let _ = running.rotate(rotation_type).await;
            running.exited().await
        }
    };
    assert!(!status.success(), "{failpoint}: the failpoint fired");
}

/// Kill -9 at `boundary` twice: round 1 crashes the first create (start-up), round 2 a
/// rotation. After each crash a clean restart runs `check(running, what)`, is stopped, and no
/// attempt may be left open.
pub async fn crash_twice_at(
    binary: &str,
    dir: &Path,
    config: &Path,
    env: (&str, &str),
    boundary: &str,
    rotation_type: RotationType,
    mut check: impl AsyncFnMut(&Running, &str),
) {
    for round in 1..=2 {
        let what = format!("{boundary}, round {round}");
        crash_at(binary, dir, config, env, boundary, rotation_type).await;
        let clean = start(binary, dir, config, env, None)
            .await
            .expect("serving");
        check(&clean, &what).await;
        clean.stop().await;
        let states = attempt_states(&dir.join("data")).await;
        assert!(
            states.iter().all(|s| s == "committed" || s == "failed"),
            "{what}: open attempts remain: {states:?}"
        );
    }
}

/// Starts the binary (`binary` is the test's `env!("CARGO_BIN_EXE_rotator")`) with its store
/// under `dir/data` and `env` set; with `failpoint` set it may abort before serving (the first
/// credential is made at start-up), which is `Err(exit status)`.
pub async fn start(
    binary: &str,
    dir: &Path,
    config: &Path,
    env: (&str, &str),
    failpoint: Option<&str>,
) -> Result<Running, ExitStatus> {
    let port = free_port();
    let mut command = rotator_command(binary, config, &dir.join("data"), port, env);
    if let Some(fp) = failpoint {
        command.env("ROTATOR_FAILPOINT", fp);
    }
    let mut child = command.spawn().expect("spawn rotator");
    let url = format!("http://127.0.0.1:{port}");
    let channel = tokio::select! {
        status = child.wait() => return Err(status.expect("wait")),
        channel = wait_serving(&url, Duration::from_secs(60)) => channel,
    };
    if failpoint.is_none() {
        // Serving does not wait for recovery; a clean start does, so checks see its result.
        wait_for_attempts_to_end(&dir.join("data"), Duration::from_secs(60)).await;
    }
    Ok(Running { child, channel })
}

// === impl Running ===

impl Running {
    /// Kills the process (as kill -9 would) and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Waits until the process ends (a failpoint fired), at most 30 s.
    pub async fn exited(mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the failpoint ends the process")
            .expect("wait")
    }

    /// `RotateSecrets` of the rotation.
    ///
    /// # Errors
    ///
    /// The gRPC status of a failed rotation.
    pub async fn rotate(&self, rotation_type: RotationType) -> Result<(), tonic::Status> {
        SecretRotationServiceClient::new(self.channel.clone())
            .rotate_secrets(RotateSecretsRequest {
                r#type: rotation_type as i32,
                rotation_id: ROTATION_ID.to_owned(),
            })
            .await
            .map(drop)
    }

    /// The stored credentials of the rotation, once checked: one at least, the active index
    /// pointing at one, and `held` (the provider's secret ids, in any order) exactly theirs.
    pub async fn assert_provider_holds(
        &self,
        rotation_type: RotationType,
        held: Vec<String>,
        context: &str,
    ) -> Vec<StoredSecret> {
        let (active, stored) = self.credentials(rotation_type).await;
        assert!(!stored.is_empty(), "{context}: a credential is stored");
        assert!((active as usize) < stored.len(), "{context}");
        assert_eq!(
            sorted(held),
            ids(&stored),
            "{context}: the provider holds exactly the stored secrets"
        );
        stored
    }

    /// The active index and the stored credentials of the rotation.
    pub async fn credentials(&self, rotation_type: RotationType) -> (u32, Vec<StoredSecret>) {
        let answer = SecretRotationServiceClient::new(self.channel.clone())
            .get_generated_credentials(GetGeneratedCredentialsRequest {
                r#type: rotation_type as i32,
                rotation_id: ROTATION_ID.to_owned(),
            })
            .await
            .expect("GetGeneratedCredentials")
            .into_inner();
        let creds = answer
            .generated_credentials
            .into_iter()
            .map(|c| match c.kind {
                Some(
                    generated_credential::Kind::OktaClientSecret(c)
                    | generated_credential::Kind::DatabricksServicePrincipalSecret(c),
                ) => StoredSecret {
                    client_id: c.client_id,
                    client_secret: c.client_secret,
                    secret_id: c.secret_id,
                },
                Some(generated_credential::Kind::AzureClientSecret(c)) => StoredSecret {
                    client_id: c.client_id,
                    client_secret: c.client_secret,
                    secret_id: c.key_id,
                },
                Some(generated_credential::Kind::Auth0ClientSecret(c)) => StoredSecret {
                    client_id: c.client_id,
                    client_secret: c.client_secret,
                    secret_id: String::new(),
                },
                other => panic!("unexpected credential {other:?}"),
            })
            .collect();
        (answer.active_index, creds)
    }
}

/// The sorted secret ids of `stored`.
pub fn ids(stored: &[StoredSecret]) -> Vec<String> {
    sorted(stored.iter().map(|s| s.secret_id.clone()).collect())
}

/// `ids`, sorted.
pub fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}
