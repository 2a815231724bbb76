//! Two rotator processes sharing one PostgreSQL store rotate the same rotation at the same
//! time: every call either rotates or is refused with ABORTED naming the running attempt, the
//! attempts in the store never overlap, each one saw the one before it (slots alternate), each
//! closed attempt has exactly one event, and the stored credentials log in.

use std::path::Path;
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator_testkit::local_server::*;
use rotator_testkit::private_postgres::{ADMIN_PASSWORD, PrivatePostgres};
use rotator_testkit::scratch_postgres::ScratchDatabase;
use sqlx::Row as _;
use tokio::process::Child;
use tonic::transport::Channel;

const ROUNDS: usize = 8;

/// A replica on `port`. Each attempt pauses 300 ms after APPLIED, so the other replica's call
/// always lands while an attempt is mid-way.
fn replica(config: &Path, data_dir: &Path, port: u16, store_url: &str) -> Child {
    rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        config,
        data_dir,
        port,
        ("PG_ADMIN", ADMIN_PASSWORD),
    )
    .env("ROTATOR_STORE_URL", store_url)
    .env("ROTATOR_FAILPOINT", "applied:pause=300")
    .spawn()
    .expect("spawn rotator")
}

async fn rotate(channel: &Channel) -> Result<(), tonic::Status> {
    SecretRotationServiceClient::new(channel.clone())
        .rotate_secrets(RotateSecretsRequest {
            r#type: RotationType::PostgresCredentials as i32,
            rotation_id: PG_ROTATION.to_owned(),
        })
        .await
        .map(drop)
}

/// Counts an outcome: a rotation, or ABORTED naming the running attempt.
fn tally(outcome: Result<(), tonic::Status>, rotated: &mut usize, refused: &mut usize) {
    match outcome {
        Ok(()) => *rotated += 1,
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
            assert!(
                status.message().contains("attempt"),
                "the refusal names the running attempt: {}",
                status.message()
            );
            *refused += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_interleave_an_attempt() {
    let pg = PrivatePostgres::shared();
    pg.create_role("shared_a", "initial-a-Pw1").await;
    pg.create_role("shared_b", "initial-b-Pw1").await;
    let store = ScratchDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = pg_config(dir.path(), pg.port(), ("shared_a", "shared_b"));
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = replica(&config, &dir.path().join("a"), port_a, &store.url);
    let mut b = replica(&config, &dir.path().join("b"), port_b, &store.url);
    let limit = Duration::from_secs(60);
    let channel_a = wait_serving(&format!("http://127.0.0.1:{port_a}"), limit).await;
    let channel_b = wait_serving(&format!("http://127.0.0.1:{port_b}"), limit).await;

    let (mut rotated, mut refused) = (0, 0);
    for _ in 0..ROUNDS {
        let (from_a, from_b) = tokio::join!(rotate(&channel_a), rotate(&channel_b));
        tally(from_a, &mut rotated, &mut refused);
        tally(from_b, &mut rotated, &mut refused);
    }
    assert!(
        rotated >= ROUNDS,
        "each round rotated at least once ({rotated})"
    );
    assert!(
        refused >= 1,
        "the replicas' calls overlapped ({refused} refused)"
    );

    let db = store.pool().await;
    let attempts = sqlx::query(
        "SELECT slot, state, fencing_token, created_at, updated_at FROM local_attempts \
         ORDER BY created_at, fencing_token",
    )
    .fetch_all(&db)
    .await
    .expect("attempts");
    assert_eq!(
        attempts.len(),
        rotated + 1,
        "one attempt per rotation, plus the first credential issued once by the two replicas"
    );
    let mut previous: Option<(i64, i64, i64)> = None;
    for row in &attempts {
        let state: String = row.get("state");
        assert_eq!(state, "committed");
        let (slot, token, created, updated): (i64, i64, i64, i64) = (
            row.get("slot"),
            row.get("fencing_token"),
            row.get("created_at"),
            row.get("updated_at"),
        );
        if let Some((previous_slot, previous_token, previous_end)) = previous {
            assert!(token > previous_token, "fencing tokens grow");
            assert!(
                created >= previous_end,
                "an attempt began before the last one ended"
            );
            assert_eq!(
                slot,
                1 - previous_slot,
                "each attempt saw the previous commit"
            );
        } else {
            assert_eq!(slot, 0, "the first credential goes to slot 0");
        }
        previous = Some((slot, token, updated));
    }
    let events: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT event_id) FROM outbox")
        .fetch_one(&db)
        .await
        .expect("outbox");
    assert_eq!(events as usize, attempts.len(), "one event per attempt");
    db.close().await;

    let (active_a, creds_a) = credentials(&channel_a, PG_ROTATION).await;
    let (active_b, creds_b) = credentials(&channel_b, PG_ROTATION).await;
    assert_eq!(
        (active_a, &creds_a),
        (active_b, &creds_b),
        "both replicas read one store"
    );
    for (user, password) in &creds_a {
        assert!(pg_login(pg.port(), user, password).await, "{user} logs in");
    }

    for child in [&mut a, &mut b] {
        child.start_kill().expect("kill");
        let _ = child.wait().await;
    }
    drop(store);
}
