//! The `rotator` binary: the client commands against a real server, and `serve`'s start-up checks.

use std::process::{Command, Output};

use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical, PROJECT_ID};
use rotator_testkit::rotator_server::{TestServer, forwarding_env};

fn rotator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rotator"))
        .args(args)
        .env_remove("ROTATOR_SERVER")
        .output()
        .expect("run the rotator binary")
}

/// Runs a client command off the async runtime (the binary blocks).
async fn client(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        rotator(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn rotate_get_list_and_credentials_print_readably_and_as_json() {
    let fake = FakeInfisical::start().await;
    let server =
        TestServer::start(forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET)).await;
    let url = server.url();
    let id = fake.rotation_id("postgres-credentials").to_string();

    let out = client(vec![
        "rotate".into(),
        "postgres-credentials".into(),
        id.clone(),
        "--server".into(),
        url.clone(),
        "--json".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(answer["secretRotation"]["id"], id.as_str());
    assert_eq!(answer["secretRotation"]["type"], "postgres-credentials");

    let out = client(vec![
        "get".into(),
        "postgres-credentials".into(),
        id.clone(),
        "--server".into(),
        url.clone(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("id: {id}")),
        "{}",
        text(&out.stdout)
    );

    let out = client(vec![
        "list".into(),
        "--project".into(),
        PROJECT_ID.into(),
        "--server".into(),
        url.clone(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        15,
        "a header and 14 rotations"
    );

    let out = client(vec![
        "credentials".into(),
        "postgres-credentials".into(),
        id.clone(),
        "--server".into(),
        url.clone(),
        "--json".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(
        answer,
        fake.generated_credentials_json(id.parse().expect("uuid"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_call_exits_non_zero_with_the_status_and_request_id() {
    let fake = FakeInfisical::start().await;
    let server =
        TestServer::start(forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET)).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let out = client(vec![
        "rotate".into(),
        "postgres-credentials".into(),
        unknown,
        "--server".into(),
        server.url(),
        "--request-id".into(),
        "cli-test-7".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("NotFound"), "{stderr}");
    assert!(stderr.contains("request id: cli-test-7"), "{stderr}");
    assert!(stderr.contains("reason: ROTATION_NOT_FOUND"), "{stderr}");

    let out = client(vec![
        "rotate".into(),
        "no-such-type".into(),
        "x".into(),
        "--server".into(),
        server.url(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("postgres-credentials"),
        "lists the known types"
    );
    server.shutdown().await;
}

#[test]
fn serve_refuses_a_bad_config_naming_the_key_and_not_the_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("serve")
        .env("ROTATOR_LISTEN", "not-an-address")
        .env("ROTATOR_INFISICAL_URL", "http://127.0.0.1:1")
        .env("ROTATOR_INFISICAL_CLIENT_SECRET", "very-secret-value-123")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("listen:"), "{stderr}");
    assert!(stderr.contains("infisical.client_id"), "{stderr}");
    assert!(!stderr.contains("very-secret-value-123"), "{stderr}");
}

/// The registry is checked against the drivers before any port is bound: an unknown app, an
/// option no driver reads and a rotation on a connection of another app are reported together,
/// by key, with exit 64.
#[test]
fn serve_refuses_a_registry_the_drivers_cannot_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rotator.toml");
    std::fs::write(
        &file,
        r#"
data_dir = "data"

[[connections]]
name = "ldap"
app = "no-such-app"
host = "127.0.0.1"
username = "admin"

[[connections]]
name = "pg"
app = "postgres"
host = "127.0.0.1"
username = "rotator_admin"
tls = "disable"
mysql_host_part = "%"

[[connections]]
name = "cache"
app = "redis"
host = "127.0.0.1"
username = "admin"
tls = "disable"

[[rotations]]
id = "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10"
name = "app-db"
type = "postgres-credentials"
connection = "pg"
parameters = { username1 = "app_a", username2 = "app_b" }
secrets_mapping = { username = "DB_USER", password = "DB_PASSWORD" }

[[rotations]]
id = "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a11"
name = "wrong-app"
type = "postgres-credentials"
connection = "cache"
parameters = { username1 = "app_c", username2 = "app_d" }
secrets_mapping = { username = "DB_USER", password = "DB_PASSWORD" }
"#,
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .current_dir(dir.path())
        .env(
            "ROTATOR_ENCRYPTION_KEY",
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .env("ROTATOR_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in [
        "connections[0].app",
        "connections[1].mysql_host_part",
        "rotations[1].connection",
    ] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }
}

/// SIGTERM with a collector that accepts and never answers took 10 s after the drain (the span
/// flush's 5 s, then the metrics flush's 5 s; with a 4 s grace, 4 s + 4 s): the whole stop now
/// keeps to `shutdown_grace_seconds`. A bound on a deadline the server enforces, with a 3 s
/// margin for a loaded machine (the old sequence took 8 s), not a timing measurement.
#[tokio::test]
async fn sigterm_with_a_silent_collector_stops_within_the_grace() {
    use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
    use rotator_testkit::local_server::{free_port, wait_serving};
    use std::time::Duration;

    let collector = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the silent collector");
    let collector_addr = collector.local_addr().expect("addr");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = collector.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("serve")
        .env_remove("ROTATOR_CONFIG")
        .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROTATOR_DATA_DIR", dir.path())
        .env("ROTATOR_ADMIN_LISTEN", "off")
        .env("ROTATOR_SHUTDOWN_GRACE_SECONDS", "4")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start rotator serve");
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)).await;
    // A call, so that spans wait in the export queue.
    let _ = SecretRotationServiceClient::new(channel)
        .list_secret_rotations(rotator::proto::ListSecretRotationsRequest {
            r#type: 0,
            project_id: "p".into(),
        })
        .await;

    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(7), child.wait())
        .await
        .expect("stopped within the 4 s grace and a 3 s margin")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    silent.abort();
}

#[tokio::test]
async fn rotate_prints_one_line_by_default_and_the_whole_rotation_as_yaml() {
    let fake = FakeInfisical::start().await;
    let server =
        TestServer::start(forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET)).await;
    let id = fake.rotation_id("postgres-credentials").to_string();
    let rotate = |extra: &[&str]| {
        let mut args = vec![
            "rotate".to_owned(),
            "postgres-credentials".to_owned(),
            id.clone(),
            "--server".to_owned(),
            server.url(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        client(args)
    };

    let out = rotate(&[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    for part in [
        "postgres-credentials",
        id.as_str(),
        "active index",
        "last rotated",
    ] {
        assert!(stdout.contains(part), "{part} missing from: {stdout}");
    }

    let out = rotate(&["-o", "yaml"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    assert!(yaml.starts_with("secretRotation:\n"), "{yaml}");
    assert!(yaml.contains(&format!("  id: \"{id}\"\n")), "{yaml}");
    assert!(
        yaml.contains("  type: \"postgres-credentials\"\n"),
        "{yaml}"
    );
    server.shutdown().await;
}

/// `--json` was ignored on errors: scripts got text on stderr. Now a failed call and a failed
/// connection each print one JSON object with code, message, reason and request id.
#[tokio::test]
async fn json_errors_are_one_object_with_code_reason_and_request_id() {
    let fake = FakeInfisical::start().await;
    let server =
        TestServer::start(forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET)).await;
    let out = client(vec![
        "rotate".into(),
        "postgres-credentials".into(),
        uuid::Uuid::new_v4().to_string(),
        "--server".into(),
        server.url(),
        "--request-id".into(),
        "cli-json-1".into(),
        "--json".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "answers only on stdout");
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON on stderr");
    assert_eq!(error["error"]["code"], "NOT_FOUND");
    assert_eq!(error["error"]["reason"], "ROTATION_NOT_FOUND");
    assert_eq!(error["error"]["request_id"], "cli-json-1");
    assert!(error["error"]["message"].is_string());
    server.shutdown().await;

    let closed = rotator_testkit::local_server::free_port();
    let out = client(vec![
        "list".into(),
        "--project".into(),
        "p".into(),
        "--server".into(),
        format!("http://127.0.0.1:{closed}"),
        "-o".into(),
        "json".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON on stderr");
    assert_eq!(error["error"]["code"], "UNAVAILABLE");
    assert_eq!(error["error"]["reason"], "CLI_CONNECT_FAILED");

    let out = rotator(&["rotate", "no-such-type", "x", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON on stderr");
    assert_eq!(error["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("postgres-credentials")),
        "{error}"
    );
}

#[test]
fn help_has_examples_and_version_names_the_commit_and_build_date() {
    for command in [
        &["--help"][..],
        &["serve", "--help"],
        &["rotate", "--help"],
        &["get", "--help"],
        &["list", "--help"],
        &["credentials", "--help"],
        &["keygen", "--help"],
        &["token", "--help"],
        &["completions", "--help"],
        &["man", "--help"],
        &["events", "--help"],
        &["events", "tail", "--help"],
    ] {
        let out = rotator(command);
        assert!(out.status.success(), "{command:?}");
        assert!(
            text(&out.stdout).contains("Examples:"),
            "{command:?}: {}",
            text(&out.stdout)
        );
    }
    let out = rotator(&["--version"]);
    let version = text(&out.stdout);
    assert!(out.status.success());
    // rotator 0.1.0 (commit 4ff76e2abc, built 2026-12-02)
    let (_, rest) = version.split_once("(commit ").expect("a commit");
    let (commit, rest) = rest.split_once(", built ").expect("a build date");
    assert!(!commit.is_empty(), "{version}");
    let date = rest.trim_end().trim_end_matches(')');
    assert_eq!(date.len(), 10, "{version}");
    assert!(
        date.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 {
            c == '-'
        } else {
            c.is_ascii_digit()
        }),
        "{version}"
    );
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = rotator(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        assert!(
            script.contains("rotator") && script.contains("credentials"),
            "{shell}"
        );
    }
    let out = rotator(&["man"]);
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH rotator"),
        "{page}"
    );
    assert!(page.contains("completions"), "{page}");

    let dir = tempfile::tempdir().expect("tempdir");
    let out = rotator(&["man", "--out-dir", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for page in ["rotator.1", "rotator-rotate.1", "rotator-serve.1"] {
        assert!(dir.path().join(page).is_file(), "{page} not written");
    }
}

/// `events tail --json` printed its failures as text, and so did every command for a usage
/// error clap caught (unknown flag, bad value, missing argument). With `--json` or `-o json`,
/// every failure is now one JSON object on stderr with the usual exit code.
#[test]
fn with_json_usage_and_configuration_errors_are_json_too() {
    let json_error = |out: &Output| -> serde_json::Value {
        serde_json::from_slice(&out.stderr)
            .unwrap_or_else(|e| panic!("JSON on stderr ({e}): {}", text(&out.stderr)))
    };
    for (args, hint) in [
        (
            &["events", "tail", "--json", "--outcome", "bogus"][..],
            "bogus",
        ),
        (
            &["events", "tail", "--json", "--type", "bogus"][..],
            "postgres-credentials",
        ),
        (&["list", "--json"][..], "--project"),
        (
            &["rotate", "-o", "json", "--no-such-flag"][..],
            "--no-such-flag",
        ),
    ] {
        let out = rotator(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let error = json_error(&out);
        assert_eq!(error["error"]["code"], "INVALID_ARGUMENT", "{args:?}");
        assert_eq!(error["error"]["reason"], "CLI_USAGE", "{args:?}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(hint)),
            "{args:?}: {error}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rotator"))
        .args(["events", "tail", "--json"])
        .env_clear()
        .output()
        .expect("run the rotator binary");
    assert_eq!(out.status.code(), Some(64));
    let error = json_error(&out);
    assert_eq!(error["error"]["reason"], "CLI_CONFIG");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ROTATOR_NATS_URL")),
        "{error}"
    );
    // Without --json: clap's text, as before.
    let out = rotator(&["events", "tail", "--outcome", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn events_tail_with_an_unknown_type_lists_the_valid_ones() {
    let out = rotator(&["events", "tail", "--type", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bogus"), "{stderr}");
    for known in [
        "postgres-credentials",
        "redis-credentials",
        "aws-iam-user-secret",
    ] {
        assert!(stderr.contains(known), "{known} missing from: {stderr}");
    }
}

/// Type errors used to stop at the first one with serde's `invalid type: string "<the value>",
/// expected u32`: no key, the value echoed. Every problem is now named by key (and line, or the
/// variable that set it), and no value is printed.
#[test]
fn serve_reports_every_type_error_by_key_and_line_without_the_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rotator.toml");
    std::fs::write(
        &file,
        "data_dir = \"data\"\nmax_concurrent_calls = \"calls-value-1\"\n\n[infisical]\nurl = \"http://127.0.0.1:1\"\nclient_id = \"id\"\nclient_secret = 4242424242\n",
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .current_dir(dir.path())
        .env("ROTATOR_MAX_MESSAGE_BYTES", "bytes-value-2")
        .env("ROTATOR_LISTN", "127.0.0.1:0")
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for shown in [
        "max_concurrent_calls: must be a whole number",
        "(line 2)",
        "max_message_bytes: must be a whole number",
        "(from ROTATOR_MAX_MESSAGE_BYTES)",
        "infisical.client_secret: must be a string",
        "(line 7)",
        "ROTATOR_LISTN: is not a variable rotator reads; did you mean ROTATOR_LISTEN?",
    ] {
        assert!(stderr.contains(shown), "{shown:?} missing from: {stderr}");
    }
    for value in [
        "calls-value-1",
        "bytes-value-2",
        "4242424242",
        "invalid type",
    ] {
        assert!(!stderr.contains(value), "{value} printed: {stderr}");
    }
}
