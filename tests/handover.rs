//! Confirmed handover through the real binary, rotating a private Redis: a rotation that names
//! consumers does not replace a credential until they all confirmed the committed version
//! (RotateSecrets refused with HANDOVER_PENDING, the previous credential still logs in),
//! confirmations are checked (unknown consumer, wrong version, no identity, wrong permission,
//! unknown rotation: each with its reason and the request id), idempotent, shown by
//! GetSecretRotation, made by gRPC or by `rotator confirm`; the last one appends
//! `handover-complete` and the rotation goes ahead. A scheduled rotation waiting for a consumer
//! is deferred, not failed, and goes ahead when its grace ends (here: shortened by a SIGHUP
//! reload) with a `handover-timed-out` event and `rotator_handover_grace_expired_total`.
//!
//! Needs `redis-server` on PATH.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    ConfirmCredentialInUseRequest, ConfirmCredentialInUseResponse, GetGeneratedCredentialsRequest,
    GetSecretRotationRequest, GetSecretRotationResponse, RotateSecretsRequest, RotationStatus,
    RotationType, generated_credential, get_secret_rotation_request,
};
use rotator_testkit::delivery_redis::{read_log, start_logged_on};
use rotator_testkit::local_server::free_port;
use rotator_testkit::private_redis::{ADMIN_PASSWORD, ADMIN_USER, PrivateRedis};
use rotator_testkit::secure::{reason_and_request_id, token_hash, with_token};
use tokio::process::Child;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

const ADMIN_ENV: &str = "REDIS_ADMIN";
/// Rotates, reads and reads credentials.
const OPS: &str = "rtr_ops_token_0123456789abcdef0123456789abcdef";
/// Reads credentials only: what an application consuming the rotation holds.
const APP: &str = "rtr_app_token_0123456789abcdef0123456789abcdef";
/// Reads rotations, not credentials.
const READER: &str = "rtr_reader_token_0123456789abcdef0123456789ab";
const TYPE: RotationType = RotationType::RedisCredentials;

/// A test's directory: config, store, log.
struct Setup {
    dir: tempfile::TempDir,
    id: String,
    config: PathBuf,
    redis_port: u16,
}

impl Setup {
    fn new(redis_port: u16, consumers: &[&str], grace_seconds: u64, auto: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let setup = Self {
            config: dir.path().join("rotator.toml"),
            dir,
            id: uuid::Uuid::new_v4().to_string(),
            redis_port,
        };
        setup.write_config(consumers, grace_seconds, auto);
        setup
    }

    fn write_config(&self, consumers: &[&str], grace_seconds: u64, auto: bool) {
        let consumers: Vec<String> = consumers.iter().map(|c| format!("{c:?}")).collect();
        let text = format!(
            r#"
[auth]
open_health = true

[[auth.identities]]
name = "ops"
token_sha256 = "{ops}"
[[auth.identities.permissions]]
actions = ["rotate", "read", "read-credentials"]
types = ["*"]
rotations = ["*"]

[[auth.identities]]
name = "app"
token_sha256 = "{app}"
[[auth.identities.permissions]]
actions = ["read-credentials"]
types = ["redis-credentials"]
rotations = ["{id}"]

[[auth.identities]]
name = "reader"
token_sha256 = "{reader}"
[[auth.identities.permissions]]
actions = ["read"]
types = ["*"]
rotations = ["*"]

[[connections]]
name = "redis"
app = "redis"
host = "127.0.0.1"
port = {port}
username = "{ADMIN_USER}"
password = "env:{ADMIN_ENV}"
tls = "disable"

[[rotations]]
id = "{id}"
name = "handover-{short}"
type = "redis-credentials"
connection = "redis"
auto_rotation = {auto}
parameters = {{ permissionScope = "~app:* +@read" }}
secrets_mapping = {{ username = "APP_USER", password = "APP_PASSWORD" }}
consumers = [{consumers}]
handover_grace_seconds = {grace_seconds}
"#,
            ops = token_hash(OPS),
            app = token_hash(APP),
            reader = token_hash(READER),
            port = self.redis_port,
            id = self.id,
            short = &self.id[..8],
            consumers = consumers.join(", "),
        );
        std::fs::write(&self.config, text).expect("config");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the binary: JSON logs appended to `rotator.log`, the admin listener on
    /// `admin_port`, the scheduler scanning every second.
    async fn start(&self, admin_port: u16) -> (Child, Channel, String) {
        let env = [
            ("ROTATOR_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")),
            ("ROTATOR_LOCAL_SCAN_INTERVAL_SECONDS", "1".to_owned()),
        ];
        let admin = (ADMIN_ENV, ADMIN_PASSWORD);
        let port = free_port();
        let (child, channel) = start_logged_on(
            port,
            env!("CARGO_BIN_EXE_rotator"),
            self.dir.path(),
            &self.config,
            admin,
            &env,
        )
        .await;
        let channel = channel.expect("rotator serves");
        (child, channel, format!("http://127.0.0.1:{port}"))
    }

    /// Everything rotator logged so far.
    fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

fn client(channel: &Channel) -> SecretRotationServiceClient<Channel> {
    SecretRotationServiceClient::new(channel.clone())
}

async fn get(channel: &Channel, id: &str) -> GetSecretRotationResponse {
    client(channel)
        .get_secret_rotation(with_token(
            GetSecretRotationRequest {
                r#type: TYPE as i32,
                lookup: Some(get_secret_rotation_request::Lookup::RotationId(
                    id.to_owned(),
                )),
            },
            Some(OPS),
        ))
        .await
        .expect("get")
        .into_inner()
}

/// Both slots' credentials and the active index.
async fn credentials(channel: &Channel, id: &str) -> (usize, Vec<(String, String)>) {
    let answer = client(channel)
        .get_generated_credentials(with_token(
            GetGeneratedCredentialsRequest {
                r#type: TYPE as i32,
                rotation_id: id.to_owned(),
            },
            Some(OPS),
        ))
        .await
        .expect("credentials")
        .into_inner();
    let pairs = answer
        .generated_credentials
        .iter()
        .map(|c| match &c.kind {
            Some(generated_credential::Kind::RedisCredentials(c)) => {
                (c.username.clone(), c.password.clone())
            }
            other => panic!("unexpected credential {other:?}"),
        })
        .collect();
    (usize::try_from(answer.active_index).expect("index"), pairs)
}

async fn rotate(channel: &Channel, id: &str) -> Result<(), tonic::Status> {
    client(channel)
        .rotate_secrets(with_token(
            RotateSecretsRequest {
                r#type: TYPE as i32,
                rotation_id: id.to_owned(),
            },
            Some(OPS),
        ))
        .await
        .map(drop)
}

async fn confirm(
    channel: &Channel,
    id: &str,
    version: u64,
    consumer: &str,
    token: Option<&str>,
) -> Result<ConfirmCredentialInUseResponse, tonic::Status> {
    let mut request = with_token(
        ConfirmCredentialInUseRequest {
            r#type: TYPE as i32,
            rotation_id: id.to_owned(),
            version,
            consumer: consumer.to_owned(),
        },
        token,
    );
    request
        .metadata_mut()
        .insert("x-request-id", "handover-test-1".parse().expect("ascii"));
    client(channel)
        .confirm_credential_in_use(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Asserts the failure's code and reason, and that it carries the request id sent.
fn refused(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    reason: &str,
) -> tonic::Status {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    let (got, request_id) = reason_and_request_id(&status);
    assert_eq!(got, reason, "{status:?}");
    assert!(!request_id.is_empty());
    status
}

fn metadata(status: &tonic::Status, key: &str) -> String {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
        .unwrap_or_else(|| panic!("no {key} in {status:?}"))
}

/// Every outbox row's subject and payload.
async fn outbox(data_dir: &Path) -> Vec<(String, String)> {
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("rotator.db"))
        .read_only(true)
        .connect()
        .await
        .expect("store");
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT subject, payload FROM outbox ORDER BY seq")
            .fetch_all(&mut conn)
            .await
            .expect("outbox");
    rows.into_iter()
        .map(|(s, p)| (s, String::from_utf8_lossy(&p).into_owned()))
        .collect()
}

/// Waits until `done` holds, polling every 50 ms; panics after a minute.
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not after a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_that_would_replace_a_credential_waits_for_every_consumer() {
    let redis = PrivateRedis::shared();
    let setup = Setup::new(redis.port(), &["billing-api", "worker"], 3600, false);
    let id = setup.id.clone();
    let (mut child, channel, url) = setup.start(free_port()).await;

    let got = get(&channel, &id).await;
    assert_eq!(got.committed_version, 1);
    let names: Vec<_> = got
        .confirmations
        .iter()
        .map(|c| c.consumer.as_str())
        .collect();
    assert_eq!(names, ["billing-api", "worker"]);
    assert!(
        got.confirmations
            .iter()
            .all(|c| c.confirmed_version == 0 && c.confirmed_at.is_none() && !c.current)
    );

    // Version 2 goes to the empty second slot: no credential is replaced, nothing waits.
    rotate(&channel, &id).await.expect("first rotation");
    let (active, creds) = credentials(&channel, &id).await;
    assert_eq!((active, creds.len()), (1, 2));
    let previous = creds[0].clone();

    // Version 3 would replace version 1, which the consumers may still use.
    let status = rotate(&channel, &id)
        .await
        .expect_err("waits for consumers");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason_and_request_id(&status).0, "HANDOVER_PENDING");
    assert_eq!(
        metadata(&status, "unconfirmed_consumers"),
        "billing-api,worker"
    );
    assert_eq!(metadata(&status, "version"), "2");
    let retry = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo until the grace ends");
    assert!(retry > Duration::ZERO);
    assert_eq!(get(&channel, &id).await.committed_version, 2);
    assert!(
        redis.connect(&previous.0, &previous.1).is_ok(),
        "the previous credential still logs in"
    );

    // Refused confirmations, each with its reason and the request id.
    let status = refused(
        confirm(&channel, &id, 2, "nobody", Some(APP)).await,
        Code::FailedPrecondition,
        "CONSUMER_NOT_NAMED",
    );
    assert_eq!(metadata(&status, "consumers"), "billing-api,worker");
    let status = refused(
        confirm(&channel, &id, 1, "worker", Some(APP)).await,
        Code::FailedPrecondition,
        "VERSION_NOT_CURRENT",
    );
    assert_eq!(metadata(&status, "committed_version"), "2");
    refused(
        confirm(&channel, &id, 0, "worker", Some(APP)).await,
        Code::InvalidArgument,
        "INVALID_VERSION",
    );
    refused(
        confirm(&channel, &id, 2, "bad name!", Some(APP)).await,
        Code::InvalidArgument,
        "INVALID_CONSUMER",
    );
    let status = refused(
        confirm(&channel, &id, 2, "worker", None).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert_eq!(reason_and_request_id(&status).1, "handover-test-1");
    refused(
        confirm(&channel, &id, 2, "worker", Some(READER)).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    refused(
        confirm(
            &channel,
            &uuid::Uuid::new_v4().to_string(),
            2,
            "worker",
            Some(OPS),
        )
        .await,
        Code::NotFound,
        "LOCAL_ROTATION_NOT_FOUND",
    );

    // One consumer confirms (twice: the same answer); the rotation still waits for the other.
    let first = confirm(&channel, &id, 2, "billing-api", Some(APP))
        .await
        .expect("confirm");
    assert_eq!(first.unconfirmed_consumers, ["worker"]);
    let again = confirm(&channel, &id, 2, "billing-api", Some(APP))
        .await
        .expect("confirm again");
    assert_eq!(again.confirmation, first.confirmation, "idempotent");
    let status = rotate(&channel, &id).await.expect_err("waits for worker");
    assert_eq!(metadata(&status, "unconfirmed_consumers"), "worker");

    // The other confirms through the CLI, as a reload hook would.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"))
        .args(["confirm", "redis-credentials", &id, "--version", "2"])
        .args(["--consumer", "worker", "--json"])
        .env("ROTATOR_SERVER", &url)
        .env("ROTATOR_TOKEN", APP)
        .output()
        .await
        .expect("rotator confirm");
    assert!(output.status.success(), "{output:?}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(answer["confirmation"]["consumer"], "worker");
    assert_eq!(answer["confirmation"]["confirmedVersion"], 2);
    assert_eq!(answer["confirmation"]["current"], true);
    assert_eq!(answer["unconfirmedConsumers"], serde_json::json!([]));
    let cli = |version: &str, json: bool| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"));
        command
            .args(["confirm", "redis-credentials", &id, "--version", version])
            .args(["--consumer", "worker"])
            .env("ROTATOR_SERVER", &url)
            .env("ROTATOR_TOKEN", APP);
        if json {
            command.arg("--json");
        }
        command.output()
    };
    let text = cli("2", false).await.expect("rotator confirm again");
    assert!(text.status.success(), "{text:?}");
    let line = String::from_utf8_lossy(&text.stdout);
    assert!(
        line.starts_with("confirmed worker uses version 2 of ")
            && line.contains("handover complete"),
        "{line}"
    );
    let wrong = cli("1", true)
        .await
        .expect("rotator confirm an old version");
    assert_eq!(wrong.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&wrong.stderr).expect("json error");
    assert_eq!(error["error"]["reason"], "VERSION_NOT_CURRENT");
    assert_eq!(error["error"]["code"], "FAILED_PRECONDITION");
    assert!(error["error"]["request_id"].is_string());

    let got = get(&channel, &id).await;
    assert!(
        got.confirmations
            .iter()
            .all(|c| c.confirmed_version == 2 && c.current && c.confirmed_at.is_some()),
        "{:?}",
        got.confirmations
    );
    let events = outbox(&setup.path("data")).await;
    let complete = events
        .iter()
        .find(|(s, _)| s == "redis-credentials.handover-complete")
        .expect("a handover-complete event");
    assert!(complete.1.contains("rotator.v1.CredentialHandoverComplete"));
    assert!(
        complete.1.contains(&id) && complete.1.contains("\"version\":\"2\""),
        "{}",
        complete.1
    );

    // Every consumer confirmed: version 3 replaces version 1.
    rotate(&channel, &id)
        .await
        .expect("rotation after the handover");
    let got = get(&channel, &id).await;
    assert_eq!(got.committed_version, 3);
    assert!(got.confirmations.iter().all(|c| !c.current));
    assert!(
        redis.connect(&previous.0, &previous.1).is_err(),
        "version 1 is replaced"
    );

    let (_, latest) = credentials(&channel, &id).await;
    let events = outbox(&setup.path("data")).await;

    let _ = child.kill().await;
    let _ = child.wait().await;
    let log = setup.log();
    for (_, password) in creds.iter().chain(&latest) {
        assert!(!log.contains(password.as_str()), "a password in the log");
        assert!(
            events.iter().all(|(_, p)| !p.contains(password.as_str())),
            "a password in an event"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_rotation_is_deferred_then_goes_ahead_when_the_grace_ends() {
    let redis = PrivateRedis::shared();
    let setup = Setup::new(redis.port(), &["worker"], 3600, true);
    let id = setup.id.clone();
    let (mut child, channel, _) = setup.start(free_port()).await;
    rotate(&channel, &id).await.expect("version 2");
    let _ = child.kill().await;
    let _ = child.wait().await;

    // Due now: next_rotation_at an hour ago (milliseconds since the epoch).
    {
        use sqlx::{ConnectOptions as _, Connection as _};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(setup.path("data").join("rotator.db"))
            .connect()
            .await
            .expect("store");
        let past = (chrono::Utc::now() - chrono::Duration::hours(1)).timestamp_millis();
        sqlx::query("UPDATE local_rotations SET next_rotation_at = $1 WHERE rotation_id = $2")
            .bind(past)
            .bind(&id)
            .execute(&mut conn)
            .await
            .expect("make it due");
        let _ = conn.close().await;
    }

    let admin_port = free_port();
    let (mut child, channel, _) = setup.start(admin_port).await;
    wait_until("a deferred scan", || async {
        setup.log().contains("scheduled rotation deferred")
    })
    .await;
    let got = get(&channel, &id).await;
    assert_eq!(got.committed_version, 2, "deferred, not rotated");
    let rotation = got.secret_rotation.expect("rotation");
    assert_eq!(
        rotation.rotation_status,
        RotationStatus::Success as i32,
        "deferred, not failed"
    );
    let subjects: Vec<String> = outbox(&setup.path("data"))
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert!(
        !subjects
            .iter()
            .any(|s| s.ends_with(".failed") || s.contains("handover")),
        "{subjects:?}"
    );
    let metrics_url = format!("http://127.0.0.1:{admin_port}/metrics");
    let expired = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("rotator_handover_grace_expired_total"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let text = reqwest::get(&metrics_url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        expired(&text),
        ["rotator_handover_grace_expired_total 0"],
        "exported at zero from start"
    );

    // A reload shortens the grace to one second: it has long ended, the rotation goes ahead.
    setup.write_config(&["worker"], 1, true);
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    wait_until("the rotation after the grace", || async {
        get(&channel, &id).await.committed_version == 3
    })
    .await;
    let events = outbox(&setup.path("data")).await;
    let timed_out: Vec<_> = events
        .iter()
        .filter(|(s, _)| s == "redis-credentials.handover-timed-out")
        .collect();
    assert_eq!(timed_out.len(), 1, "one event per version");
    let payload = &timed_out[0].1;
    assert!(
        payload.contains("rotator.v1.CredentialHandoverTimedOut"),
        "{payload}"
    );
    assert!(
        payload.contains("\"unconfirmedConsumers\":[\"worker\"]"),
        "{payload}"
    );
    assert!(
        payload.contains("\"version\":\"2\"") && payload.contains(&id),
        "{payload}"
    );
    let completed = events
        .iter()
        .filter(|(s, p)| s == "redis-credentials.completed" && p.contains("TRIGGER_SCHEDULED"))
        .count();
    assert_eq!(completed, 1, "the scheduled rotation committed");
    wait_until("the metric counted", || async {
        let text = reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        expired(&text)
            .iter()
            .any(|l| l.contains("rotator_rotation_type=\"redis-credentials\"") && l.ends_with(" 1"))
    })
    .await;
    let _ = child.kill().await;
    let _ = child.wait().await;
}

/// A manual rotation refused while the grace runs goes ahead once it ended (a readiness loop,
/// no timing assumed): the timeout event names the version, the unconfirmed consumer and the
/// request id of the call that went ahead, and the metric counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rotation_goes_ahead_once_a_short_grace_ended() {
    let redis = PrivateRedis::shared();
    let setup = Setup::new(redis.port(), &["worker"], 1, false);
    let id = setup.id.clone();
    let admin_port = free_port();
    let (mut child, channel, _) = setup.start(admin_port).await;
    rotate(&channel, &id).await.expect("version 2");

    let mut tries = 0u32;
    let went_ahead = loop {
        tries += 1;
        let request_id = format!("manual-{tries}");
        let mut request = with_token(
            RotateSecretsRequest {
                r#type: TYPE as i32,
                rotation_id: id.clone(),
            },
            Some(OPS),
        );
        request
            .metadata_mut()
            .insert("x-request-id", request_id.parse().expect("ascii"));
        match client(&channel).rotate_secrets(request).await {
            Ok(_) => break request_id,
            Err(status) => {
                assert_eq!(reason_and_request_id(&status).0, "HANDOVER_PENDING");
                assert!(tries < 1200, "still pending after a minute");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(get(&channel, &id).await.committed_version, 3);
    let events = outbox(&setup.path("data")).await;
    let timed_out: Vec<_> = events
        .iter()
        .filter(|(s, _)| s == "redis-credentials.handover-timed-out")
        .collect();
    assert_eq!(timed_out.len(), 1, "{events:?}");
    let payload = &timed_out[0].1;
    assert!(
        payload.contains(&format!("\"requestid\":\"{went_ahead}\"")),
        "{payload}"
    );
    assert!(
        payload.contains("\"unconfirmedConsumers\":[\"worker\"]"),
        "{payload}"
    );
    assert!(payload.contains("\"version\":\"2\""), "{payload}");
    let text = reqwest::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.lines()
            .any(|l| l.starts_with("rotator_handover_grace_expired_total{")
                && l.contains("rotator_rotation_type=\"redis-credentials\"")
                && l.ends_with(" 1")),
        "{text}"
    );
    let _ = child.kill().await;
    let _ = child.wait().await;
}
