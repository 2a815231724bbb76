//! Local MariaDB and Redis rotation through the real binary: first create, dual-phase rotations
//! (the new credential and the previous active one log in, the one before does not), and clean
//! failures: an unreachable target (transient, FAILED after the retry budget) and a missing
//! target user (permanent), each leaving the stored credentials unchanged and still logging in,
//! with a RotationFailed outbox row.
//!
//! Needs the shared MariaDB on 127.0.0.1:3306 (root, no password) and `redis-server` on PATH.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    Backend, GetSecretRotationRequest, RotateSecretsRequest, RotationStatus, RotationType,
    SecretRotation, get_secret_rotation_request,
};
use rotator_testkit::local_server::{
    attempt_states, free_port, reason, rotator_command, stored_passwords, until_not_in_progress,
    wait_for_attempts_to_end, wait_serving,
};
use rotator_testkit::tcp_gate::TcpGate;
use rotator_testkit::{local_server, mariadb, private_redis};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::process::Child;
use tonic::transport::Channel;

/// The admin password env var every config refers to.
const ADMIN_ENV: &str = "LOCAL_ADMIN";

/// A local rotation under test: its type, id and the target's login check.
#[derive(Clone, Copy)]
enum Target {
    Mysql,
    Redis { port: u16 },
}

// === impl Target ===

impl Target {
    fn rotation_type(self) -> RotationType {
        match self {
            Self::Mysql => RotationType::MysqlCredentials,
            Self::Redis { .. } => RotationType::RedisCredentials,
        }
    }

    /// Whether `user`/`password` log in with a fresh connection.
    async fn login(self, user: &str, password: &str) -> bool {
        match self {
            Self::Mysql => mariadb::login(user, password).await,
            Self::Redis { port } => {
                let (user, password) = (user.to_owned(), password.to_owned());
                tokio::task::spawn_blocking(move || {
                    let info = redis::IntoConnectionInfo::into_connection_info(
                        redis::ConnectionAddr::Tcp("127.0.0.1".into(), port),
                    )
                    .expect("info")
                    .set_redis_settings(
                        redis::RedisConnectionInfo::default()
                            .set_username(user)
                            .set_password(password),
                    );
                    redis::Client::open(info)
                        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
                        // The connection sends AUTH; a scope without @connection may not PING.
                        .is_ok()
                })
                .await
                .expect("join")
            }
        }
    }
}

/// Writes a config with one connection (`app` on `port`) and one rotation `id`.
fn config(dir: &Path, target: Target, port: u16, admin: &str, id: &str, params: &str) -> PathBuf {
    let (app, rotation_type, database) = match target {
        Target::Mysql => ("mysql", "mysql-credentials", ""),
        Target::Redis { .. } => ("redis", "redis-credentials", ""),
    };
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "target"
app = "{app}"
host = "127.0.0.1"
port = {port}
{database}username = "{admin}"
password = "env:{ADMIN_ENV}"
tls = "disable"

[[rotations]]
id = "{id}"
name = "app-{app}"
type = "{rotation_type}"
connection = "target"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = {params}
secrets_mapping = {{ username = "APP_USER", password = "APP_PASSWORD" }}
"#
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts the binary on `config` with its store under `dir/data`.
async fn start(dir: &Path, config: &Path, admin_password: &str) -> (Child, Channel) {
    let port = free_port();
    let child = rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        config,
        &dir.join("data"),
        port,
        (ADMIN_ENV, admin_password),
    )
    .spawn()
    .expect("spawn");
    // First create runs before the server answers; an unreachable target spends its budget.
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
    (child, channel)
}

async fn stop(mut child: Child) {
    let _ = child.kill().await;
    let _ = child.wait().await;
}

async fn credentials(channel: &Channel, target: Target, id: &str) -> (u32, Vec<(String, String)>) {
    stored_passwords(channel, target.rotation_type(), id).await
}

async fn rotate(
    channel: &Channel,
    target: Target,
    id: &str,
) -> Result<SecretRotation, tonic::Status> {
    SecretRotationServiceClient::new(channel.clone())
        .rotate_secrets(RotateSecretsRequest {
            r#type: target.rotation_type() as i32,
            rotation_id: id.to_owned(),
        })
        .await
        .map(|r| r.into_inner().secret_rotation.expect("rotation"))
}

async fn get(channel: &Channel, target: Target, id: &str) -> SecretRotation {
    SecretRotationServiceClient::new(channel.clone())
        .get_secret_rotation(GetSecretRotationRequest {
            r#type: target.rotation_type() as i32,
            lookup: Some(get_secret_rotation_request::Lookup::RotationId(
                id.to_owned(),
            )),
        })
        .await
        .expect("get")
        .into_inner()
        .secret_rotation
        .expect("rotation")
}

/// Outbox subjects of `rotation_id` in the store under `data_dir`.
async fn outbox_subjects(data_dir: &Path, rotation_id: &str) -> Vec<String> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("rotator.db"))
        .read_only(true);
    let mut conn = options.connect().await.expect("open the store");
    let subjects: Vec<String> =
        sqlx::query_scalar("SELECT subject FROM outbox WHERE rotation_id = ? ORDER BY seq")
            .bind(rotation_id)
            .fetch_all(&mut conn)
            .await
            .expect("read the outbox");
    let _ = conn.close().await;
    subjects
}

/// First create, then three rotations, each checked for the dual-phase guarantee.
async fn dual_phase_rounds(channel: &Channel, target: Target, id: &str) {
    let (active, creds) = credentials(channel, target, id).await;
    assert_eq!((active, creds.len()), (0, 1), "first create issues slot 0");
    assert!(
        target.login(&creds[0].0, &creds[0].1).await,
        "slot 0 logs in"
    );
    let mut previous = creds[0].clone();
    let mut before_previous: Option<(String, String)> = None;
    for round in 0..3 {
        let rotation = rotate(channel, target, id).await.expect("rotate");
        assert_eq!(rotation.backend, Backend::Local as i32);
        assert_eq!(rotation.rotation_status, RotationStatus::Success as i32);
        let (active, creds) = credentials(channel, target, id).await;
        assert_eq!(creds.len(), 2);
        let new = creds[active as usize].clone();
        let inactive = creds[1 - active as usize].clone();
        assert_eq!(inactive, previous, "round {round}: previous kept");
        assert_ne!(new.0, previous.0, "round {round}: the other slot's user");
        assert!(
            target.login(&new.0, &new.1).await,
            "round {round}: new logs in"
        );
        assert!(
            target.login(&previous.0, &previous.1).await,
            "round {round}: previous still logs in"
        );
        if let Some((user, password)) = &before_previous {
            assert!(
                !target.login(user, password).await,
                "round {round}: the one before no longer logs in"
            );
        }
        before_previous = Some(previous);
        previous = new;
    }
}

/// After a failed rotation: status failed with a message, the stored credentials unchanged and
/// logging in, no attempt left open, a RotationFailed outbox row.
async fn assert_failed_cleanly(
    channel: &Channel,
    dir: &Path,
    target: Target,
    id: &str,
    before: &(u32, Vec<(String, String)>),
) {
    let got = get(channel, target, id).await;
    assert_eq!(got.rotation_status, RotationStatus::Failed as i32);
    assert!(got.last_rotation_message.is_some());
    let after = credentials(channel, target, id).await;
    assert_eq!(&after, before, "stored credentials unchanged");
    for (user, password) in &after.1 {
        assert!(target.login(user, password).await, "{user} still logs in");
    }
    let states = local_server::attempt_states(&dir.join("data")).await;
    assert!(
        states.iter().all(|s| s == "committed" || s == "failed"),
        "{states:?}"
    );
    assert!(states.iter().any(|s| s == "failed"), "{states:?}");
    let subjects = outbox_subjects(&dir.join("data"), id).await;
    assert!(
        subjects.last().is_some_and(|s| s.ends_with(".failed")),
        "{subjects:?}"
    );
}

/// A rotation whose target becomes unreachable (a closed port): transient failures, FAILED
/// after the retry budget; the credentials issued before still log in.
async fn unreachable_target_fails_after_budget(
    target: Target,
    port: u16,
    admin: (&str, &str),
    params: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4().to_string();
    let good = config(dir.path(), target, port, admin.0, &id, params);
    let (child, channel) = start(dir.path(), &good, admin.1).await;
    rotate(&channel, target, &id)
        .await
        .expect("a first rotation");
    let before = credentials(&channel, target, &id).await;
    assert_eq!(before.1.len(), 2);
    stop(child).await;

    let closed = free_port();
    let bad = config(dir.path(), target, closed, admin.0, &id, params);
    let (_child, channel) = start(dir.path(), &bad, admin.1).await;
    let err = rotate(&channel, target, &id)
        .await
        .expect_err("unreachable");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(!err.message().contains(admin.1));
    assert_failed_cleanly(&channel, dir.path(), target, &id, &before).await;
}

/// A rotation whose admin password became wrong (the server restarted with another one): a
/// permanent failure at once, no retries; nothing half-done, no password in the answer.
async fn wrong_admin_password_fails_at_once(
    target: Target,
    port: u16,
    admin: (&str, &str),
    params: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4().to_string();
    let path = config(dir.path(), target, port, admin.0, &id, params);
    let (child, channel) = start(dir.path(), &path, admin.1).await;
    rotate(&channel, target, &id)
        .await
        .expect("a first rotation");
    let before = credentials(&channel, target, &id).await;
    stop(child).await;

    let wrong = "not-the-admin-Pw-7";
    let (_child, channel) = start(dir.path(), &path, wrong).await;
    let err = rotate(&channel, target, &id)
        .await
        .expect_err("wrong admin password");
    assert_ne!(err.code(), tonic::Code::Unavailable, "permanent: {err:?}");
    assert!(!err.message().contains(wrong) && !err.message().contains(admin.1));
    assert_failed_cleanly(&channel, dir.path(), target, &id, &before).await;
}

/// Kill -9 with the attempt at APPLIED, then a restart while the target does not answer: the
/// server serves at once with the attempt open and pending (never FAILED, which would leave the
/// slot's stored credential dead), and once the target answers again recovery verifies and
/// commits: both stored credentials log in.
async fn a_crash_at_applied_rolls_forward_once_the_target_returns(
    target: Target,
    port: u16,
    admin: (&str, &str),
    params: &str,
) {
    let gate = TcpGate::start(port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let id = uuid::Uuid::new_v4().to_string();
    let path = config(dir.path(), target, gate.port(), admin.0, &id, params);
    let (child, channel) = start(dir.path(), &path, admin.1).await;
    rotate(&channel, target, &id)
        .await
        .expect("a first rotation");
    stop(child).await;

    let crash_port = free_port();
    let mut crashing = rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        &path,
        &data,
        crash_port,
        (ADMIN_ENV, admin.1),
    );
    let mut crashing = crashing
        .env("ROTATOR_FAILPOINT", "applied")
        .spawn()
        .expect("spawn");
    let channel = wait_serving(
        &format!("http://127.0.0.1:{crash_port}"),
        Duration::from_secs(60),
    )
    .await;
    let _ = rotate(&channel, target, &id).await;
    let status = tokio::time::timeout(Duration::from_secs(30), crashing.wait())
        .await
        .expect("the failpoint ends the process")
        .expect("wait");
    assert!(!status.success(), "the process aborted at APPLIED");

    gate.shut();
    let (_child, channel) = start(dir.path(), &path, admin.1).await;
    let states = attempt_states(&data).await;
    assert!(
        states.iter().any(|s| s == "applied"),
        "serving while the attempt waits for its target: {states:?}"
    );
    // Recovery holds the attempt while it retries; once its budget is spent the attempt stays
    // open (pending), and a call that resumes it meets the same silent target.
    let pending = until_not_in_progress(|| rotate(&channel, target, &id)).await;
    assert_eq!(reason(&pending), "ROTATION_PENDING", "{pending:?}");
    assert!(!pending.message().contains(admin.1));
    assert!(
        !attempt_states(&data).await.iter().any(|s| s == "failed"),
        "never FAILED while the target may hold the candidate"
    );

    gate.open().await;
    wait_for_attempts_to_end(&data, Duration::from_secs(120)).await;
    let (_, creds) = credentials(&channel, target, &id).await;
    assert_eq!(creds.len(), 2);
    for (user, password) in &creds {
        assert!(target.login(user, password).await, "{user} logs in");
    }
    let got = get(&channel, target, &id).await;
    assert_eq!(got.rotation_status, RotationStatus::Success as i32);
    assert!(
        attempt_states(&data).await.iter().all(|s| s == "committed"),
        "nothing failed"
    );
}

#[tokio::test]
async fn mysql_crash_at_applied_rolls_forward_once_the_target_returns() {
    let (_accounts, admin, a, b) = mysql_accounts().await;
    a_crash_at_applied_rolls_forward_once_the_target_returns(
        Target::Mysql,
        mariadb::PORT,
        (&admin, "admin-Pw-91x"),
        &mysql_params(&a, &b),
    )
    .await;
}

#[tokio::test]
async fn redis_crash_at_applied_rolls_forward_once_the_target_returns() {
    let redis = private_redis::PrivateRedis::shared();
    a_crash_at_applied_rolls_forward_once_the_target_returns(
        Target::Redis { port: redis.port() },
        redis.port(),
        (private_redis::ADMIN_USER, private_redis::ADMIN_PASSWORD),
        REDIS_PARAMS,
    )
    .await;
}

#[tokio::test]
async fn mysql_wrong_admin_password_fails_cleanly() {
    let (_accounts, admin, a, b) = mysql_accounts().await;
    wrong_admin_password_fails_at_once(
        Target::Mysql,
        mariadb::PORT,
        (&admin, "admin-Pw-91x"),
        &mysql_params(&a, &b),
    )
    .await;
}

#[tokio::test]
async fn redis_wrong_admin_password_fails_cleanly() {
    let redis = private_redis::PrivateRedis::shared();
    wrong_admin_password_fails_at_once(
        Target::Redis { port: redis.port() },
        redis.port(),
        (private_redis::ADMIN_USER, private_redis::ADMIN_PASSWORD),
        REDIS_PARAMS,
    )
    .await;
}

/// A MariaDB admin (password `admin-Pw-91x`) and two target users, dropped with the accounts.
async fn mysql_accounts() -> (mariadb::Accounts, String, String, String) {
    let mut accounts = mariadb::Accounts::default();
    let admin = mariadb::unique("adm");
    let (a, b) = (mariadb::unique("a"), mariadb::unique("b"));
    accounts.create_admin(&admin, "admin-Pw-91x").await;
    accounts.create(&a, "%", "initial-a-Pw1").await;
    accounts.create(&b, "%", "initial-b-Pw1").await;
    (accounts, admin, a, b)
}

fn mysql_params(user1: &str, user2: &str) -> String {
    format!("{{ username1 = \"{user1}\", username2 = \"{user2}\" }}")
}

const REDIS_PARAMS: &str = "{ permissionScope = \"~app:* +@read +@write\" }";

#[tokio::test]
async fn mysql_rotations_are_dual_phase() {
    let (_accounts, admin, a, b) = mysql_accounts().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4().to_string();
    let path = config(
        dir.path(),
        Target::Mysql,
        mariadb::PORT,
        &admin,
        &id,
        &mysql_params(&a, &b),
    );
    let (_child, channel) = start(dir.path(), &path, "admin-Pw-91x").await;
    assert!(
        !Target::Mysql.login(&a, "initial-a-Pw1").await,
        "first create replaced it"
    );
    dual_phase_rounds(&channel, Target::Mysql, &id).await;
}

#[tokio::test]
async fn mysql_missing_target_user_fails_cleanly() {
    let mut accounts = mariadb::Accounts::default();
    let admin = mariadb::unique("adm");
    let a = mariadb::unique("a");
    let missing = mariadb::unique("missing");
    accounts.create_admin(&admin, "admin-Pw-91x").await;
    accounts.create(&a, "%", "initial-a-Pw1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4().to_string();
    let path = config(
        dir.path(),
        Target::Mysql,
        mariadb::PORT,
        &admin,
        &id,
        &mysql_params(&a, &missing),
    );
    let (_child, channel) = start(dir.path(), &path, "admin-Pw-91x").await;
    // Slot 0 (the existing user) is issued at start; slot 1's user does not exist.
    let before = credentials(&channel, Target::Mysql, &id).await;
    assert_eq!(before.1.len(), 1);
    let err = rotate(&channel, Target::Mysql, &id)
        .await
        .expect_err("missing user");
    assert_ne!(err.code(), tonic::Code::Unavailable, "permanent: {err:?}");
    assert_failed_cleanly(&channel, dir.path(), Target::Mysql, &id, &before).await;
}

#[tokio::test]
async fn mysql_unreachable_target_fails_after_budget() {
    let (_accounts, admin, a, b) = mysql_accounts().await;
    unreachable_target_fails_after_budget(
        Target::Mysql,
        mariadb::PORT,
        (&admin, "admin-Pw-91x"),
        &mysql_params(&a, &b),
    )
    .await;
}

#[tokio::test]
async fn redis_rotations_are_dual_phase() {
    let redis = private_redis::PrivateRedis::shared();
    let target = Target::Redis { port: redis.port() };
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4().to_string();
    let path = config(
        dir.path(),
        target,
        redis.port(),
        private_redis::ADMIN_USER,
        &id,
        REDIS_PARAMS,
    );
    let (_child, channel) = start(dir.path(), &path, private_redis::ADMIN_PASSWORD).await;
    dual_phase_rounds(&channel, target, &id).await;
}

#[tokio::test]
async fn redis_unreachable_target_fails_after_budget() {
    let redis = private_redis::PrivateRedis::shared();
    let target = Target::Redis { port: redis.port() };
    unreachable_target_fails_after_budget(
        target,
        redis.port(),
        (private_redis::ADMIN_USER, private_redis::ADMIN_PASSWORD),
        REDIS_PARAMS,
    )
    .await;
}

/// The scheduler rotates a rotation whose `next_rotation_at` has passed, at start-up, without
/// any RotateSecrets call: trigger scheduled, `is_last_rotation_manual` false.
#[tokio::test]
async fn the_scheduler_rotates_a_due_rotation_without_a_call() {
    let redis = private_redis::PrivateRedis::shared();
    let target = Target::Redis { port: redis.port() };
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4().to_string();
    let path = config(
        dir.path(),
        target,
        redis.port(),
        private_redis::ADMIN_USER,
        &id,
        REDIS_PARAMS,
    );
    let (child, channel) = start(dir.path(), &path, private_redis::ADMIN_PASSWORD).await;
    let first = credentials(&channel, target, &id).await;
    assert_eq!(first.1.len(), 1);
    let next = get(&channel, target, &id)
        .await
        .next_rotation_at
        .expect("next");
    assert!(next.seconds > chrono::Utc::now().timestamp(), "not due yet");
    stop(child).await;

    // Make it due: next_rotation_at an hour ago (milliseconds since the epoch).
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("data").join("rotator.db"));
    let mut conn = options.connect().await.expect("open the store");
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).timestamp_millis();
    sqlx::query("UPDATE local_rotations SET next_rotation_at = ? WHERE rotation_id = ?")
        .bind(past)
        .bind(&id)
        .execute(&mut conn)
        .await
        .expect("set next_rotation_at");
    let _ = conn.close().await;

    let (_child, channel) = start(dir.path(), &path, private_redis::ADMIN_PASSWORD).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rotated = loop {
        let now = credentials(&channel, target, &id).await;
        if now.1.len() == 2 {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the due rotation was not rotated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rotated.0, 1, "slot 1 is active");
    assert_eq!(rotated.1[0], first.1[0], "slot 0 kept");
    assert!(target.login(&rotated.1[1].0, &rotated.1[1].1).await);
    let got = get(&channel, target, &id).await;
    assert!(!got.is_last_rotation_manual);
    assert_eq!(got.rotation_status, RotationStatus::Success as i32);
    assert!(got.next_rotation_at.expect("next").seconds > chrono::Utc::now().timestamp());
    let subjects = outbox_subjects(&dir.path().join("data"), &id).await;
    assert!(
        subjects.last().is_some_and(|s| s.ends_with(".completed")),
        "{subjects:?}"
    );
}

async fn rotate_with_key(
    channel: &Channel,
    target: Target,
    id: &str,
    key: &str,
) -> Result<SecretRotation, tonic::Status> {
    let mut request = tonic::Request::new(RotateSecretsRequest {
        r#type: target.rotation_type() as i32,
        rotation_id: id.to_owned(),
    });
    request
        .metadata_mut()
        .insert("idempotency-key", key.parse().expect("ascii key"));
    SecretRotationServiceClient::new(channel.clone())
        .rotate_secrets(request)
        .await
        .map(|r| r.into_inner().secret_rotation.expect("rotation"))
}

/// A second RotateSecrets with an idempotency key already seen answers with the first call's
/// result and does not rotate again; a new key rotates; a malformed key is refused.
#[tokio::test]
async fn an_idempotency_key_already_seen_returns_the_first_result() {
    let redis = private_redis::PrivateRedis::shared();
    let target = Target::Redis { port: redis.port() };
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4().to_string();
    let path = config(
        dir.path(),
        target,
        redis.port(),
        private_redis::ADMIN_USER,
        &id,
        REDIS_PARAMS,
    );
    let (_child, channel) = start(dir.path(), &path, private_redis::ADMIN_PASSWORD).await;

    let first = rotate_with_key(&channel, target, &id, "key-1")
        .await
        .expect("first");
    let after_first = credentials(&channel, target, &id).await;
    let again = rotate_with_key(&channel, target, &id, "key-1")
        .await
        .expect("replay");
    assert_eq!(again.active_index, first.active_index);
    // The store keeps milliseconds.
    let millis = |r: &SecretRotation| r.last_rotated_at.map(|t| (t.seconds, t.nanos / 1_000_000));
    assert_eq!(millis(&again), millis(&first));
    assert_eq!(
        credentials(&channel, target, &id).await,
        after_first,
        "no second rotation"
    );
    let states = local_server::attempt_states(&dir.path().join("data")).await;
    assert_eq!(states.len(), 2, "first create and one rotation: {states:?}");

    let other = rotate_with_key(&channel, target, &id, "key-2")
        .await
        .expect("new key");
    assert_ne!(other.active_index, first.active_index, "a new key rotates");

    let err = rotate_with_key(&channel, target, &id, "bad key!")
        .await
        .expect_err("malformed key");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}
