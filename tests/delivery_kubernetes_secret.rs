//! The `kubernetes-secret` sink against the fake API server (testkit `fake_kubernetes`, built
//! from the Kubernetes API reference; a real API server cannot run here).
//!
//! Through the real binary, rotating a private Redis: each committed version becomes the
//! Secret's data (one key per mapped name, and a rendered one) and restarts the Deployment; a
//! wrong token fails the delivery (status, event) but not the rotation; a kill -9 between a
//! commit and its delivery delivers exactly the committed version after the restart, with
//! in-cluster auth; no value reaches a log line or an event.
//!
//! As a sink: a 409 Conflict is read again and retried (bounded), a Secret holding a newer
//! version is left alone, a repeated version starts no second rollout, kubeconfig client
//! certificates and in-cluster tokens (re-read after the kubelet rotates them) authenticate,
//! and errors carry the status and reason, never a value.
//!
//! Needs `redis-server` on PATH.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::config::sinks::{KubernetesAuth, KubernetesData, KubernetesSecretSink};
use rotator::delivery::kubernetes::{
    RESTARTED_AT_ANNOTATION, ROTATION_ANNOTATION, VERSION_ANNOTATION,
};
use rotator::delivery::{Payload, Sink as _, SinkError};
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator::secret::SecretString;
use rotator_testkit::delivery_redis::{
    active, outbox, read_log, rotate, sink, start_logged, wait_deliveries,
};
use rotator_testkit::fake_kubernetes::FakeKubernetes;
use rotator_testkit::local_server::free_port;
use rotator_testkit::private_redis::{ADMIN_PASSWORD, ADMIN_USER, PrivateRedis};
use serde_json::json;
use tokio::process::Child;
use tonic::transport::Channel;

const ADMIN_ENV: &str = "REDIS_ADMIN";
const NS: &str = "app";
const ROTATION: &str = "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10";

// --- through the binary ---

/// A test's directory: config, store, kubeconfig, service account, the log.
struct Setup {
    dir: tempfile::TempDir,
    id: String,
    config: PathBuf,
}

impl Setup {
    /// A Redis rotation whose sinks are `sinks` (TOML inline tables, `{DIR}` replaced).
    fn new(redis_port: u16, sinks: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = uuid::Uuid::new_v4().to_string();
        let d = dir.path().display().to_string();
        let sinks: Vec<String> = sinks.iter().map(|s| s.replace("{DIR}", &d)).collect();
        let config = dir.path().join("rotator.toml");
        let text = format!(
            r#"
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
            short = &id[..8],
            sinks = sinks.join(",\n"),
        );
        std::fs::write(&config, text).expect("config");
        Self { dir, id, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the binary (JSON logs appended to `rotator.log`) with extra environment.
    async fn start(&self, env: &[(&str, String)]) -> (Child, Option<Channel>) {
        let admin = (ADMIN_ENV, ADMIN_PASSWORD);
        start_logged(
            env!("CARGO_BIN_EXE_rotator"),
            self.dir.path(),
            &self.config,
            admin,
            env,
        )
        .await
    }

    /// Everything rotator logged so far.
    fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_version_reaches_the_secret_and_restarts_the_deployment() {
    let redis = PrivateRedis::shared();
    let fake = FakeKubernetes::start().await;
    fake.create_deployment(NS, "app");
    let setup = Setup::new(
        redis.port(),
        &[
            r#"{ kind = "kubernetes-secret", namespace = "app", secret_name = "app-redis", kubeconfig = "{DIR}/kubeconfig", restart_deployments = ["app"] }"#,
            r#"{ kind = "kubernetes-secret", name = "url", namespace = "app", secret_name = "app-redis-url", kubeconfig = "{DIR}/kubeconfig", key = "url", template = "redis://{{APP_USER}}:{{APP_PASSWORD}}@cache:6379/0" }"#,
        ],
    );
    std::fs::write(
        setup.path("kubeconfig"),
        fake.kubeconfig_with_token(&fake.token()),
    )
    .expect("kubeconfig");
    let (mut child, channel) = setup.start(&[]).await;
    let channel = channel.expect("serving");
    let id = setup.id.clone();
    let names = ["kubernetes-secret:app/app-redis", "url"];
    let mut passwords = Vec::new();
    let mut generation = 1;
    for version in 1..=2u64 {
        if version > 1 {
            rotate(&channel, &id).await;
        }
        let state = wait_deliveries(&channel, &id, "both secrets delivered", |s| {
            names.iter().all(|n| {
                s.iter()
                    .any(|x| x.sink == *n && x.delivered_version == version)
            })
        })
        .await;
        assert_eq!(sink(&state, names[0]).kind, "kubernetes-secret");
        let (user, password) = active(&channel, &id).await;
        passwords.push(password.clone());
        let data = fake.secret_data(NS, "app-redis");
        assert_eq!(data.get("APP_USER"), Some(&user));
        assert_eq!(data.get("APP_PASSWORD"), Some(&password));
        let secret = fake.secret(NS, "app-redis").expect("secret");
        let annotations = &secret["metadata"]["annotations"];
        assert_eq!(annotations[VERSION_ANNOTATION], version.to_string());
        assert_eq!(annotations[ROTATION_ANNOTATION], id.as_str());
        assert_eq!(secret["type"], "Opaque");
        assert_eq!(
            fake.secret_data(NS, "app-redis-url").get("url"),
            Some(&format!("redis://{user}:{password}@cache:6379/0"))
        );
        let deployment = fake.deployment(NS, "app").expect("deployment");
        let template = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(template[VERSION_ANNOTATION], version.to_string());
        assert!(
            template[RESTARTED_AT_ANNOTATION].is_string(),
            "{deployment}"
        );
        generation += 1;
        assert_eq!(
            deployment["metadata"]["generation"], generation,
            "one rollout per version"
        );
    }

    let events = outbox(&setup.path("data")).await;
    assert!(
        events
            .iter()
            .any(|(s, p)| s == "redis-credentials.delivered" && p.contains("kubernetes-secret")),
        "{events:?}"
    );
    let _ = child.kill().await;
    let _ = child.wait().await;
    let log = setup.log();
    assert!(log.contains("delivered"), "the log shows deliveries");
    for secret in &passwords {
        assert!(!log.contains(secret.as_str()), "a password in the log");
        assert!(
            events.iter().all(|(_, p)| !p.contains(secret.as_str())),
            "a password in an event"
        );
    }
    assert!(!log.contains(&fake.token()), "the API token in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_the_delivery_but_not_the_rotation() {
    let redis = PrivateRedis::shared();
    let fake = FakeKubernetes::start().await;
    let setup = Setup::new(
        redis.port(),
        &[
            r#"{ kind = "kubernetes-secret", namespace = "app", secret_name = "app-redis", kubeconfig = "{DIR}/kubeconfig" }"#,
        ],
    );
    std::fs::write(
        setup.path("kubeconfig"),
        fake.kubeconfig_with_token("eyJwrong-token-not-issued"),
    )
    .expect("kubeconfig");
    let (mut child, channel) = setup.start(&[]).await;
    let channel = channel.expect("serving");
    let name = "kubernetes-secret:app/app-redis";
    let state = wait_deliveries(&channel, &setup.id, "the delivery failed", |s| {
        sink(s, name).failures >= 1
    })
    .await;
    let failed = sink(&state, name);
    assert_eq!(failed.delivered_version, 0);
    let error = failed.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("HTTP 401 Unauthorized"), "{error}");
    assert!(failed.next_try_at.is_some());
    assert!(fake.secret(NS, "app-redis").is_none());

    // The rotation itself goes on.
    let (_, first) = active(&channel, &setup.id).await;
    rotate(&channel, &setup.id).await;
    let (_, second) = active(&channel, &setup.id).await;
    assert_ne!(first, second);

    let events = outbox(&setup.path("data")).await;
    let failures: Vec<&(String, String)> = events
        .iter()
        .filter(|(s, _)| s == "redis-credentials.delivery-failed")
        .collect();
    assert!(!failures.is_empty(), "{events:?}");
    assert!(failures.iter().any(|(_, p)| p.contains("401")));
    let _ = child.kill().await;
    let _ = child.wait().await;
    let log = setup.log();
    for secret in [&first, &second] {
        assert!(!log.contains(secret.as_str()), "a password in the log");
        assert!(events.iter().all(|(_, p)| !p.contains(secret.as_str())));
    }
    assert!(
        !log.contains("eyJwrong-token-not-issued"),
        "the token in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_commit_and_delivery_delivers_the_committed_version_after_restart() {
    let redis = PrivateRedis::shared();
    let fake = FakeKubernetes::start().await;
    let setup = Setup::new(
        redis.port(),
        &[
            r#"{ kind = "kubernetes-secret", namespace = "app", secret_name = "app-redis", service_account_dir = "{DIR}/sa" }"#,
        ],
    );
    // In-cluster auth: the service-account files where the setting points, the API server
    // from the variables every pod has.
    std::fs::create_dir(setup.path("sa")).expect("sa dir");
    std::fs::write(setup.path("sa/token"), fake.token()).expect("token");
    std::fs::write(setup.path("sa/ca.crt"), fake.ca_pem()).expect("ca");
    let env = [
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
        ("KUBERNETES_SERVICE_PORT", fake.port().to_string()),
    ];
    let name = "kubernetes-secret:app/app-redis";

    let (mut child, channel) = setup.start(&env).await;
    let channel = channel.expect("serving");
    wait_deliveries(&channel, &setup.id, "version 1", |s| {
        sink(s, name).delivered_version == 1
    })
    .await;
    let (_, first) = active(&channel, &setup.id).await;
    let _ = child.kill().await;
    let _ = child.wait().await;

    // Version 2 commits, then the process aborts before the worker hears of it.
    let mut crash_env = env.to_vec();
    crash_env.push(("ROTATOR_FAILPOINT", "committed".to_owned()));
    let (mut child, channel) = setup.start(&crash_env).await;
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
    assert_eq!(
        fake.secret_data(NS, "app-redis").get("APP_PASSWORD"),
        Some(&first),
        "the crashed process did not deliver version 2"
    );

    let (mut child, channel) = setup.start(&env).await;
    let channel = channel.expect("serving");
    let state = wait_deliveries(&channel, &setup.id, "version 2 after restart", |s| {
        sink(s, name).delivered_version == 2
    })
    .await;
    assert_eq!(sink(&state, name).wanted_version, 2);
    let (user, second) = active(&channel, &setup.id).await;
    assert_ne!(first, second);
    let data = fake.secret_data(NS, "app-redis");
    assert_eq!(data.get("APP_PASSWORD"), Some(&second));
    assert_eq!(data.get("APP_USER"), Some(&user));
    let secret = fake.secret(NS, "app-redis").expect("secret");
    assert_eq!(secret["metadata"]["annotations"][VERSION_ANNOTATION], "2");
    let _ = child.kill().await;
    let _ = child.wait().await;
    let log = setup.log();
    assert!(!log.contains(&first) && !log.contains(&second));
}

// --- the sink alone ---

fn kubeconfig_sink(dir: &Path, kubeconfig: &str, restart: &[&str]) -> KubernetesSecretSink {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig).expect("kubeconfig");
    KubernetesSecretSink {
        namespace: NS.to_owned(),
        secret_name: "db".to_owned(),
        data: KubernetesData::Keys(
            [
                ("DB_PASSWORD".to_owned(), "password".to_owned()),
                ("DB_USER".to_owned(), "username".to_owned()),
            ]
            .into(),
        ),
        restart_deployments: restart.iter().map(|s| (*s).to_owned()).collect(),
        auth: KubernetesAuth::Kubeconfig {
            path,
            context: None,
        },
    }
}

fn values(password: &str) -> Vec<(String, SecretString)> {
    vec![
        ("DB_PASSWORD".to_owned(), SecretString::new(password)),
        ("DB_USER".to_owned(), SecretString::new("app_b")),
    ]
}

async fn deliver(
    sink: &KubernetesSecretSink,
    version: u64,
    password: &str,
) -> Result<(), SinkError> {
    let values = values(password);
    sink.deliver(&Payload {
        rotation_id: ROTATION,
        version,
        values: &values,
    })
    .await
}

fn count(fake: &FakeKubernetes, request: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.as_str() == request)
        .count()
}

#[tokio::test]
async fn a_conflict_is_read_again_and_retried_keeping_other_writers_data() {
    let fake = FakeKubernetes::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let sink = kubeconfig_sink(dir.path(), &fake.kubeconfig_with_token(&fake.token()), &[]);
    fake.put_secret(
        NS,
        "db",
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": { "name": "db", "labels": { "team": "payments" } },
            "data": { "ca.crt": "Q0E=" },
        }),
    );
    fake.inject_conflicts(NS, "db", 2);
    deliver(&sink, 1, "first-Pw-1")
        .await
        .expect("delivered after conflicts");
    assert_eq!(count(&fake, "PUT /api/v1/namespaces/app/secrets/db 409"), 2);
    assert_eq!(count(&fake, "PUT /api/v1/namespaces/app/secrets/db 200"), 1);
    let data = fake.secret_data(NS, "db");
    assert_eq!(data.get("password").map(String::as_str), Some("first-Pw-1"));
    assert_eq!(data.get("username").map(String::as_str), Some("app_b"));
    assert_eq!(
        data.get("ca.crt").map(String::as_str),
        Some("CA"),
        "other keys kept"
    );
    let secret = fake.secret(NS, "db").expect("secret");
    assert_eq!(secret["metadata"]["labels"]["team"], "payments");
    assert!(secret["metadata"]["annotations"]["example.com/concurrent-writer"].is_string());

    // A writer that never stops: the delivery gives up (and the worker retries it later).
    fake.inject_conflicts(NS, "db", 100);
    let error = deliver(&sink, 2, "second-Pw-2").await.expect_err("gave up");
    let text = error.to_string();
    assert!(text.contains("409 Conflict"), "{text}");
    assert!(!text.contains("second-Pw-2"));
}

#[tokio::test]
async fn a_secret_holding_a_newer_version_is_not_overwritten() {
    let fake = FakeKubernetes::start().await;
    fake.create_deployment(NS, "api");
    let dir = tempfile::tempdir().expect("dir");
    let sink = kubeconfig_sink(
        dir.path(),
        &fake.kubeconfig_with_token(&fake.token()),
        &["api"],
    );
    deliver(&sink, 3, "third-Pw-3").await.expect("version 3");
    let generation =
        fake.deployment(NS, "api").expect("deployment")["metadata"]["generation"].clone();
    deliver(&sink, 2, "second-Pw-2")
        .await
        .expect("skipped, not failed");
    let data = fake.secret_data(NS, "db");
    assert_eq!(data.get("password").map(String::as_str), Some("third-Pw-3"));
    let secret = fake.secret(NS, "db").expect("secret");
    assert_eq!(secret["metadata"]["annotations"][VERSION_ANNOTATION], "3");
    assert_eq!(
        fake.deployment(NS, "api").expect("deployment")["metadata"]["generation"],
        generation,
        "no rollout for an older version"
    );

    // A Secret another rotation writes is refused by name.
    let mut foreign = secret.clone();
    foreign["metadata"]["annotations"][ROTATION_ANNOTATION] = json!("another-rotation");
    fake.put_secret(NS, "db", foreign);
    let error = deliver(&sink, 4, "fourth-Pw-4").await.expect_err("refused");
    assert!(error.to_string().contains("another-rotation"), "{error}");
}

#[tokio::test]
async fn a_repeated_version_starts_no_second_rollout() {
    let fake = FakeKubernetes::start().await;
    fake.create_deployment(NS, "api");
    let dir = tempfile::tempdir().expect("dir");
    let sink = kubeconfig_sink(
        dir.path(),
        &fake.kubeconfig_with_token(&fake.token()),
        &["api"],
    );
    deliver(&sink, 1, "first-Pw-1").await.expect("first");
    let after_first = fake.deployment(NS, "api").expect("deployment");
    assert_eq!(after_first["metadata"]["generation"], 2);
    // At least once: the same version again (a lost answer, a crash before the mark).
    deliver(&sink, 1, "first-Pw-1").await.expect("again");
    let after_again = fake.deployment(NS, "api").expect("deployment");
    assert_eq!(
        after_again["metadata"]["generation"], 2,
        "the same restartedAt again"
    );
    assert_eq!(count(&fake, "PUT /api/v1/namespaces/app/secrets/db 200"), 0);
    assert_eq!(count(&fake, "POST /api/v1/namespaces/app/secrets 201"), 1);
    deliver(&sink, 2, "second-Pw-2").await.expect("second");
    assert_eq!(
        fake.deployment(NS, "api").expect("deployment")["metadata"]["generation"],
        3
    );
}

#[tokio::test]
async fn a_kubeconfig_client_certificate_authenticates() {
    let fake = FakeKubernetes::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let cert = fake.client_cert("rotator");
    let sink = kubeconfig_sink(dir.path(), &fake.kubeconfig_with_cert(&cert), &[]);
    deliver(&sink, 1, "cert-Pw-1")
        .await
        .expect("delivered with a client certificate");
    assert_eq!(
        fake.secret_data(NS, "db")
            .get("password")
            .map(String::as_str),
        Some("cert-Pw-1")
    );
}

#[tokio::test]
async fn in_cluster_auth_rereads_the_token_the_kubelet_rotated() {
    let fake = FakeKubernetes::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let first = fake.token();
    std::fs::write(dir.path().join("token"), &first).expect("token");
    std::fs::write(dir.path().join("ca.crt"), fake.ca_pem()).expect("ca");
    let mut sink = kubeconfig_sink(dir.path(), "", &[]);
    sink.data = KubernetesData::Rendered {
        key: "db.json".to_owned(),
        format: rotator::config::sinks::Format::Json,
    };
    sink.auth = KubernetesAuth::InCluster {
        dir: dir.path().to_owned(),
        host: Some("127.0.0.1".to_owned()),
        port: Some(fake.port().to_string()),
    };
    deliver(&sink, 1, "pod-Pw-1").await.expect("first token");
    let rotated = fake.new_token();
    std::fs::write(dir.path().join("token"), format!("{rotated}\n")).expect("token");
    fake.revoke_token(&first);
    deliver(&sink, 2, "pod-Pw-2")
        .await
        .expect("the rotated token");
    let json: serde_json::Value =
        serde_json::from_str(&fake.secret_data(NS, "db")["db.json"]).expect("json");
    assert_eq!(json["DB_PASSWORD"], "pod-Pw-2");

    // Outside a pod the variables are missing: said, not guessed.
    sink.auth = KubernetesAuth::InCluster {
        dir: dir.path().to_owned(),
        host: None,
        port: None,
    };
    let error = deliver(&sink, 3, "pod-Pw-3").await.expect_err("no cluster");
    assert!(
        error.to_string().contains("KUBERNETES_SERVICE_HOST"),
        "{error}"
    );
}

#[tokio::test]
async fn errors_carry_the_status_and_reason_never_a_value() {
    let fake = FakeKubernetes::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let sink = kubeconfig_sink(
        dir.path(),
        &fake.kubeconfig_with_token(&fake.token()),
        &["missing"],
    );
    let error = deliver(&sink, 1, "never-Logged-9")
        .await
        .expect_err("no deployment");
    let text = error.to_string();
    assert!(
        text.contains("PATCH Deployment app/missing: HTTP 404 NotFound"),
        "{text}"
    );
    assert!(text.contains("deployments \"missing\" not found"), "{text}");
    assert!(!text.contains("never-Logged-9"));

    let closed = free_port();
    let mut sink = sink;
    sink.auth = KubernetesAuth::InCluster {
        dir: dir.path().to_owned(),
        host: Some("127.0.0.1".to_owned()),
        port: Some(closed.to_string()),
    };
    std::fs::write(dir.path().join("token"), "tok-Secret-7").expect("token");
    std::fs::write(dir.path().join("ca.crt"), fake.ca_pem()).expect("ca");
    let text = deliver(&sink, 1, "never-Logged-9")
        .await
        .expect_err("closed")
        .to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("never-Logged-9") && !text.contains("tok-Secret-7"));
}

#[tokio::test]
async fn plain_http_is_accepted_only_on_loopback() {
    let fake = FakeKubernetes::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let token = fake.token();
    let plain = fake
        .kubeconfig_with_token(&token)
        .replace(&fake.server_url(), &fake.plain_url());
    let sink = kubeconfig_sink(dir.path(), &plain, &[]);
    deliver(&sink, 1, "proxy-Pw-1")
        .await
        .expect("loopback http");
    assert_eq!(
        fake.secret_data(NS, "db")
            .get("password")
            .map(String::as_str),
        Some("proxy-Pw-1")
    );
    let remote = fake
        .kubeconfig_with_token(&token)
        .replace(&fake.server_url(), "http://192.0.2.10:8080");
    let sink = kubeconfig_sink(dir.path(), &remote, &[]);
    let text = deliver(&sink, 2, "proxy-Pw-2")
        .await
        .expect_err("refused")
        .to_string();
    assert!(text.contains("must be https://"), "{text}");
}
