//! Crash safety: the real binary aborts (as kill -9 would) right after a random attempt-state
//! boundary, 50+ times; after each restart and recovery both stored credentials log in on a
//! scram-only PostgreSQL cluster and every attempt ended COMMITTED or FAILED. And a crash at
//! APPLIED followed by a restart while PostgreSQL does not answer rolls forward once it does.

use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator_testkit::local_server::*;
use rotator_testkit::private_postgres::{ADMIN_PASSWORD, PrivatePostgres};
use rotator_testkit::tcp_gate::TcpGate;
use tokio::process::Child;

const BOUNDARIES: [&str; 4] = ["prepared", "applied", "verified", "committed"];
const RUNS: usize = 52;

fn spawn(
    config: &std::path::Path,
    data_dir: &std::path::Path,
    port: u16,
    failpoint: Option<&str>,
) -> Child {
    let mut command = rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        config,
        data_dir,
        port,
        ("PG_ADMIN", ADMIN_PASSWORD),
    );
    command.env("ROTATOR_LOG_FORMAT", "json");
    if let Some(fp) = failpoint {
        command.env("ROTATOR_FAILPOINT", fp);
    }
    command.spawn().expect("spawn rotator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_any_boundary_loses_no_credential() {
    let pg = PrivatePostgres::shared();
    pg.create_role("crash_a", "initial-a-Pw1").await;
    pg.create_role("crash_b", "initial-b-Pw1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = pg_config(dir.path(), pg.port(), ("crash_a", "crash_b"));
    let data_dir = dir.path().join("data");
    let mut crashes = 0;
    for run in 0..RUNS {
        let boundary = BOUNDARIES[rand::random_range(0..BOUNDARIES.len())];
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut child = spawn(&config, &data_dir, port, Some(boundary));
        // The failpoint may fire during start-up (first create, recovery) or on the rotation.
        let ready = tokio::select! {
            _ = child.wait() => None,
            channel = wait_serving(&url, Duration::from_secs(30)) => Some(channel),
        };
        if let Some(channel) = ready {
            let _ = SecretRotationServiceClient::new(channel)
                .rotate_secrets(RotateSecretsRequest {
                    r#type: RotationType::PostgresCredentials as i32,
                    rotation_id: PG_ROTATION.to_owned(),
                })
                .await;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("the failpoint ends the process")
            .expect("wait");
        if !status.success() {
            crashes += 1;
        }

        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut clean = spawn(&config, &data_dir, port, None);
        let channel = wait_serving(&url, Duration::from_secs(30)).await;
        // Serving does not wait for recovery: it finishes the crashed attempt in the background.
        wait_for_attempts_to_end(&data_dir, Duration::from_secs(60)).await;
        let (active, creds) = credentials(&channel, PG_ROTATION).await;
        assert!(
            !creds.is_empty(),
            "run {run} ({boundary}): a credential is issued"
        );
        assert!((active as usize) < creds.len());
        for (user, password) in &creds {
            assert!(
                pg_login(pg.port(), user, password).await,
                "run {run} ({boundary}): stored credential of {user} does not log in"
            );
        }
        clean.start_kill().expect("kill");
        let _ = clean.wait().await;
        let states = attempt_states(&data_dir).await;
        assert!(
            states.iter().all(|s| s == "committed" || s == "failed"),
            "run {run} ({boundary}): open attempts remain: {states:?}"
        );
    }
    assert!(
        crashes >= RUNS / 2,
        "the failpoints fired ({crashes} crashes)"
    );
}

/// Kill -9 at APPLIED, restart while PostgreSQL does not answer: the server serves with the
/// attempt open (not FAILED, which would leave the slot's stored password dead); once PostgreSQL
/// answers, recovery verifies and commits, and both stored credentials log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_applied_rolls_forward_once_postgres_returns() {
    let pg = PrivatePostgres::shared();
    pg.create_role("gate_a", "initial-a-Pw1").await;
    pg.create_role("gate_b", "initial-b-Pw1").await;
    let gate = TcpGate::start(pg.port()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = pg_config(dir.path(), gate.port(), ("gate_a", "gate_b"));
    let data_dir = dir.path().join("data");
    let rotate = |channel| async move {
        SecretRotationServiceClient::new(channel)
            .rotate_secrets(RotateSecretsRequest {
                r#type: RotationType::PostgresCredentials as i32,
                rotation_id: PG_ROTATION.to_owned(),
            })
            .await
    };

    let port = free_port();
    let mut first = spawn(&config, &data_dir, port, None);
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)).await;
    rotate(channel)
        .await
        .expect("slot 1 after the first credential");
    first.start_kill().expect("kill");
    let _ = first.wait().await;

    let port = free_port();
    let mut crashing = spawn(&config, &data_dir, port, Some("applied"));
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)).await;
    let _ = rotate(channel).await;
    let status = tokio::time::timeout(Duration::from_secs(30), crashing.wait())
        .await
        .expect("the failpoint ends the process")
        .expect("wait");
    assert!(!status.success(), "the process aborted at APPLIED");

    gate.shut();
    let port = free_port();
    let _restarted = spawn(&config, &data_dir, port, None);
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)).await;
    let states = attempt_states(&data_dir).await;
    assert!(
        states.iter().any(|s| s == "applied"),
        "serving while the attempt waits for PostgreSQL: {states:?}"
    );
    // Recovery holds the attempt while it retries; once its budget is spent the attempt stays
    // open (pending), and a call that resumes it meets the same silent target.
    let pending = until_not_in_progress(|| rotate(channel.clone())).await;
    assert_eq!(reason(&pending), "ROTATION_PENDING", "{pending:?}");
    assert!(
        !attempt_states(&data_dir)
            .await
            .iter()
            .any(|s| s == "failed"),
        "never FAILED while the target may hold the candidate"
    );

    gate.open().await;
    wait_for_attempts_to_end(&data_dir, Duration::from_secs(120)).await;
    let (_, creds) = credentials(&channel, PG_ROTATION).await;
    assert_eq!(creds.len(), 2);
    for (user, password) in &creds {
        assert!(pg_login(pg.port(), user, password).await, "{user} logs in");
    }
    assert!(
        attempt_states(&data_dir)
            .await
            .iter()
            .all(|s| s == "committed"),
        "nothing failed"
    );
}
