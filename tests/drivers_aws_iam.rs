//! The AWS IAM access key driver against a private moto server with signatures enforced: issue,
//! verify, list and revoke; a wrong admin secret, an unknown user, a missing permission and the
//! cap of two keys, each classified and changing nothing; no secret in any output. Then through
//! the real binary: first create and two rotations, and kill -9 at `issued`, `applied` and
//! `verified` followed by recovery: the user holds exactly the stored keys, and each works.
//!
//! Needs `python3 -m moto.server` (scripts/test.sh installs `moto[server]`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::drivers::{
    AnyIssuer, ConnectionConfig, Credential, DriverError, DriverErrorKind, DriverOptions,
    LocalDriver, TlsConfig, TlsMode,
};
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    AwsIamUserSecretParameters, GetGeneratedCredentialsRequest, RotateSecretsRequest,
    RotationStatus, RotationType, generated_credential, rotation_parameters,
};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_certificate_refused, assert_no_secret, assert_phase_span, captured_traces, error_texts,
    start_trace_capture,
};
use rotator_testkit::local_server::{
    attempt_states, free_port, rotator_command, wait_for_attempts_to_end, wait_serving,
};
use rotator_testkit::moto::Moto;
use rotator_testkit::test_ca::{SelfSigned, TestCa};
use rotator_testkit::tls_front::TlsFront;
use tokio::process::Child;
use tonic::transport::Channel;

/// The env var holding the admin's secret access key in the binary's config.
const ADMIN_ENV: &str = "AWS_ADMIN_SECRET";

/// A user name no other test uses.
fn unique_user(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn connection(moto: &Moto, admin: &Credential) -> ConnectionConfig {
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port: moto.port(),
        database: String::new(),
        admin_username: admin.id.clone(),
        admin_password: admin.secret.clone(),
        tls: TlsConfig {
            mode: TlsMode::Disable,
            ca_pem: None,
        },
    }
}

/// The driver of a rotation of `user`'s keys, as the admin `admin`; verify retries a rejected
/// key for `verify_retry_seconds`.
fn issuer(moto: &Moto, admin: &Credential, user: &str, verify_retry_seconds: i64) -> AnyIssuer {
    let mut options = toml::Table::new();
    options.insert("verify_retry_seconds".into(), verify_retry_seconds.into());
    let built = rotator::drivers::build(
        &uuid::Uuid::new_v4().to_string(),
        connection(moto, admin),
        &rotation_parameters::Kind::AwsIamUserSecret(AwsIamUserSecretParameters {
            user_name: user.into(),
            region: Some("eu-west-1".into()),
        }),
        DriverOptions {
            options,
            ..DriverOptions::default()
        },
    )
    .expect("a valid aws connection");
    match built {
        LocalDriver::Issued(issuer) => issuer,
        LocalDriver::Chosen(_) => panic!("aws-iam-user-secret is an issued secret"),
    }
}

fn ids(list: Vec<String>) -> BTreeSet<String> {
    list.into_iter().collect()
}

#[tokio::test]
async fn issue_verify_list_and_revoke_exactly_the_asked_key() {
    start_trace_capture();
    let moto = Moto::shared().await;
    let user = unique_user("app");
    moto.create_user(&user).await;
    let driver = issuer(&moto, moto.admin(), &user, 1);

    assert!(driver.list().await.expect("list").is_empty());
    let first = driver.issue().await.expect("issue");
    assert_eq!(
        ids(driver.list().await.expect("list")),
        BTreeSet::from([first.id.clone()])
    );
    driver.verify(&first).await.expect("the new key works");
    let arn = moto.caller_arn(&first).await.expect("GetCallerIdentity");
    assert!(arn.ends_with(&format!(":user/{user}")), "{arn}");

    let wrong = Credential {
        id: first.id.clone(),
        secret: SecretString::new("a-wrong-secret-access-key-000000000000000"),
    };
    let refused = driver.verify(&wrong).await.expect_err("a wrong secret");
    assert_eq!(refused.kind(), DriverErrorKind::LoginRejected, "{refused}");
    assert!(!refused.is_transient());

    let second = driver.issue().await.expect("a second key");
    assert_eq!(
        ids(driver.list().await.expect("list")),
        BTreeSet::from([first.id.clone(), second.id.clone()])
    );
    driver.revoke(&first.id).await.expect("revoke the first");
    assert_eq!(
        moto.access_key_ids(&user).await,
        BTreeSet::from([second.id.clone()])
    );
    driver
        .revoke(&first.id)
        .await
        .expect("revoking again is success (idempotent)");
    let revoked = driver.verify(&first).await.expect_err("a deleted key");
    assert_eq!(revoked.kind(), DriverErrorKind::LoginRejected, "{revoked}");
    driver
        .verify(&second)
        .await
        .expect("the other key still works");

    let admin_key = driver
        .revoke(&moto.admin().id)
        .await
        .expect_err("the admin's own key is never deleted");
    assert_eq!(admin_key.kind(), DriverErrorKind::InvalidInput);
    assert!(moto.caller_arn(moto.admin()).await.is_some());

    let secrets = [
        &first.secret,
        &second.secret,
        &wrong.secret,
        &moto.admin().secret,
    ];
    let texts = error_texts(&[refused, revoked, admin_key]);
    assert_no_secret(&secrets, texts.iter().map(String::as_str));
    assert_no_secret(
        &secrets,
        [
            format!("{first:?}"),
            format!("{second:?}"),
            format!("{driver:?}"),
        ]
        .iter()
        .map(String::as_str),
    );
    assert_no_secret(&secrets, [captured_traces().as_str()]);
    assert_phase_span("issue", "aws.iam", &moto.admin().id);
    assert_phase_span("verify", "aws.iam", &second.id);
    assert_phase_span("revoke", "aws.iam", &first.id);
}

#[tokio::test]
async fn a_wrong_admin_secret_is_admin_login_rejected_and_changes_nothing() {
    start_trace_capture();
    let moto = Moto::shared().await;
    let user = unique_user("app");
    moto.create_user(&user).await;
    let existing = moto.create_access_key(&user).await;
    let before = moto.access_key_ids(&user).await;

    let wrong_secret = Credential {
        id: moto.admin().id.clone(),
        secret: SecretString::new("not-the-admin-secret-access-key-00000000"),
    };
    let unknown_key = Credential {
        id: "AKIAUNKNOWN000000000".into(),
        secret: SecretString::new("not-the-admin-secret-access-key-00000000"),
    };
    let mut errors: Vec<DriverError> = Vec::new();
    for admin in [&wrong_secret, &unknown_key] {
        let driver = issuer(&moto, admin, &user, 0);
        errors.push(driver.list().await.expect_err("list"));
        errors.push(driver.issue().await.expect_err("issue"));
        errors.push(driver.revoke(&existing.id).await.expect_err("revoke"));
    }
    for e in &errors {
        assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");
        assert!(!e.is_transient());
    }
    assert_eq!(moto.access_key_ids(&user).await, before, "nothing changed");
    let texts = error_texts(&errors);
    assert_no_secret(
        &[&wrong_secret.secret, &existing.secret, &moto.admin().secret],
        texts.iter().map(String::as_str),
    );
}

#[tokio::test]
async fn an_unknown_user_is_user_not_found_and_its_revoke_is_a_no_op() {
    let moto = Moto::shared().await;
    let driver = issuer(&moto, moto.admin(), &unique_user("nobody"), 0);
    let e = driver.issue().await.expect_err("issue");
    assert_eq!(e.kind(), DriverErrorKind::UserNotFound, "{e}");
    let e = driver.list().await.expect_err("list");
    assert_eq!(e.kind(), DriverErrorKind::UserNotFound, "{e}");
    assert!(!e.is_transient());
    driver
        .revoke("AKIAUNKNOWN000000000")
        .await
        .expect("a key that does not exist is already revoked");
}

#[tokio::test]
async fn the_cap_of_two_keys_is_limit_reached_and_no_key_is_deleted() {
    let moto = Moto::shared().await;
    let user = unique_user("full");
    moto.create_user(&user).await;
    moto.create_access_key(&user).await;
    moto.create_access_key(&user).await;
    let before = moto.access_key_ids(&user).await;
    let driver = issuer(&moto, moto.admin(), &user, 0);
    let e = driver.issue().await.expect_err("a third key");
    assert_eq!(e.kind(), DriverErrorKind::LimitReached, "{e}");
    assert!(!e.is_transient());
    assert_eq!(
        moto.access_key_ids(&user).await,
        before,
        "upstream deleted the oldest here"
    );
}

#[tokio::test]
async fn an_admin_without_the_permission_is_permission_denied() {
    let moto = Moto::shared().await;
    let weak = unique_user("weak-admin");
    moto.create_user(&weak).await;
    moto.allow(&weak, &["iam:ListAccessKeys"]).await;
    let weak_key = moto.create_access_key(&weak).await;
    let user = unique_user("app");
    moto.create_user(&user).await;
    let driver = issuer(&moto, &weak_key, &user, 0);
    driver.list().await.expect("ListAccessKeys is allowed");
    let e = driver.issue().await.expect_err("CreateAccessKey is not");
    assert_eq!(e.kind(), DriverErrorKind::PermissionDenied, "{e}");
    assert!(moto.access_key_ids(&user).await.is_empty());
}

#[tokio::test]
async fn a_closed_port_is_unreachable_and_transient() {
    let moto = Moto::shared().await;
    let mut connection = connection(&moto, moto.admin());
    connection.port = free_port();
    let built = rotator::drivers::build(
        "r",
        connection,
        &rotation_parameters::Kind::AwsIamUserSecret(AwsIamUserSecretParameters {
            user_name: "app".into(),
            region: None,
        }),
        DriverOptions::default(),
    )
    .expect("valid");
    let LocalDriver::Issued(driver) = built else {
        panic!("issued");
    };
    let e = driver.list().await.expect_err("nothing listens");
    assert_eq!(e.kind(), DriverErrorKind::Unreachable, "{e}");
    assert!(e.is_transient());
}

#[tokio::test]
async fn plain_http_to_aws_and_unknown_options_are_refused_before_sending() {
    let moto = Moto::shared().await;
    let parameters = rotation_parameters::Kind::AwsIamUserSecret(AwsIamUserSecretParameters {
        user_name: "app".into(),
        region: None,
    });
    let mut aws = connection(&moto, moto.admin());
    aws.host = "iam.amazonaws.com".into();
    let e = rotator::drivers::build("r", aws, &parameters, DriverOptions::default())
        .expect_err("http to AWS");
    assert!(e.to_string().contains("disable"), "{e}");

    let mut options = toml::Table::new();
    options.insert("iam_region_typo".into(), "x".into());
    let e = rotator::drivers::build(
        "r",
        connection(&moto, moto.admin()),
        &parameters,
        DriverOptions {
            options,
            ..DriverOptions::default()
        },
    )
    .expect_err("an unknown option");
    assert!(e.to_string().contains("iam_region_typo"), "{e}");
}

// === through the binary ===

/// Writes a config with the moto connection and one rotation of `user`'s keys.
fn config(dir: &Path, moto: &Moto, id: &str, user: &str) -> PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "aws"
app = "aws"
host = "127.0.0.1"
port = {port}
username = "{admin}"
password = "env:{ADMIN_ENV}"
tls = "disable"
region = "us-east-1"

[[rotations]]
id = "{id}"
name = "ci-deployer-keys"
type = "aws-iam-user-secret"
connection = "aws"
rotation_interval_days = 30
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = {{ userName = "{user}" }}
secrets_mapping = {{ accessKeyId = "AWS_ACCESS_KEY_ID", secretAccessKey = "AWS_SECRET_ACCESS_KEY" }}
"#,
        port = moto.port(),
        admin = moto.admin().id,
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn spawn(moto: &Moto, config: &Path, data_dir: &Path, port: u16, failpoint: Option<&str>) -> Child {
    let mut command = rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        config,
        data_dir,
        port,
        (ADMIN_ENV, moto.admin().secret.expose()),
    );
    if let Some(fp) = failpoint {
        command.env("ROTATOR_FAILPOINT", fp);
    }
    command.spawn().expect("spawn rotator")
}

/// Starts the binary without failpoint and waits until it serves (first create and recovery
/// run before that).
async fn start(moto: &Moto, config: &Path, data_dir: &Path) -> (Child, Channel) {
    let port = free_port();
    let child = spawn(moto, config, data_dir, port, None);
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
    // Serving does not wait for recovery; a clean start does, so checks see its result.
    wait_for_attempts_to_end(data_dir, Duration::from_secs(60)).await;
    (child, channel)
}

async fn stop(mut child: Child) {
    let _ = child.kill().await;
    let _ = child.wait().await;
}

/// The stored keys: (active index, keys by slot).
async fn stored(channel: &Channel, id: &str) -> (u32, Vec<Credential>) {
    let answer = SecretRotationServiceClient::new(channel.clone())
        .get_generated_credentials(GetGeneratedCredentialsRequest {
            r#type: RotationType::AwsIamUserSecret as i32,
            rotation_id: id.to_owned(),
        })
        .await
        .expect("GetGeneratedCredentials")
        .into_inner();
    let keys = answer
        .generated_credentials
        .into_iter()
        .map(|c| match c.kind {
            Some(generated_credential::Kind::AwsIamUserSecret(k)) => Credential {
                id: k.access_key_id,
                secret: SecretString::new(k.secret_access_key),
            },
            other => panic!("unexpected credential {other:?}"),
        })
        .collect();
    (answer.active_index, keys)
}

async fn rotate(channel: &Channel, id: &str) -> Result<RotationStatus, tonic::Status> {
    SecretRotationServiceClient::new(channel.clone())
        .rotate_secrets(RotateSecretsRequest {
            r#type: RotationType::AwsIamUserSecret as i32,
            rotation_id: id.to_owned(),
        })
        .await
        .map(|r| {
            RotationStatus::try_from(
                r.into_inner()
                    .secret_rotation
                    .expect("rotation")
                    .rotation_status,
            )
            .expect("a status")
        })
}

/// The invariant after any run, crash or not: the user holds exactly the stored key ids, and
/// each stored key authenticates as the user.
async fn assert_user_holds_exactly_the_stored_keys(
    moto: &Moto,
    user: &str,
    keys: &[Credential],
    when: &str,
) {
    let stored: BTreeSet<String> = keys.iter().map(|k| k.id.clone()).collect();
    assert_eq!(
        moto.access_key_ids(user).await,
        stored,
        "{when}: the user's keys are the stored ones"
    );
    for key in keys {
        let arn = moto.caller_arn(key).await;
        assert!(
            arn.as_deref()
                .is_some_and(|a| a.ends_with(&format!(":user/{user}"))),
            "{when}: stored key {} does not authenticate as {user} ({arn:?})",
            key.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_rotation_keeps_exactly_the_two_stored_keys() {
    let moto = Moto::shared().await;
    let user = unique_user("ci-deployer");
    moto.create_user(&user).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4().to_string();
    let config = config(dir.path(), &moto, &id, &user);
    let (child, channel) = start(&moto, &config, &dir.path().join("data")).await;

    let (active, keys) = stored(&channel, &id).await;
    assert_eq!((active, keys.len()), (0, 1), "first create issues slot 0");
    assert_user_holds_exactly_the_stored_keys(&moto, &user, &keys, "first create").await;
    let mut previous = keys[0].clone();
    for round in 0..2 {
        let status = rotate(&channel, &id).await.expect("rotate");
        assert_eq!(status, RotationStatus::Success);
        let (active, keys) = stored(&channel, &id).await;
        assert_eq!(keys.len(), 2, "round {round}");
        let inactive = &keys[1 - active as usize];
        assert_eq!(
            inactive, &previous,
            "round {round}: the previous key is kept"
        );
        assert_user_holds_exactly_the_stored_keys(&moto, &user, &keys, &format!("round {round}"))
            .await;
        previous = keys[active as usize].clone();
    }
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_issued_applied_or_verified_leaves_exactly_the_stored_keys() {
    let moto = Moto::shared().await;
    for boundary in ["issued", "applied", "verified"] {
        let user = unique_user("crash");
        moto.create_user(&user).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let id = uuid::Uuid::new_v4().to_string();
        let config = config(dir.path(), &moto, &id, &user);

        // Two clean rotations first, so the crashed one meets the cap of two keys.
        let (child, channel) = start(&moto, &config, &data_dir).await;
        rotate(&channel, &id).await.expect("a first rotation");
        stop(child).await;

        let port = free_port();
        let mut child = spawn(&moto, &config, &data_dir, port, Some(boundary));
        let channel =
            wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
        let _ = rotate(&channel, &id).await;
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("the failpoint ends the process")
            .expect("wait");
        assert!(
            !status.success(),
            "{boundary}: the process was killed at the failpoint"
        );

        let (child, channel) = start(&moto, &config, &data_dir).await;
        let (_, keys) = stored(&channel, &id).await;
        assert_eq!(keys.len(), 2, "{boundary}");
        assert_user_holds_exactly_the_stored_keys(&moto, &user, &keys, boundary).await;
        let states = attempt_states(&data_dir).await;
        assert!(
            states.iter().all(|s| s == "committed" || s == "failed"),
            "{boundary}: open attempts remain: {states:?}"
        );
        // And the rotation goes on from there.
        assert_eq!(
            rotate(&channel, &id).await.expect("rotate after recovery"),
            RotationStatus::Success
        );
        let (_, keys) = stored(&channel, &id).await;
        assert_user_holds_exactly_the_stored_keys(
            &moto,
            &user,
            &keys,
            &format!("{boundary}, then a rotation"),
        )
        .await;
        stop(child).await;
    }
}

/// Upstream deleted the oldest key when the user had two, an unmanaged one included (spec §14
/// item 8). rotator leaves a key it never recorded alone: the rotation fails with the cap
/// reached, and the unmanaged key and the stored one keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmanaged_key_is_never_deleted_even_at_the_cap() {
    let moto = Moto::shared().await;
    let user = unique_user("shared");
    moto.create_user(&user).await;
    let unmanaged = moto.create_access_key(&user).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let id = uuid::Uuid::new_v4().to_string();
    let config = config(dir.path(), &moto, &id, &user);
    let (child, channel) = start(&moto, &config, &dir.path().join("data")).await;

    let (_, keys) = stored(&channel, &id).await;
    assert_eq!(
        keys.len(),
        1,
        "first create issues slot 0 next to the unmanaged key"
    );
    let failed = rotate(&channel, &id).await;
    assert!(
        !matches!(failed, Ok(RotationStatus::Success)),
        "no room for slot 1 without deleting the unmanaged key: {failed:?}"
    );
    let (_, after) = stored(&channel, &id).await;
    assert_eq!(after, keys, "the stored key is unchanged");
    let mut expected: BTreeSet<String> = keys.iter().map(|k| k.id.clone()).collect();
    expected.insert(unmanaged.id.clone());
    assert_eq!(moto.access_key_ids(&user).await, expected);
    assert!(
        moto.caller_arn(&unmanaged).await.is_some(),
        "the unmanaged key still works"
    );
    assert!(
        moto.caller_arn(&keys[0]).await.is_some(),
        "the stored key still works"
    );
    stop(child).await;
}

/// Lists the admin's keys through a TLS front serving `cert_pem` / `key_pem` before moto, with
/// `tls = "verify-full"` and `ca_pem` as the connection's `ca_file`.
async fn list_over_tls(
    moto: &Moto,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<(), DriverError> {
    let front = TlsFront::start(&format!("127.0.0.1:{}", moto.port()), cert_pem, key_pem).await;
    let mut connection = connection(moto, moto.admin());
    connection.port = front.port();
    connection.tls = TlsConfig {
        mode: TlsMode::VerifyFull,
        ca_pem: Some(ca_pem.to_owned()),
    };
    let built = rotator::drivers::build(
        &uuid::Uuid::new_v4().to_string(),
        connection,
        &rotation_parameters::Kind::AwsIamUserSecret(AwsIamUserSecretParameters {
            user_name: rotator_testkit::moto::ADMIN_USER.into(),
            region: None,
        }),
        DriverOptions::default(),
    )
    .expect("a valid aws connection");
    let LocalDriver::Issued(driver) = built else {
        panic!("issued");
    };
    driver.list().await.map(drop)
}

/// A self-signed (CA:TRUE) server certificate given as the `ca_file` is pinned, as `openssl req
/// -x509` and rcgen make it; another self-signed certificate is a TLS failure naming `ca_file`.
#[tokio::test]
async fn verify_full_pins_a_self_signed_certificate_given_as_the_ca_file() {
    let moto = Moto::shared().await;
    let (dir, other_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let other = SelfSigned::rcgen(other_dir.path());
    for (maker, made) in [
        ("openssl", SelfSigned::openssl(dir.path())),
        ("rcgen", SelfSigned::rcgen(dir.path())),
    ] {
        let key = std::fs::read_to_string(&made.key_file).expect("the key");
        list_over_tls(&moto, &made.pem, &key, &made.pem)
            .await
            .unwrap_or_else(|e| panic!("{maker}: the pinned certificate is accepted: {e}"));
        let refused = list_over_tls(&moto, &made.pem, &key, &other.pem)
            .await
            .expect_err("another self-signed certificate");
        assert_certificate_refused(
            &refused,
            "put that exact certificate in ca_file",
            moto.admin().secret.expose(),
        );
    }
}

/// A `ca_file` with a CA still gets full verification of the chain, the server's name included.
#[tokio::test]
async fn verify_full_with_a_ca_file_still_checks_the_chain_and_the_name() {
    let moto = Moto::shared().await;
    let (good_dir, wrong_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let good = TestCa::create(good_dir.path());
    let key = std::fs::read_to_string(&good.key_file).expect("the key");
    let cert = std::fs::read_to_string(&good.cert_file).expect("the certificate");
    list_over_tls(&moto, &cert, &key, &good.ca_pem)
        .await
        .expect("a chain to the CA in the ca_file");
    let wrong = TestCa::create_for(wrong_dir.path(), "DNS:iam.example");
    let key = std::fs::read_to_string(&wrong.key_file).expect("the key");
    let cert = std::fs::read_to_string(&wrong.cert_file).expect("the certificate");
    let refused = list_over_tls(&moto, &cert, &key, &wrong.ca_pem)
        .await
        .expect_err("the certificate names another host");
    assert_certificate_refused(
        &refused,
        "does not name 127.0.0.1",
        moto.admin().secret.expose(),
    );
}
