//! Scheduled batches, through the real binary on a private Redis: when many rotations fall due
//! at once the scheduler rotates them in batches (one PREPARE and one COMMIT transaction per
//! batch). Each due rotation commits exactly once, with one RotationCompleted event, its new
//! credential logs in and the other slot's still does; and the process killed (abort, as
//! kill -9) right after a batch's PREPARE or COMMIT is durable leaves nothing lost or doubled
//! once it is restarted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::proto::RotationType;
use rotator_testkit::local_server::{free_port, rotator_command, stored_passwords, wait_serving};
use rotator_testkit::private_redis::{
    ADMIN_PASSWORD, PrivateRedis, many_rotation_id, many_rotations_toml,
};
use sqlx::{ConnectOptions as _, Connection as _};
use tonic::transport::Channel;

/// Rotations due at once: more than two batches of 64, the last one partial.
const ROTATIONS: usize = 150;

/// A store with [`ROTATIONS`] Redis rotations, each with its first credential issued.
struct Issued {
    _dir: tempfile::TempDir,
    config: PathBuf,
    data_dir: PathBuf,
}

fn command(issued: &Issued, port: u16) -> tokio::process::Command {
    rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        &issued.config,
        &issued.data_dir,
        port,
        ("REDIS_ADMIN", ADMIN_PASSWORD),
    )
}

async fn serve(issued: &Issued) -> (tokio::process::Child, Channel) {
    let port = free_port();
    let child = command(issued, port).spawn().expect("spawn rotator");
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
    (child, channel)
}

async fn stop(mut child: tokio::process::Child) {
    let _ = child.kill().await;
    let _ = child.wait().await;
}

/// Starts rotator once on a new store (start-up issues every first credential), then stops it.
async fn issued(redis: &PrivateRedis, name: &str) -> Issued {
    let dir = tempfile::tempdir().expect("tempdir");
    // Users of their own per test: the rotations' ids carry the test's name.
    let config = dir.path().join("rotator.toml");
    let text = many_rotations_toml(redis.port(), 16, ROTATIONS).replace(
        "00000000-0000-4000-8000-",
        &format!("{name}-0000-4000-8000-"),
    );
    std::fs::write(&config, text).expect("write config");
    let issued = Issued {
        config,
        data_dir: dir.path().join("data"),
        _dir: dir,
    };
    let (child, _) = serve(&issued).await;
    stop(child).await;
    issued
}

fn rotation_id(name: &str, i: usize) -> String {
    many_rotation_id(i).replace(
        "00000000-0000-4000-8000-",
        &format!("{name}-0000-4000-8000-"),
    )
}

async fn store(data_dir: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("rotator.db"))
        .connect()
        .await
        .expect("open the store")
}

/// Makes every rotation due (its next rotation an hour ago); returns the moment, in
/// milliseconds since the epoch, after which its attempts count.
async fn make_all_due(data_dir: &Path) -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    let mut conn = store(data_dir).await;
    sqlx::query("UPDATE local_rotations SET next_rotation_at = ?")
        .bind(now - 3_600_000)
        .execute(&mut conn)
        .await
        .expect("make due");
    let _ = conn.close().await;
    now
}

/// Per rotation, the states of its attempts created since `since` (milliseconds).
async fn attempts_since(data_dir: &Path, since: i64) -> HashMap<String, Vec<String>> {
    let mut conn = store(data_dir).await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT rotation_id, state FROM local_attempts WHERE created_at >= ? ORDER BY created_at",
    )
    .bind(since)
    .fetch_all(&mut conn)
    .await
    .expect("read attempts");
    let _ = conn.close().await;
    let mut by_rotation: HashMap<String, Vec<String>> = HashMap::new();
    for (rotation_id, state) in rows {
        by_rotation.entry(rotation_id).or_default().push(state);
    }
    by_rotation
}

/// Per rotation, the subjects of its outbox events created since `since` (milliseconds).
async fn events_since(data_dir: &Path, since: i64) -> HashMap<String, Vec<String>> {
    let mut conn = store(data_dir).await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT rotation_id, subject FROM outbox WHERE created_at >= ? ORDER BY seq",
    )
    .bind(since * 1000)
    .fetch_all(&mut conn)
    .await
    .expect("read outbox");
    let _ = conn.close().await;
    let mut by_rotation: HashMap<String, Vec<String>> = HashMap::new();
    for (rotation_id, subject) in rows {
        by_rotation.entry(rotation_id).or_default().push(subject);
    }
    by_rotation
}

/// Waits until each of the [`ROTATIONS`] has a committed attempt since `since`, and no attempt
/// is open.
async fn wait_all_committed(data_dir: &Path, since: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let attempts = attempts_since(data_dir, since).await;
        let committed = attempts
            .values()
            .filter(|states| states.iter().any(|s| s == "committed"))
            .count();
        let open = attempts
            .values()
            .flatten()
            .filter(|s| *s != "committed" && *s != "failed")
            .count();
        if committed == ROTATIONS && open == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{committed} of {ROTATIONS} committed, {open} attempts open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each rotation: exactly one attempt since `since`, committed; exactly one RotationCompleted
/// event and no other; slot 1 active, and both slots' users log in with the stored passwords.
async fn assert_each_rotated_once(
    redis: &PrivateRedis,
    issued: &Issued,
    channel: &Channel,
    name: &str,
    since: i64,
) {
    let attempts = attempts_since(&issued.data_dir, since).await;
    let events = events_since(&issued.data_dir, since).await;
    for i in 0..ROTATIONS {
        let id = rotation_id(name, i);
        assert_eq!(
            attempts.get(&id).map(Vec::as_slice),
            Some(&["committed".to_owned()][..]),
            "{id}: its attempts"
        );
        let subjects = events.get(&id).cloned().unwrap_or_default();
        assert_eq!(subjects.len(), 1, "{id}: one event, got {subjects:?}");
        assert!(subjects[0].ends_with(".completed"), "{subjects:?}");
        let (active, creds) = stored_passwords(channel, RotationType::RedisCredentials, &id).await;
        assert_eq!(active, 1, "{id}: slot 1 is active");
        assert_eq!(creds.len(), 2, "{id}: both slots stored");
        for (user, password) in &creds {
            assert!(
                redis.connect(user, password).is_ok(),
                "{id}: {user} does not log in with its stored password"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_rotations_commit_in_batches_once_each() {
    use tokio::io::AsyncBufReadExt as _;
    let redis = PrivateRedis::shared();
    let name = "0000b001";
    let issued = issued(&redis, name).await;
    let since = make_all_due(&issued.data_dir).await;
    let port = free_port();
    let mut child = command(&issued, port)
        .env("ROTATOR_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rotator");
    // Log lines go to stderr.
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let batches = tokio::spawn(async move {
        let mut committed = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let line: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if line["message"] == "scheduled batch committed" {
                committed.push(line["committed"].as_u64().unwrap_or(0));
            }
        }
        committed
    });
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
    wait_all_committed(&issued.data_dir, since).await;
    assert_each_rotated_once(&redis, &issued, &channel, name, since).await;
    stop(child).await;
    let batches = batches.await.expect("log reader");
    assert_eq!(
        batches.iter().sum::<u64>(),
        ROTATIONS as u64,
        "every rotation committed in a batch: {batches:?}"
    );
    assert!(batches.len() >= ROTATIONS.div_ceil(64), "{batches:?}");
}

/// Killed right after a batch's PREPARE (its candidates sealed, the targets maybe changed, no
/// credential stored) or right after its COMMIT: the restart finishes every rotation once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_a_batch_boundary_loses_and_doubles_nothing() {
    let redis = PrivateRedis::shared();
    for (boundary, name) in [("prepared", "0000b002"), ("committed", "0000b003")] {
        let issued = issued(&redis, name).await;
        let since = make_all_due(&issued.data_dir).await;
        let mut crashing = command(&issued, free_port())
            .env("ROTATOR_FAILPOINT", boundary)
            .spawn()
            .expect("spawn rotator");
        let status = tokio::time::timeout(Duration::from_secs(60), crashing.wait())
            .await
            .expect("the failpoint ended the process")
            .expect("wait");
        assert!(!status.success(), "{boundary}: aborted, got {status}");
        let left = attempts_since(&issued.data_dir, since).await;
        assert!(!left.is_empty(), "{boundary}: a batch stored its attempts");
        let (child, channel) = serve(&issued).await;
        wait_all_committed(&issued.data_dir, since).await;
        assert_each_rotated_once(&redis, &issued, &channel, name, since).await;
        stop(child).await;
    }
}
