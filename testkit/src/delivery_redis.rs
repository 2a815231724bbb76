//! The delivery and handover tests' rotator on a Redis rotation: started with its log in the
//! test's directory ([`start_logged`]), and asked about the sinks' state
//! (`GetSecretRotation.deliveries`), the active credential, a manual rotation, and the outbox rows
//! in its SQLite store.

use std::path::Path;
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    GetGeneratedCredentialsRequest, GetSecretRotationRequest, RotateSecretsRequest, RotationType,
    SinkDelivery, generated_credential, get_secret_rotation_request,
};
use tokio::process::Child;
use tonic::transport::Channel;

use crate::local_server::{free_port, rotator_command, wait_serving};

/// The rotation's sinks as `GetSecretRotation` shows them.
pub async fn deliveries(channel: &Channel, id: &str) -> Vec<SinkDelivery> {
    SecretRotationServiceClient::new(channel.clone())
        .get_secret_rotation(GetSecretRotationRequest {
            r#type: RotationType::RedisCredentials as i32,
            lookup: Some(get_secret_rotation_request::Lookup::RotationId(
                id.to_owned(),
            )),
        })
        .await
        .expect("get")
        .into_inner()
        .deliveries
}

/// Waits until `done` holds for the sinks' state (polling the API), or panics after a minute.
pub async fn wait_deliveries(
    channel: &Channel,
    id: &str,
    what: &str,
    done: impl Fn(&[SinkDelivery]) -> bool,
) -> Vec<SinkDelivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = deliveries(channel, id).await;
        if done(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {state:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sink named `name` in `state`.
pub fn sink<'a>(state: &'a [SinkDelivery], name: &str) -> &'a SinkDelivery {
    state
        .iter()
        .find(|s| s.sink == name)
        .unwrap_or_else(|| panic!("no sink {name} in {state:#?}"))
}

/// The active credential: (username, password).
pub async fn active(channel: &Channel, id: &str) -> (String, String) {
    let answer = SecretRotationServiceClient::new(channel.clone())
        .get_generated_credentials(GetGeneratedCredentialsRequest {
            r#type: RotationType::RedisCredentials as i32,
            rotation_id: id.to_owned(),
        })
        .await
        .expect("credentials")
        .into_inner();
    let index = usize::try_from(answer.active_index).expect("index");
    match &answer.generated_credentials[index].kind {
        Some(generated_credential::Kind::RedisCredentials(c)) => {
            (c.username.clone(), c.password.clone())
        }
        other => panic!("unexpected credential {other:?}"),
    }
}

/// Rotates the Redis rotation `id` (manual call); panics on an error.
pub async fn rotate(channel: &Channel, id: &str) {
    SecretRotationServiceClient::new(channel.clone())
        .rotate_secrets(RotateSecretsRequest {
            r#type: RotationType::RedisCredentials as i32,
            rotation_id: id.to_owned(),
        })
        .await
        .expect("rotate");
}

/// Every outbox row's subject and payload.
pub async fn outbox(data_dir: &Path) -> Vec<(String, String)> {
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("rotator.db"))
        .read_only(true)
        .connect()
        .await
        .expect("store");
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT subject, payload FROM outbox")
        .fetch_all(&mut conn)
        .await
        .expect("outbox");
    rows.into_iter()
        .map(|(s, p)| (s, String::from_utf8_lossy(&p).into_owned()))
        .collect()
}

/// Starts the rotator binary on `config`, its store in `dir/data`, its JSON log appended to
/// `dir/rotator.log`, with the connection's admin password in `admin_env` and the extra `env`.
/// Returns the child and, unless it exited first, a channel once it serves. The test's own
/// Kubernetes service variables are removed, so in-cluster auth sees only what a test sets.
pub async fn start_logged(
    binary: &str,
    dir: &Path,
    config: &Path,
    admin_env: (&str, &str),
    env: &[(&str, String)],
) -> (Child, Option<Channel>) {
    start_logged_on(free_port(), binary, dir, config, admin_env, env).await
}

/// [`start_logged`] with the gRPC listener on `port`.
pub async fn start_logged_on(
    port: u16,
    binary: &str,
    dir: &Path,
    config: &Path,
    admin_env: (&str, &str),
    env: &[(&str, String)],
) -> (Child, Option<Channel>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("rotator.log"))
        .expect("log");
    let mut command = rotator_command(binary, config, &dir.join("data"), port, admin_env);
    command
        .env("ROTATOR_LOG_FORMAT", "json")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stderr(std::process::Stdio::from(log.try_clone().expect("log")))
        .stdout(std::process::Stdio::from(log));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn");
    let url = format!("http://127.0.0.1:{port}");
    let channel = tokio::select! {
        _ = child.wait() => None,
        channel = wait_serving(&url, Duration::from_secs(60)) => Some(channel),
    };
    (child, channel)
}

/// Everything a rotator started by [`start_logged`] in `dir` logged so far.
pub fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("rotator.log")).unwrap_or_default()
}
