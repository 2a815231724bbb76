//! SIGHUP reloads the local registry: a rotation added to the file gets its first credential
//! and is served, a renamed one answers with its new name, a call running during the reload
//! completes, and a file that does not validate changes nothing.

use std::path::Path;
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    GetSecretRotationRequest, RotateSecretsRequest, RotationType, get_secret_rotation_request,
};
use rotator_testkit::local_server::*;
use rotator_testkit::private_postgres::{ADMIN_PASSWORD, PrivatePostgres};
use tokio::process::Child;
use tonic::transport::Channel;

const ADDED: &str = "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b";
const LIMIT: Duration = Duration::from_secs(30);

fn spawn(config: &Path, data_dir: &Path, port: u16, log: &Path) -> Child {
    rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        config,
        data_dir,
        port,
        ("PG_ADMIN", ADMIN_PASSWORD),
    )
    // Every attempt stays mid-way for a moment, so the reload lands while one runs.
    .env("ROTATOR_FAILPOINT", "applied:pause=700")
    .env("ROTATOR_LOG_FORMAT", "json")
    .stderr(std::fs::File::create(log).expect("log file"))
    .spawn()
    .expect("spawn rotator")
}

fn hangup(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn get(channel: &Channel, id: &str) -> Result<String, tonic::Status> {
    SecretRotationServiceClient::new(channel.clone())
        .get_secret_rotation(GetSecretRotationRequest {
            r#type: RotationType::PostgresCredentials as i32,
            lookup: Some(get_secret_rotation_request::Lookup::RotationId(
                id.to_owned(),
            )),
        })
        .await
        .map(|r| {
            r.into_inner()
                .secret_rotation
                .map(|r| r.name)
                .unwrap_or_default()
        })
}

/// Polls `check` every 50 ms until it is true, or panics naming `what` after [`LIMIT`].
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_registry_without_dropping_a_running_call() {
    let pg = PrivatePostgres::shared();
    for (user, password) in [
        ("reload_a", "initial-a-Pw1"),
        ("reload_b", "initial-b-Pw1"),
        ("reload_c", "initial-c-Pw1"),
        ("reload_d", "initial-d-Pw1"),
    ] {
        pg.create_role(user, password).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = pg_config(dir.path(), pg.port(), ("reload_a", "reload_b"));
    let first = std::fs::read_to_string(&config).expect("config");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("rotator.log");
    let port = free_port();
    let mut child = spawn(&config, &data_dir, port, &log);
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), LIMIT).await;
    assert_eq!(
        get(&channel, ADDED).await.map_err(|s| s.code()),
        Err(tonic::Code::NotFound)
    );

    // A call is mid-attempt when the reload arrives.
    let running = tokio::spawn({
        let channel = channel.clone();
        async move {
            SecretRotationServiceClient::new(channel)
                .rotate_secrets(RotateSecretsRequest {
                    r#type: RotationType::PostgresCredentials as i32,
                    rotation_id: PG_ROTATION.to_owned(),
                })
                .await
        }
    });
    eventually("an open attempt", || async {
        attempt_states(&data_dir)
            .await
            .iter()
            .any(|s| s == "applied")
    })
    .await;
    let second = first.replace("name = \"app-db\"", "name = \"app-db-v2\"")
        + &format!(
            r#"
[[rotations]]
id = "{ADDED}"
name = "added-db"
type = "postgres-credentials"
connection = "pg"
parameters = {{ username1 = "reload_c", username2 = "reload_d" }}
secrets_mapping = {{ username = "DB_USER", password = "DB_PASSWORD" }}
"#
        );
    std::fs::write(&config, &second).expect("rewrite config");
    hangup(&child);

    let answer = running.await.expect("task");
    assert!(answer.is_ok(), "the running call completed: {answer:?}");
    eventually("the added rotation's first credential", || async {
        get(&channel, ADDED).await.is_ok() && credentials_if_any(&channel, ADDED).await.is_some()
    })
    .await;
    let (_, creds) = credentials(&channel, ADDED).await;
    for (user, password) in &creds {
        assert!(pg_login(pg.port(), user, password).await, "{user} logs in");
    }
    assert_eq!(get(&channel, PG_ROTATION).await.expect("get"), "app-db-v2");

    // A file that does not validate changes nothing.
    std::fs::write(
        &config,
        second.replace("postgres-credentials", "no-such-type"),
    )
    .expect("break config");
    hangup(&child);
    eventually("the refusal in the log", || async {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains("reload refused"))
    })
    .await;
    assert_eq!(
        get(&channel, ADDED).await.expect("still served"),
        "added-db"
    );
    assert_eq!(get(&channel, PG_ROTATION).await.expect("get"), "app-db-v2");

    child.start_kill().expect("kill");
    let _ = child.wait().await;
}

/// The credentials of `id`, or `None` while none is issued.
async fn credentials_if_any(channel: &Channel, id: &str) -> Option<usize> {
    SecretRotationServiceClient::new(channel.clone())
        .get_generated_credentials(rotator::proto::GetGeneratedCredentialsRequest {
            r#type: RotationType::PostgresCredentials as i32,
            rotation_id: id.to_owned(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().generated_credentials.len())
        .filter(|n| *n > 0)
}
