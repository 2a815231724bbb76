//! Delivery to file and exec sinks through the real binary, rotating a private Redis: every
//! committed version reaches each sink (atomic file with its mode, each format; a command that
//! gets the values on stdin only), a hanging command is killed with its process group and
//! retried without failing the rotation, the status and events say so, no value reaches a log
//! line, an argument, an environment or an event; a kill -9 between a commit and its delivery
//! delivers exactly the committed version after the restart; and a sink added by a SIGHUP
//! reload gets the current version.
//!
//! Needs `redis-server` on PATH.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator_testkit::delivery_redis::{
    active, outbox, read_log, rotate, sink, start_logged, wait_deliveries,
};
use rotator_testkit::local_server::free_port;
use rotator_testkit::private_redis::{ADMIN_PASSWORD, ADMIN_USER, PrivateRedis};
use tokio::process::Child;
use tonic::transport::Channel;

const ADMIN_ENV: &str = "REDIS_ADMIN";

/// A test's directory: config, store, sinks' files, the exec recorder's output, the log.
struct Setup {
    dir: tempfile::TempDir,
    id: String,
    config: PathBuf,
    redis_port: u16,
}

impl Setup {
    /// A Redis rotation whose sinks are `sinks` (TOML inline tables, `{DIR}` replaced).
    fn new(redis_port: u16, sinks: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("out")).expect("out dir");
        let setup = Self {
            config: dir.path().join("rotator.toml"),
            dir,
            id: uuid::Uuid::new_v4().to_string(),
            redis_port,
        };
        setup.write_config(sinks);
        setup
    }

    /// (Re)writes the configuration with `sinks`.
    fn write_config(&self, sinks: &[&str]) {
        let d = self.dir.path().display().to_string();
        let sinks: Vec<String> = sinks.iter().map(|s| s.replace("{DIR}", &d)).collect();
        let text = format!(
            r#"
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
            port = self.redis_port,
            id = self.id,
            short = &self.id[..8],
            sinks = sinks.join(",\n"),
        );
        std::fs::write(&self.config, text).expect("config");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the binary (JSON logs appended to `rotator.log`, the admin listener on
    /// `admin_port`), optionally with a failpoint.
    async fn start(&self, failpoint: Option<&str>) -> (Child, Option<Channel>) {
        self.start_with_admin(failpoint, free_port()).await
    }

    async fn start_with_admin(
        &self,
        failpoint: Option<&str>,
        admin_port: u16,
    ) -> (Child, Option<Channel>) {
        let mut env = vec![("ROTATOR_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))];
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

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

const ENV_FILE: &str = "file:{DIR}/out/app.env";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_version_reaches_file_and_exec_sinks() {
    let redis = PrivateRedis::shared();
    let setup = Setup::new(
        redis.port(),
        &[
            r#"{ kind = "file", path = "{DIR}/out/app.env", mode = "0640" }"#,
            r#"{ kind = "file", path = "{DIR}/out/app.dotenv", format = "dotenv" }"#,
            r#"{ kind = "file", path = "{DIR}/out/app.json", format = "json" }"#,
            r#"{ kind = "file", name = "url", path = "{DIR}/out/app.url", template = "redis://{{APP_USER}}:{{APP_PASSWORD}}@cache:6379/0" }"#,
            r#"{ kind = "exec", name = "recorder", command = ["{DIR}/record.sh", "--reload"] }"#,
            r#"{ kind = "exec", name = "hangs", command = ["{DIR}/hang.sh"], timeout_seconds = 1 }"#,
        ],
    );
    let d = setup.dir.path().display().to_string();
    script(
        &setup.path("record.sh"),
        &format!(
            "printf '%s\\n' \"$0\" \"$@\" > {d}/argv.$ROTATOR_VERSION\n\
             env > {d}/env.$ROTATOR_VERSION\n\
             cat > {d}/stdin.tmp && mv {d}/stdin.tmp {d}/stdin.$ROTATOR_VERSION"
        ),
    );
    // Its child sleeps on after the script: only killing the process group ends it.
    script(
        &setup.path("hang.sh"),
        &format!("sleep 300 &\necho $! >> {d}/hang.pids\nwait"),
    );
    let admin_port = free_port();
    let (mut child, channel) = setup.start_with_admin(None, admin_port).await;
    let channel = channel.expect("serving");
    let id = setup.id.clone();
    let good = [
        ENV_FILE.replace("{DIR}", &d),
        format!("file:{d}/out/app.dotenv"),
        format!("file:{d}/out/app.json"),
        "url".to_owned(),
        "recorder".to_owned(),
    ];
    let mut passwords = Vec::new();
    for version in 1..=2u64 {
        if version > 1 {
            rotate(&channel, &id).await;
        }
        let state = wait_deliveries(&channel, &id, "every good sink delivered", |s| {
            good.iter().all(|g| {
                s.iter()
                    .any(|x| &x.sink == g && x.delivered_version == version)
            })
        })
        .await;
        for name in &good {
            let s = sink(&state, name);
            assert_eq!(s.wanted_version, version);
            assert!(s.delivered_at.is_some() && s.last_error.is_none());
        }
        let (user, password) = active(&channel, &id).await;
        passwords.push(password.clone());
        let read = |name: &str| std::fs::read_to_string(setup.path(name)).expect(name);
        assert_eq!(
            read("out/app.env"),
            format!("APP_PASSWORD={password}\nAPP_USER={user}\n")
        );
        assert!(read("out/app.dotenv").contains(&format!("APP_USER=\"{user}\"")));
        let json: serde_json::Value = serde_json::from_str(&read("out/app.json")).expect("json");
        assert_eq!(json["APP_PASSWORD"], password.as_str());
        assert_eq!(
            read("out/app.url"),
            format!("redis://{user}:{password}@cache:6379/0")
        );
        let stdin: serde_json::Value =
            serde_json::from_str(&read(&format!("stdin.{version}"))).expect("stdin json");
        assert_eq!(stdin["APP_PASSWORD"], password.as_str());
        assert_eq!(stdin["APP_USER"], user.as_str());
        let argv = read(&format!("argv.{version}"));
        let env = read(&format!("env.{version}"));
        assert!(argv.ends_with("--reload\n"), "{argv}");
        assert!(env.contains(&format!("ROTATOR_ROTATION_ID={id}")));
        for secret in [&password, &ADMIN_PASSWORD.to_owned()] {
            assert!(!argv.contains(secret.as_str()) && !env.contains(secret.as_str()));
        }
        let mode = |name: &str| std::fs::metadata(setup.path(name)).expect(name).mode() & 0o777;
        assert_eq!(mode("out/app.env"), 0o640);
        assert_eq!(mode("out/app.json"), 0o600);
    }

    let state = wait_deliveries(&channel, &id, "the hanging sink failed", |s| {
        sink(s, "hangs").failures >= 1
    })
    .await;
    let hangs = sink(&state, "hangs");
    assert_eq!(hangs.delivered_version, 0);
    assert!(hangs.failing_since.is_some() && hangs.next_try_at.is_some());
    assert!(
        hangs
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("killed")),
        "{hangs:?}"
    );
    // The first try's `sleep` (its failure is recorded, so its group was killed) is gone, or
    // a zombie nobody reaped yet.
    let pids = std::fs::read_to_string(setup.path("hang.pids")).expect("pids");
    let first = pids.lines().next().expect("a pid");
    let stat = std::fs::read_to_string(format!("/proc/{first}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    assert!(
        stat.is_empty() || state == Some("Z"),
        "the command's process group was killed: {stat}"
    );
    // The rotation itself is unaffected by the failing sink.
    rotate(&channel, &id).await;
    let (_, third) = active(&channel, &id).await;
    passwords.push(third);

    let events = outbox(&setup.path("data")).await;
    let subjects: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
    assert!(
        subjects.contains(&"redis-credentials.delivered"),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .filter(|s| **s == "redis-credentials.delivery-failed")
            .count()
            >= 1
    );
    let delivered = events
        .iter()
        .find(|(s, p)| s == "redis-credentials.delivered" && p.contains("\"recorder\""))
        .expect("a recorder event");
    assert!(
        delivered.1.contains("rotator.v1.CredentialDelivered"),
        "{}",
        delivered.1
    );

    let metrics = reqwest::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let counted = |kind: &str, outcome: &str| {
        metrics.lines().any(|l| {
            l.starts_with("rotator_deliveries_total{")
                && l.contains(&format!("sink_kind=\"{kind}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    assert!(
        counted("file", "delivered") && counted("exec", "delivered") && counted("exec", "failed"),
        "{metrics}"
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_commit_and_delivery_delivers_the_committed_version_after_restart() {
    let redis = PrivateRedis::shared();
    let setup = Setup::new(
        redis.port(),
        &[r#"{ kind = "file", path = "{DIR}/out/app.env" }"#],
    );
    let d = setup.dir.path().display().to_string();
    let name = ENV_FILE.replace("{DIR}", &d);
    let env_file = setup.path("out/app.env");

    // Version 1 (first create) delivered by a clean run.
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");
    wait_deliveries(&channel, &setup.id, "version 1", |s| {
        sink(s, &name).delivered_version == 1
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
    assert!(
        std::fs::read_to_string(&env_file)
            .expect("file")
            .contains(&first),
        "the crashed process did not deliver version 2"
    );

    // The restart owes version 2 and delivers exactly it.
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");
    let state = wait_deliveries(&channel, &setup.id, "version 2 after restart", |s| {
        sink(s, &name).delivered_version == 2
    })
    .await;
    assert_eq!(sink(&state, &name).wanted_version, 2);
    let (user, second) = active(&channel, &setup.id).await;
    assert_ne!(first, second);
    assert_eq!(
        std::fs::read_to_string(&env_file).expect("file"),
        format!("APP_PASSWORD={second}\nAPP_USER={user}\n")
    );
    let _ = child.kill().await;
    let _ = child.wait().await;
    let log = setup.log();
    assert!(!log.contains(&first) && !log.contains(&second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_added_by_a_reload_gets_the_current_version() {
    let redis = PrivateRedis::shared();
    let first = r#"{ kind = "file", path = "{DIR}/out/app.env" }"#;
    let setup = Setup::new(redis.port(), &[first]);
    let d = setup.dir.path().display().to_string();
    let (mut child, channel) = setup.start(None).await;
    let channel = channel.expect("serving");
    let env_name = ENV_FILE.replace("{DIR}", &d);
    wait_deliveries(&channel, &setup.id, "the first sink", |s| {
        sink(s, &env_name).delivered_version == 1
    })
    .await;

    setup.write_config(&[
        first,
        r#"{ kind = "file", name = "added", path = "{DIR}/out/added.json", format = "json" }"#,
    ]);
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let state = wait_deliveries(&channel, &setup.id, "the added sink", |s| {
        s.iter()
            .any(|x| x.sink == "added" && x.delivered_version == 1)
    })
    .await;
    assert_eq!(state.len(), 2);
    let (user, password) = active(&channel, &setup.id).await;
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(setup.path("out/added.json")).expect("added file"),
    )
    .expect("json");
    assert_eq!(json["APP_USER"], user.as_str());
    assert_eq!(json["APP_PASSWORD"], password.as_str());
    let _ = child.kill().await;
    let _ = child.wait().await;
}
