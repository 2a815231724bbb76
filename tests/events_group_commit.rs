//! Group-committed outbox appends keep their promise under a crash: the rotator binary forwards
//! many concurrent RotateSecrets calls to the fake Infisical, is killed with SIGKILL mid-load and
//! restarted on the same store; every call that was answered OK has its event in the outbox
//! exactly once.

use std::collections::HashMap;
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::local_server::{free_port, wait_serving};
use rotator_testkit::rotator_server::forwarding_env;
use sqlx::ConnectOptions as _;
use tokio::sync::mpsc;

/// Callers at once, each rotating a rotation of its own one call after another.
const CALLERS: usize = 32;
/// Answered calls before the kill.
const ANSWERED_BEFORE_KILL: usize = 300;

fn rotator(fake: &FakeInfisical, data_dir: &std::path::Path, port: u16) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("serve")
        .env_clear()
        .envs(forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET))
        .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROTATOR_DATA_DIR", data_dir)
        .env("ROTATOR_ADMIN_LISTEN", "off")
        .env("ROTATOR_MAX_CONCURRENT_CALLS", "1024")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run the rotator binary")
}

/// `request_id → subject` of every outbox row, failing on a request id stored twice.
async fn outbox_rows(data_dir: &std::path::Path) -> HashMap<String, String> {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("rotator.db"))
        .read_only(true)
        .connect()
        .await
        .expect("open the store");
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT request_id, subject FROM outbox")
        .fetch_all(&mut conn)
        .await
        .expect("read the outbox");
    let mut by_request = HashMap::new();
    for (request_id, subject) in rows {
        assert!(
            by_request.insert(request_id.clone(), subject).is_none(),
            "two events for {request_id}"
        );
    }
    by_request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_calls_keep_their_events_across_kill_9() {
    let fake = FakeInfisical::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = rotator(&fake, data.path(), port);
    let channel = wait_serving(&url, Duration::from_secs(30)).await;

    let (answered, mut answers) = mpsc::unbounded_channel::<String>();
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let id = fake.add_rotation("postgres-credentials", &format!("kill9-{caller}"));
        let mut client = SecretRotationServiceClient::new(channel.clone());
        let answered = answered.clone();
        callers.push(tokio::spawn(async move {
            for call in 0.. {
                let request_id = format!("kill9-{caller}-{call}");
                let mut request = tonic::Request::new(RotateSecretsRequest {
                    r#type: RotationType::PostgresCredentials.into(),
                    rotation_id: id.to_string(),
                });
                request.metadata_mut().insert(
                    "x-request-id",
                    request_id.parse().expect("an ASCII request id"),
                );
                // The first failure is the kill: the caller stops there.
                if client.rotate_secrets(request).await.is_err() {
                    return;
                }
                if answered.send(request_id).is_err() {
                    return;
                }
            }
        }));
    }
    drop(answered);

    let mut ok = Vec::new();
    while ok.len() < ANSWERED_BEFORE_KILL {
        ok.push(answers.recv().await.expect("callers run until the kill"));
    }
    server.start_kill().expect("SIGKILL");
    server.wait().await.expect("the killed server is reaped");
    for caller in callers {
        caller.await.expect("caller task");
    }
    while let Ok(request_id) = answers.try_recv() {
        ok.push(request_id);
    }

    // The restarted server opens the crashed store and serves from it.
    let mut restarted = rotator(&fake, data.path(), port);
    wait_serving(&url, Duration::from_secs(30)).await;
    let rows = outbox_rows(data.path()).await;
    let lost: Vec<_> = ok.iter().filter(|id| !rows.contains_key(*id)).collect();
    assert!(lost.is_empty(), "answered calls without an event: {lost:?}");
    for request_id in &ok {
        assert_eq!(
            rows[request_id], "postgres-credentials.completed",
            "{request_id}"
        );
    }
    // At most one call per caller was in flight at the kill; its event may or may not exist.
    assert!(rows.len() <= ok.len() + CALLERS, "{} rows", rows.len());

    restarted.start_kill().expect("SIGKILL");
    let _ = restarted.wait().await;
    fake.shutdown().await;
}
