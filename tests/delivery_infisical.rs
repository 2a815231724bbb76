//! Delivery to Infisical through the real binary, rotating a private Redis, against the fake
//! Infisical's secrets API (`rotator_testkit::fake_infisical`): the first version creates the
//! secrets and the next updates them (one Infisical version each, renamed keys, rotator's
//! version in the metadata, the service's identity and a separate one); a 5xx is retried by the
//! worker and then delivered; an unknown project fails the sink with a `delivery-failed` event
//! while rotations still commit; a kill -9 between a commit and its delivery delivers exactly
//! the committed version after the restart; and no value reaches a log line or an event.
//!
//! Needs `redis-server` on PATH.

use std::path::PathBuf;
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator_testkit::delivery_redis::{
    active, outbox, read_log, rotate, sink, start_logged, wait_deliveries,
};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical, PROJECT_ID};
use rotator_testkit::private_redis::{ADMIN_PASSWORD, ADMIN_USER, PrivateRedis};
use tokio::process::Child;
use tonic::transport::Channel;

const ADMIN_ENV: &str = "REDIS_ADMIN";
const INFISICAL_SECRET_ENV: &str = "FAKE_INFISICAL_CLIENT_SECRET";
const FOLDER: &str = "/app/redis";

/// A test's directory (config, store, log) and its rotation id.
struct Setup {
    dir: tempfile::TempDir,
    id: String,
    config: PathBuf,
}

impl Setup {
    /// A Redis rotation whose sinks are `sinks` (TOML inline tables), with `[infisical]`
    /// pointing at `fake`.
    fn new(redis_port: u16, fake: &FakeInfisical, sinks: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = uuid::Uuid::new_v4().to_string();
        let config = dir.path().join("rotator.toml");
        let text = format!(
            r#"
[infisical]
url = "{url}"
client_id = "{CLIENT_ID}"
client_secret = "env:{INFISICAL_SECRET_ENV}"

[[connections]]
name = "redis"
app = "redis"
host = "127.0.0.1"
port = {redis_port}
username = "{ADMIN_USER}"
password = "env:{ADMIN_ENV}"
tls = "disable"

[[rotations]]
id = "{id}"
name = "app-redis-{short}"
type = "redis-credentials"
connection = "redis"
auto_rotation = false
parameters = {{ permissionScope = "~app:* +@read" }}
secrets_mapping = {{ username = "APP_USER", password = "APP_PASSWORD" }}
sinks = [
{sinks}
]
"#,
            url = fake.base_url(),
            short = &id[..8],
            sinks = sinks.join(",\n"),
        );
        std::fs::write(&config, text).expect("config");
        Self { dir, id, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the binary (JSON logs appended to `rotator.log`), optionally with a failpoint.
    async fn start(&self, failpoint: Option<&str>) -> (Child, Option<Channel>) {
        let mut env = vec![(INFISICAL_SECRET_ENV, CLIENT_SECRET.to_owned())];
        if let Some(fp) = failpoint {
            env.push(("ROTATOR_FAILPOINT", fp.to_owned()));
        }
        let admin = (ADMIN_ENV, ADMIN_PASSWORD);
        start_logged(
            env!("CARGO_BIN_EXE_rotator"),
            self.dir.path(),
            &self.config,
            admin,
            &env,
        )
        .await
    }

    /// Everything rotator logged so far.
    fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

fn metadata<'a>(secret: &'a rotator_testkit::fake_infisical::FakeSecret, key: &str) -> &'a str {
    secret
        .metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no metadata {key} on {}", secret.key))
}

/// The default sink: the service's identity, `APP_PASSWORD` renamed.
fn main_sink() -> String {
    format!(
        r#"{{ kind = "infisical", name = "infisical", project_id = "{PROJECT_ID}", environment = "prod", secret_path = "{FOLDER}", rename = {{ APP_PASSWORD = "REDIS_PASSWORD" }} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_version_creates_the_secrets_and_the_next_updates_them() {
    let redis = PrivateRedis::shared();
    let fake = FakeInfisical::start().await;
    fake.add_folder("prod", FOLDER);
    fake.add_folder("staging", FOLDER);
    // A separate identity (here the same credentials, given again) logs in on its own.
    let own_identity = format!(
        r#"{{ kind = "infisical", name = "own-identity", project_id = "{PROJECT_ID}", environment = "staging", secret_path = "{FOLDER}/", client_id = "{CLIENT_ID}", client_secret = "env:{INFISICAL_SECRET_ENV}" }}"#
    );
    let setup = Setup::new(redis.port(), &fake, &[&main_sink(), &own_identity]);
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");
    let id = setup.id.clone();

    let mut passwords = Vec::new();
    for version in 1..=2u64 {
        if version > 1 {
            rotate(&channel, &id).await;
        }
        let state = wait_deliveries(&channel, &id, "both sinks delivered", |s| {
            s.len() == 2 && s.iter().all(|x| x.delivered_version == version)
        })
        .await;
        for s in &state {
            assert_eq!((s.kind.as_str(), s.wanted_version), ("infisical", version));
            assert!(s.last_error.is_none(), "{s:?}");
        }
        let (user, password) = active(&channel, &id).await;
        passwords.push(password.clone());
        let stored_user = fake.secret("prod", FOLDER, "APP_USER").expect("APP_USER");
        let stored_password = fake
            .secret("prod", FOLDER, "REDIS_PASSWORD")
            .expect("REDIS_PASSWORD (renamed)");
        assert_eq!(stored_user.value, user);
        assert_eq!(stored_password.value, password);
        // One Infisical version per rotator version: created, then updated.
        assert_eq!(stored_password.version, version);
        assert_eq!(
            metadata(&stored_password, "rotator-version"),
            version.to_string()
        );
        assert_eq!(metadata(&stored_password, "rotator-rotation-id"), id);
        let own = fake.secret("staging", FOLDER, "APP_PASSWORD").expect("own");
        assert_eq!(
            (own.value.as_str(), own.version),
            (password.as_str(), version)
        );
    }
    assert!(fake.secret("prod", FOLDER, "APP_PASSWORD").is_none());
    let history = fake
        .secret("prod", FOLDER, "REDIS_PASSWORD")
        .expect("secret")
        .history;
    assert_eq!(history, passwords);
    // Two sinks, two versions: four writes, and one login per identity.
    assert_eq!(fake.calls_to("PATCH", "/api/v4/secrets/batch"), 4);
    assert_eq!(fake.login_calls(), 2);

    let _ = child.kill().await;
    let _ = child.wait().await;
    // A restart finds every sink up to date and writes nothing again.
    let events = outbox(&setup.path("data")).await;
    let delivered = events
        .iter()
        .filter(|(s, _)| s == "redis-credentials.delivered")
        .count();
    assert_eq!(delivered, 4, "{events:?}");
    let log = setup.log();
    assert!(log.contains("delivered"));
    for secret in passwords.iter().chain([&CLIENT_SECRET.to_owned()]) {
        assert!(!log.contains(secret.as_str()), "a secret in the log");
        assert!(
            events.iter().all(|(_, p)| !p.contains(secret.as_str())),
            "a secret in an event"
        );
    }
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_retried_by_the_worker_and_then_delivered() {
    let redis = PrivateRedis::shared();
    let fake = FakeInfisical::start().await;
    fake.add_folder("prod", FOLDER);
    fake.fail_next_secret_writes(1);
    let setup = Setup::new(redis.port(), &fake, &[&main_sink()]);
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");

    let state = wait_deliveries(&channel, &setup.id, "delivered after the 503", |s| {
        sink(s, "infisical").delivered_version == 1
    })
    .await;
    let delivered = sink(&state, "infisical");
    assert_eq!(delivered.failures, 0, "a success clears the failures");
    assert_eq!(fake.calls_to("PATCH", "/api/v4/secrets/batch"), 2);
    let (_, password) = active(&channel, &setup.id).await;
    let stored = fake
        .secret("prod", FOLDER, "REDIS_PASSWORD")
        .expect("secret");
    assert_eq!(
        (stored.value.as_str(), stored.version),
        (password.as_str(), 1)
    );

    let _ = child.kill().await;
    let _ = child.wait().await;
    let events = outbox(&setup.path("data")).await;
    let failed: Vec<&String> = events
        .iter()
        .filter(|(s, _)| s == "redis-credentials.delivery-failed")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert!(
        failed[0].contains("HTTP 503 ServiceUnavailable") && failed[0].contains("reqId req-"),
        "{}",
        failed[0]
    );
    assert!(!failed[0].contains(&password) && !setup.log().contains(&password));
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_project_fails_the_sink_and_never_the_rotation() {
    let redis = PrivateRedis::shared();
    let fake = FakeInfisical::start().await;
    let bad = r#"{ kind = "infisical", name = "bad", project_id = "00000000-0000-4000-8000-000000000000", environment = "prod" }"#;
    let setup = Setup::new(redis.port(), &fake, &[bad]);
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");

    let state = wait_deliveries(&channel, &setup.id, "the bad sink failed", |s| {
        sink(s, "bad").failures >= 1
    })
    .await;
    let bad = sink(&state, "bad");
    assert_eq!((bad.wanted_version, bad.delivered_version), (1, 0));
    let error = bad.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("HTTP 404 NotFound")
            && error.contains("Project with ID '00000000-0000-4000-8000-000000000000' not found")
            && error.contains("(reqId req-"),
        "{error}"
    );
    // The rotation commits regardless.
    let (_, first) = active(&channel, &setup.id).await;
    rotate(&channel, &setup.id).await;
    let (_, second) = active(&channel, &setup.id).await;
    assert_ne!(first, second);
    let state = wait_deliveries(&channel, &setup.id, "version 2 owed", |s| {
        sink(s, "bad").wanted_version == 2
    })
    .await;
    assert_eq!(sink(&state, "bad").delivered_version, 0);
    assert!(fake.secrets().is_empty());

    let _ = child.kill().await;
    let _ = child.wait().await;
    let events = outbox(&setup.path("data")).await;
    assert!(
        events
            .iter()
            .any(|(s, p)| s == "redis-credentials.delivery-failed"
                && p.contains("rotator.v1.CredentialDeliveryFailed")
                && p.contains("Project with ID")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(s, _)| s == "redis-credentials.completed"),
        "{events:?}"
    );
    let log = setup.log();
    for secret in [&first, &second] {
        assert!(!log.contains(secret.as_str()));
        assert!(events.iter().all(|(_, p)| !p.contains(secret.as_str())));
    }
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_commit_and_delivery_delivers_the_committed_version_after_restart() {
    let redis = PrivateRedis::shared();
    let fake = FakeInfisical::start().await;
    fake.add_folder("prod", FOLDER);
    let setup = Setup::new(redis.port(), &fake, &[&main_sink()]);

    // Version 1 (first create) delivered by a clean run.
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");
    wait_deliveries(&channel, &setup.id, "version 1", |s| {
        sink(s, "infisical").delivered_version == 1
    })
    .await;
    let (_, first) = active(&channel, &setup.id).await;
    let _ = child.kill().await;
    let _ = child.wait().await;

    // Version 2 commits, then the process aborts before the worker hears of it.
    let (mut child, channel) = setup.start(Some("committed")).await;
    let channel = channel.expect("serving");
    let _ = SecretRotationServiceClient::new(channel)
        .rotate_secrets(RotateSecretsRequest {
            r#type: RotationType::RedisCredentials as i32,
            rotation_id: setup.id.clone(),
        })
        .await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the failpoint ends the process")
        .expect("wait");
    assert!(!status.success(), "aborted at the failpoint");
    let stored = fake
        .secret("prod", FOLDER, "REDIS_PASSWORD")
        .expect("secret");
    assert_eq!(
        (stored.value.as_str(), stored.version),
        (first.as_str(), 1),
        "the crashed process did not deliver version 2"
    );

    // The restart owes version 2 and delivers exactly it, once.
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");
    let state = wait_deliveries(&channel, &setup.id, "version 2 after restart", |s| {
        sink(s, "infisical").delivered_version == 2
    })
    .await;
    assert_eq!(sink(&state, "infisical").wanted_version, 2);
    let (user, second) = active(&channel, &setup.id).await;
    assert_ne!(first, second);
    let stored = fake
        .secret("prod", FOLDER, "REDIS_PASSWORD")
        .expect("secret");
    assert_eq!(stored.history, [first.clone(), second.clone()]);
    assert_eq!(metadata(&stored, "rotator-version"), "2");
    let stored_user = fake.secret("prod", FOLDER, "APP_USER").expect("user");
    assert_eq!(
        (stored_user.value.as_str(), stored_user.version),
        (user.as_str(), 2)
    );
    let _ = child.kill().await;
    let _ = child.wait().await;
    let log = setup.log();
    assert!(!log.contains(&first) && !log.contains(&second));
    fake.shutdown().await;
}

#[test]
fn an_infisical_sink_needs_the_infisical_section_and_valid_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "redis"
app = "redis"
host = "127.0.0.1"
username = "admin"
password = "env:{ADMIN_ENV}"

[[rotations]]
id = "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10"
name = "app-redis"
type = "redis-credentials"
connection = "redis"
parameters = {{ permissionScope = "~app:* +@read" }}
secrets_mapping = {{ username = "APP_USER", password = "APP_PASSWORD" }}

[[rotations.sinks]]
kind = "infisical"
project_id = "{PROJECT_ID}"
environment = "prod"

[[rotations.sinks]]
kind = "infisical"
name = "broken"
environment = "prod nope"
secret_path = "relative"
rename = {{ NOPE = "X", APP_PASSWORD = "APP_USER" }}
client_id = "id"
client_secret = "a-literal-secret-value"
"#
    );
    std::fs::write(&path, text).expect("config");
    let env: rotator::config::Env = [
        (ADMIN_ENV.to_owned(), "pw".to_owned()),
        (
            "ROTATOR_ENCRYPTION_KEY".to_owned(),
            rotator_testkit::local_server::KEY.to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    let error = rotator::config::Config::load(Some(&path), &env).expect_err("refused");
    let keys: Vec<&str> = error.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "rotations[0].sinks[1].project_id",
            "rotations[0].sinks[1].environment",
            "rotations[0].sinks[1].secret_path",
            "rotations[0].sinks[1].rename.NOPE",
            "rotations[0].sinks[1].rename",
            "rotations[0].sinks[1].client_secret",
        ],
        "{error}"
    );
    assert!(!error.to_string().contains("a-literal-secret-value"));

    // Without the broken sink, the only problem is the missing [infisical].
    let text = std::fs::read_to_string(&path).expect("config");
    let valid = &text[..text
        .find("\n[[rotations.sinks]]\nkind = \"infisical\"\nname")
        .expect("cut")];
    std::fs::write(&path, valid).expect("config");
    let error = rotator::config::Config::load(Some(&path), &env).expect_err("refused");
    let keys: Vec<&str> = error.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["rotations[0].sinks[0].kind"], "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_replaced_and_a_rotated_key_is_refused() {
    let redis = PrivateRedis::shared();
    let fake = FakeInfisical::start().await;
    fake.add_folder("prod", FOLDER);
    // Another folder whose APP_USER an Infisical secret rotation manages.
    fake.add_rotated_secret("dev", "/managed", "APP_USER", "managed-by-infisical");
    let managed = format!(
        r#"{{ kind = "infisical", name = "managed", project_id = "{PROJECT_ID}", environment = "dev", secret_path = "/managed" }}"#
    );
    let setup = Setup::new(redis.port(), &fake, &[&main_sink(), &managed]);
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");
    let state = wait_deliveries(&channel, &setup.id, "version 1, managed refused", |s| {
        sink(s, "infisical").delivered_version == 1 && sink(s, "managed").failures >= 1
    })
    .await;
    let error = sink(&state, "managed")
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("APP_USER is managed by an Infisical secret rotation"),
        "{error}"
    );
    let untouched = fake.secret("dev", "/managed", "APP_USER").expect("managed");
    assert_eq!(
        (untouched.value.as_str(), untouched.version),
        ("managed-by-infisical", 1)
    );

    // The token Infisical issued stops working: the sink logs in again and delivers.
    fake.expire_all_tokens();
    rotate(&channel, &setup.id).await;
    wait_deliveries(&channel, &setup.id, "version 2 with a new token", |s| {
        sink(s, "infisical").delivered_version == 2
    })
    .await;
    let (_, password) = active(&channel, &setup.id).await;
    let stored = fake
        .secret("prod", FOLDER, "REDIS_PASSWORD")
        .expect("secret");
    assert_eq!(
        (stored.value.as_str(), stored.version),
        (password.as_str(), 2)
    );
    assert_eq!(fake.login_calls(), 2);
    let _ = child.kill().await;
    let _ = child.wait().await;
    assert!(!setup.log().contains(&password));
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_policy_holds_the_version_until_approved_without_new_requests() {
    let redis = PrivateRedis::shared();
    let fake = FakeInfisical::start().await;
    fake.require_approval("prod", FOLDER);
    let setup = Setup::new(redis.port(), &fake, &[&main_sink()]);
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");

    // Retries (the second failure) read the folder again but file no second request.
    let state = wait_deliveries(&channel, &setup.id, "awaiting approval", |s| {
        sink(s, "infisical").failures >= 2
    })
    .await;
    let error = sink(&state, "infisical")
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("holds the write as approval request"),
        "{error}"
    );
    assert_eq!(fake.pending_approvals(), 1);
    assert_eq!(fake.calls_to("PATCH", "/api/v4/secrets/batch"), 1);
    assert!(fake.secrets().is_empty());

    // Once approved and merged, the next try finds version 1 held: delivered, nothing rewritten.
    fake.approve_all();
    wait_deliveries(&channel, &setup.id, "delivered after approval", |s| {
        sink(s, "infisical").delivered_version == 1
    })
    .await;
    let (_, password) = active(&channel, &setup.id).await;
    let stored = fake
        .secret("prod", FOLDER, "REDIS_PASSWORD")
        .expect("merged");
    assert_eq!(
        (stored.value.as_str(), stored.version),
        (password.as_str(), 1)
    );
    assert_eq!(fake.calls_to("PATCH", "/api/v4/secrets/batch"), 1);
    let _ = child.kill().await;
    let _ = child.wait().await;
    fake.shutdown().await;
}
