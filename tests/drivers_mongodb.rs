//! The MongoDB driver against a private SecantusDB (MongoDB wire-compatible, SCRAM-SHA-256
//! users, `--auth`; a real mongod cannot be installed here): the chosen-secret contract on both
//! slots, dual-phase rotation, every refusal classified and changing nothing, no secret in
//! errors or traces, revoke, the TLS modes; then the real binary: kill -9 at every attempt
//! boundary, after which both stored credentials log in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::drivers::{
    AnyDriver, BuildError, ConnectionConfig, Credential, Driver as _, DriverErrorKind,
    DriverOptions, RotationDriver, Slot, TlsConfig, TlsMode,
};
use rotator::proto::rotation_parameters::Kind;
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    MongoDbCredentialsParameters, PasswordRequirements, RequiredCharacters, RotateSecretsRequest,
    RotationType,
};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_certificate_refused, assert_no_secret, assert_phase_span, captured_traces,
    check_contract, error_texts, start_trace_capture,
};
use rotator_testkit::local_server::{
    attempt_states, free_port, rotator_command, stored_passwords, wait_for_attempts_to_end,
    wait_serving,
};
use rotator_testkit::secantusdb::{
    ADMIN_PASSWORD, ADMIN_USER, DATABASE, ROOT_PASSWORD, ROOT_USER, Secantus,
};
use rotator_testkit::tcp_gate::TcpGate;
use rotator_testkit::test_ca;
use tonic::transport::Channel;

const ROTATION: &str = "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a55";
const ADMIN_ENV: &str = "MONGO_ADMIN";

fn connection(db: &Secantus) -> ConnectionConfig {
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port: db.port(),
        database: DATABASE.into(),
        admin_username: ADMIN_USER.into(),
        admin_password: SecretString::new(ADMIN_PASSWORD),
        tls: TlsConfig {
            mode: TlsMode::Disable,
            ca_pem: None,
        },
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn parameters(u1: &str, u2: &str) -> MongoDbCredentialsParameters {
    MongoDbCredentialsParameters {
        username1: u1.into(),
        username2: u2.into(),
        password_requirements: None,
    }
}

fn try_build(
    connection: ConnectionConfig,
    p: MongoDbCredentialsParameters,
    options: toml::Table,
) -> Result<RotationDriver, BuildError> {
    AnyDriver::build(
        ROTATION,
        connection,
        &Kind::MongodbCredentials(p),
        DriverOptions {
            options,
            ..DriverOptions::default()
        },
    )
}

fn build(connection: ConnectionConfig, p: MongoDbCredentialsParameters) -> RotationDriver {
    try_build(connection, p, toml::Table::new()).expect("a valid mongodb rotation")
}

/// Two fresh users in the database with known initial passwords.
async fn two_users(db: &Secantus) -> [Credential; 2] {
    let mut out = Vec::new();
    for slot in ["a", "b"] {
        let name = unique(&format!("app_{slot}"));
        let password = SecretString::new(format!("initial-{slot}-{}", uuid::Uuid::new_v4()));
        db.create_user(&name, password.expose()).await;
        out.push(Credential {
            id: name,
            secret: password,
        });
    }
    [out.remove(0), out.remove(0)]
}

async fn logs_in(db: &Secantus, c: &Credential) -> bool {
    db.login(&c.id, c.secret.expose()).await
}

fn setup(db: &Secantus, users: &[Credential; 2]) -> RotationDriver {
    build(connection(db), parameters(&users[0].id, &users[1].id))
}

#[tokio::test]
async fn the_contract_holds_on_both_slots_with_default_and_symbol_heavy_passwords() {
    let db = Secantus::shared().await;
    let users = two_users(&db).await;
    let rd = setup(&db, &users);
    let first = check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
    assert!(db.login(&first.id, first.secret.expose()).await);

    let mut p = parameters(&users[0].id, &users[1].id);
    p.password_requirements = Some(PasswordRequirements {
        length: 40,
        required: Some(RequiredCharacters {
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols: 20,
        }),
        allowed_symbols: Some("'\\$;-%_`{}\"=,@".into()),
    });
    let rd = build(connection(&db), p);
    let second = check_contract(&rd.driver, &rd.password_policy, Slot::Second).await;
    assert!(db.login(&second.id, second.secret.expose()).await);
    assert_phase_span("apply", "mongodb", &second.id);
}

#[tokio::test]
async fn rotating_both_slots_keeps_the_other_slot_and_kills_the_replaced_password() {
    let db = Secantus::shared().await;
    let users = two_users(&db).await;
    let RotationDriver {
        driver,
        password_policy,
    } = setup(&db, &users);
    let credential = |slot| Credential {
        id: driver.username_for(slot).to_owned(),
        secret: password_policy.generate(),
    };

    // Create: slot 0 gets P1; the user's initial password dies, slot 1's still works.
    let p1 = credential(Slot::First);
    driver.apply(&p1).await.expect("issue P1");
    driver.verify(&p1).await.expect("P1 logs in");
    assert!(
        !logs_in(&db, &users[0]).await,
        "slot 0's old password is dead"
    );
    assert!(logs_in(&db, &users[1]).await, "slot 1 untouched");
    // Rotation 1: slot 1 gets P2; P1 (now inactive) still logs in.
    let p2 = credential(Slot::Second);
    driver.apply(&p2).await.expect("rotate to P2");
    driver.verify(&p2).await.expect("P2 logs in");
    assert!(
        !logs_in(&db, &users[1]).await,
        "slot 1's old password is dead"
    );
    assert!(logs_in(&db, &p1).await, "P1 still logs in (dual phase)");
    // Rotation 2: slot 0 gets P3; P2 still logs in, P1 is dead.
    let p3 = credential(Slot::First);
    driver.apply(&p3).await.expect("rotate to P3");
    driver.verify(&p3).await.expect("P3 logs in");
    assert!(logs_in(&db, &p2).await, "P2 still logs in (dual phase)");
    let dead = driver.verify(&p1).await.expect_err("P1 must be dead");
    assert_eq!(dead.kind(), DriverErrorKind::LoginRejected);
    assert!(!logs_in(&db, &p1).await);

    // Idempotent: the same apply again changes nothing.
    driver.apply(&p3).await.expect("apply P3 again");
    assert!(logs_in(&db, &p3).await && logs_in(&db, &p2).await);
}

#[tokio::test]
async fn failures_are_classified_and_leave_the_password_unchanged() {
    start_trace_capture();
    let db = Secantus::shared().await;
    let users = two_users(&db).await;
    let rd = setup(&db, &users);
    let new = Credential {
        id: users[0].id.clone(),
        secret: rd.password_policy.generate(),
    };
    let mut errors = Vec::new();

    // Wrong admin password: permanent, and the admin's login is what failed.
    let mut bad_admin = connection(&db);
    bad_admin.admin_password = SecretString::new("not-the-admin-password");
    let rd_bad = build(bad_admin, parameters(&users[0].id, &users[1].id));
    let e = rd_bad.driver.apply(&new).await.expect_err("bad admin");
    assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");
    assert!(!e.is_transient());
    assert!(!e.may_have_changed_target());
    errors.push(e);
    let e = rd_bad
        .driver
        .probe()
        .await
        .expect_err("probe with a bad admin");
    assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");
    errors.push(e);

    // The target user does not exist: permanent.
    let missing = unique("missing");
    let rd_missing = build(connection(&db), parameters(&missing, &users[1].id));
    let e = rd_missing
        .driver
        .apply(&Credential {
            id: missing.clone(),
            secret: new.secret.clone(),
        })
        .await
        .expect_err("no such user");
    assert_eq!(e.kind(), DriverErrorKind::UserNotFound, "{e}");
    assert!(!e.is_transient());
    assert!(e.to_string().contains(&missing), "names the user: {e}");
    errors.push(e);

    // An admin without userAdmin (a readWrite user): permanent.
    let weak = unique("weak_admin");
    db.create_user(&weak, "weak-admin-Pw-1").await;
    let mut weak_conn = connection(&db);
    weak_conn.admin_username = weak;
    weak_conn.admin_password = SecretString::new("weak-admin-Pw-1");
    let rd_weak = build(weak_conn, parameters(&users[0].id, &users[1].id));
    let e = rd_weak.driver.apply(&new).await.expect_err("no privilege");
    assert_eq!(e.kind(), DriverErrorKind::PermissionDenied, "{e}");
    errors.push(e);

    // Nothing half-done: the old password still logs in, the new one does not.
    rd.driver
        .verify(&users[0])
        .await
        .expect("the initial password still works after every failure");
    let e = rd.driver.verify(&new).await.expect_err("never applied");
    assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
    errors.push(e);

    let texts = error_texts(&errors);
    let admin = SecretString::new(ADMIN_PASSWORD);
    let wrong_admin = SecretString::new("not-the-admin-password");
    let secrets = [&new.secret, &admin, &wrong_admin, &users[0].secret];
    assert_no_secret(&secrets, texts.iter().map(String::as_str));
    assert_no_secret(&secrets, [captured_traces().as_str()]);
    assert!(
        captured_traces().contains("error.type=\"DRIVER_ADMIN_LOGIN_REJECTED\""),
        "a failed phase records error.type on its span"
    );
}

/// Nothing listens on the port: a transient failure before anything was sent (after the
/// upstream's 10 s server selection timeout).
#[tokio::test]
async fn an_unreachable_server_is_transient_and_changed_nothing() {
    let db = Secantus::shared().await;
    let mut closed = connection(&db);
    closed.port = free_port();
    let rd = build(closed, parameters("app_x", "app_y"));
    let e = rd
        .driver
        .apply(&Credential {
            id: "app_x".into(),
            secret: rd.password_policy.generate(),
        })
        .await
        .expect_err("no server");
    assert_eq!(e.kind(), DriverErrorKind::Unreachable, "{e}");
    assert!(e.is_transient());
    assert!(!e.may_have_changed_target(), "refused before sending");
}

#[tokio::test]
async fn revoke_kills_the_password_and_is_idempotent() {
    let db = Secantus::shared().await;
    let users = two_users(&db).await;
    let rd = setup(&db, &users);
    let c = check_contract(&rd.driver, &rd.password_policy, Slot::Second).await;
    rd.driver.revoke(&c.id).await.expect("revoke");
    rd.driver.revoke(&c.id).await.expect("revoke again");
    let e = rd.driver.verify(&c).await.expect_err("revoked");
    assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
    assert!(!db.login(&c.id, c.secret.expose()).await);
    assert!(
        db.login(&users[0].id, users[0].secret.expose()).await,
        "the other user is untouched"
    );
}

/// An admin kept in `admin` (here root) logs in there with `admin_auth_source`; the users still
/// live in, and authenticate against, the connection's database.
#[tokio::test]
async fn an_admin_of_the_admin_database_rotates_with_admin_auth_source() {
    let db = Secantus::shared().await;
    let users = two_users(&db).await;
    let mut c = connection(&db);
    c.admin_username = ROOT_USER.into();
    c.admin_password = SecretString::new(ROOT_PASSWORD);
    let mut options = toml::Table::new();
    options.insert("admin_auth_source".into(), "admin".into());
    let rd = try_build(c.clone(), parameters(&users[0].id, &users[1].id), options)
        .expect("a valid rotation");
    rd.driver.probe().await.expect("root logs in against admin");
    check_contract(&rd.driver, &rd.password_policy, Slot::First).await;

    // Without the option root would authenticate against the users' database, where it is not.
    let rd = build(c, parameters(&users[0].id, &users[1].id));
    let e = rd.driver.probe().await.expect_err("root is not in appdb");
    assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");

    let mut bad = toml::Table::new();
    bad.insert("admin_auth_source".into(), "".into());
    assert!(try_build(connection(&db), parameters("a", "b"), bad).is_err());
    let mut unknown = toml::Table::new();
    unknown.insert("auth_source".into(), "admin".into());
    assert!(try_build(connection(&db), parameters("a", "b"), unknown).is_err());
}

/// The least privilege documented for the admin: a custom role with only the password action
/// on the database is enough for apply and revoke (the role also names SecantusDB's spelling
/// of the action, see `create_password_admin`).
#[tokio::test]
async fn an_admin_with_only_change_password_rotates() {
    let db = Secantus::shared().await;
    let users = two_users(&db).await;
    let admin = unique("pw_admin");
    db.create_password_admin(&admin, "Pw-Admin-1", &unique("rotatorChangePassword"))
        .await;
    let mut c = connection(&db);
    c.admin_username = admin;
    c.admin_password = SecretString::new("Pw-Admin-1");
    let rd = build(c, parameters(&users[0].id, &users[1].id));
    rd.driver.probe().await.expect("the admin logs in");
    let kept = check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
    rd.driver.revoke(&kept.id).await.expect("revoke");
    assert!(!logs_in(&db, &kept).await, "revoked");
}

#[tokio::test]
async fn unsafe_requests_are_refused_before_anything_is_sent() {
    let db = Secantus::shared().await;
    let users = two_users(&db).await;
    let rd = setup(&db, &users);
    rd.driver.probe().await.expect("the admin logs in");

    let as_admin = Credential {
        id: ADMIN_USER.into(),
        secret: rd.password_policy.generate(),
    };
    let e = rd
        .driver
        .apply(&as_admin)
        .await
        .expect_err("never the admin");
    assert_eq!(e.kind(), DriverErrorKind::InvalidInput);
    let e = rd
        .driver
        .revoke("someone_else")
        .await
        .expect_err("not a rotation user");
    assert_eq!(e.kind(), DriverErrorKind::InvalidInput);
    let same = parameters(&users[0].id, &users[0].id);
    assert!(try_build(connection(&db), same, toml::Table::new()).is_err());
    let mut no_db = connection(&db);
    no_db.database = String::new();
    let e = try_build(
        no_db,
        parameters(&users[0].id, &users[1].id),
        toml::Table::new(),
    )
    .expect_err("the users' database is required");
    assert!(matches!(e, BuildError::Invalid(e) if e.kind() == DriverErrorKind::InvalidInput));

    // Nothing reached the users.
    rd.driver.verify(&users[0]).await.expect("unchanged");
    rd.driver.verify(&users[1]).await.expect("unchanged");
}

/// A TLS server with a certificate from a private CA: `VerifyFull` with the CA and `Require`
/// work; `VerifyFull` against the driver's built-in roots is a permanent TLS failure.
#[tokio::test]
async fn tls_modes_check_the_certificate_as_configured() {
    let db = Secantus::start(true).await;
    let users = two_users(&db).await;
    let ca_pem = db.ca().expect("a TLS server").ca_pem.clone();
    let with_tls = |mode, ca_pem: Option<String>| {
        let mut c = connection(&db);
        c.tls = TlsConfig { mode, ca_pem };
        build(c, parameters(&users[0].id, &users[1].id))
    };

    let verified = with_tls(TlsMode::VerifyFull, Some(ca_pem));
    check_contract(&verified.driver, &verified.password_policy, Slot::First).await;
    let encrypted = with_tls(TlsMode::Require, None);
    check_contract(&encrypted.driver, &encrypted.password_policy, Slot::Second).await;

    let untrusted = with_tls(TlsMode::VerifyFull, None);
    let e = untrusted
        .driver
        .probe()
        .await
        .expect_err("the CA is not a built-in root");
    assert_eq!(e.kind(), DriverErrorKind::Tls, "{e}");
    assert!(!e.is_transient());

    let plain = with_tls(TlsMode::Disable, None);
    let e = plain
        .driver
        .probe()
        .await
        .expect_err("the server wants TLS");
    assert!(e.is_transient(), "{e}");
}

/// A driver for `db`'s `users` with this TLS mode and CA file.
fn with_tls(
    db: &Secantus,
    users: &[Credential; 2],
    mode: TlsMode,
    ca_pem: Option<String>,
) -> RotationDriver {
    let mut c = connection(db);
    c.tls = TlsConfig { mode, ca_pem };
    build(c, parameters(&users[0].id, &users[1].id))
}

/// A self-signed (CA:TRUE) server certificate given as the `ca_file` is pinned, as `openssl req
/// -x509` and rcgen make it; another self-signed certificate is a TLS failure naming `ca_file`.
/// (The driver's rustls backend refused both with `CaUsedAsEndEntity`.)
#[tokio::test]
async fn verify_full_pins_a_self_signed_certificate_given_as_the_ca_file() {
    let (dir, other_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let other = test_ca::SelfSigned::rcgen(other_dir.path());
    for made in [
        test_ca::SelfSigned::openssl(dir.path()),
        test_ca::SelfSigned::rcgen(dir.path()),
    ] {
        let db = Secantus::start_with_certificate(&made.cert_file, &made.key_file).await;
        let users = two_users(&db).await;
        let pinned = with_tls(&db, &users, TlsMode::VerifyFull, Some(made.pem.clone()));
        check_contract(&pinned.driver, &pinned.password_policy, Slot::First).await;

        let refused = with_tls(&db, &users, TlsMode::VerifyFull, Some(other.pem.clone()))
            .driver
            .probe()
            .await
            .expect_err("another self-signed certificate");
        assert_certificate_refused(
            &refused,
            "put that exact certificate in ca_file",
            ADMIN_PASSWORD,
        );
    }
}

/// A `ca_file` with a CA still gets full verification of the chain, the server's name included;
/// so does a pinned self-signed certificate.
#[tokio::test]
async fn verify_full_with_a_ca_file_still_checks_the_server_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = test_ca::TestCa::create_for(dir.path(), "DNS:db.example");
    let db = Secantus::start_with_certificate(&ca.cert_file, &ca.key_file).await;
    let admin_only = [
        Credential {
            id: "app_a".into(),
            secret: SecretString::new("unused-a"),
        },
        Credential {
            id: "app_b".into(),
            secret: SecretString::new("unused-b"),
        },
    ];
    let refused = with_tls(
        &db,
        &admin_only,
        TlsMode::VerifyFull,
        Some(ca.ca_pem.clone()),
    )
    .driver
    .probe()
    .await
    .expect_err("the certificate names another host");
    assert_certificate_refused(
        &refused,
        "connect with a host name the certificate names",
        ADMIN_PASSWORD,
    );

    // OpenSSL checks the name of a pinned certificate too (rustls' pinning does not).
    let named_dir = tempfile::tempdir().expect("a temp dir");
    let named = test_ca::SelfSigned::openssl_for(named_dir.path(), "DNS:db.example");
    let db = Secantus::start_with_certificate(&named.cert_file, &named.key_file).await;
    let refused = with_tls(
        &db,
        &admin_only,
        TlsMode::VerifyFull,
        Some(named.pem.clone()),
    )
    .driver
    .probe()
    .await
    .expect_err("the pinned certificate names another host");
    assert_certificate_refused(
        &refused,
        "connect with a host name the certificate names",
        ADMIN_PASSWORD,
    );
}

// === the real binary ===

fn config(dir: &Path, port: u16, users: (&str, &str)) -> PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "mongo"
app = "mongodb"
host = "127.0.0.1"
port = {port}
database = "{DATABASE}"
username = "{ADMIN_USER}"
password = "env:{ADMIN_ENV}"
tls = "disable"

[[rotations]]
id = "{ROTATION}"
name = "app-mongo"
type = "mongodb-credentials"
connection = "mongo"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = {{ username1 = "{}", username2 = "{}" }}
secrets_mapping = {{ username = "MONGODB_DB_USERNAME", password = "MONGODB_DB_PASSWORD" }}
"#,
        users.0, users.1
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn spawn(
    config: &Path,
    data_dir: &Path,
    port: u16,
    failpoint: Option<&str>,
) -> tokio::process::Child {
    let mut command = rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        config,
        data_dir,
        port,
        (ADMIN_ENV, ADMIN_PASSWORD),
    );
    if let Some(fp) = failpoint {
        command.env("ROTATOR_FAILPOINT", fp);
    }
    command.spawn().expect("spawn rotator")
}

/// The stored credentials: (active index, [(username, password)]).
async fn credentials(channel: &Channel) -> (u32, Vec<(String, String)>) {
    stored_passwords(channel, RotationType::MongodbCredentials, ROTATION).await
}

/// Kill -9 (an abort) right after each attempt boundary, twice each; after every restart and
/// background recovery both stored credentials log in and every attempt ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_boundary_loses_no_credential() {
    const BOUNDARIES: [&str; 4] = ["prepared", "applied", "verified", "committed"];
    let db = Secantus::shared().await;
    let users = two_users(&db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), db.port(), (&users[0].id, &users[1].id));
    let data_dir = dir.path().join("data");
    let mut crashes = 0;
    let mut seen = std::collections::HashSet::new();
    for (run, boundary) in BOUNDARIES.iter().chain(&BOUNDARIES).enumerate() {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut child = spawn(&config, &data_dir, port, Some(boundary));
        // The failpoint may fire during start-up (first credential, recovery) or on the rotation.
        let ready = tokio::select! {
            _ = child.wait() => None,
            channel = wait_serving(&url, Duration::from_secs(60)) => Some(channel),
        };
        if let Some(channel) = ready {
            let _ = SecretRotationServiceClient::new(channel)
                .rotate_secrets(RotateSecretsRequest {
                    r#type: RotationType::MongodbCredentials as i32,
                    rotation_id: ROTATION.to_owned(),
                })
                .await;
        }
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("the failpoint ends the process")
            .expect("wait");
        if !status.success() {
            crashes += 1;
        }

        let port = free_port();
        let mut clean = spawn(&config, &data_dir, port, None);
        let channel =
            wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
        wait_for_attempts_to_end(&data_dir, Duration::from_secs(120)).await;
        let (active, creds) = credentials(&channel).await;
        assert!(
            !creds.is_empty(),
            "run {run} ({boundary}): a credential is issued"
        );
        assert!((active as usize) < creds.len());
        for (user, password) in &creds {
            assert!(
                db.login(user, password).await,
                "run {run} ({boundary}): the stored credential of {user} does not log in"
            );
            seen.insert(password.clone());
        }
        clean.start_kill().expect("kill");
        let _ = clean.wait().await;
        let states = attempt_states(&data_dir).await;
        assert!(
            states.iter().all(|s| s == "committed" || s == "failed"),
            "run {run} ({boundary}): open attempts remain: {states:?}"
        );
    }
    assert!(crashes >= 4, "the failpoints fired ({crashes} crashes)");
    // Rotations really happened: both slots hold credentials and they changed along the way.
    assert!(
        seen.len() >= 4,
        "only {} distinct stored passwords over the runs",
        seen.len()
    );
    for user in &users {
        assert!(
            !db.login(&user.id, user.secret.expose()).await,
            "the initial password of {} was replaced",
            user.id
        );
    }
}

/// Kill -9 at APPLIED, restart while MongoDB refuses connections: the attempt stays open (not
/// FAILED, which would leave the slot's stored password dead, since the server may hold the
/// candidate); once MongoDB answers, recovery verifies and commits, and both stored credentials
/// log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_applied_rolls_forward_once_mongodb_returns() {
    let db = Secantus::shared().await;
    let users = two_users(&db).await;
    let gate = TcpGate::start(db.port()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), gate.port(), (&users[0].id, &users[1].id));
    let data_dir = dir.path().join("data");
    let rotate = |channel| async move {
        SecretRotationServiceClient::new(channel)
            .rotate_secrets(RotateSecretsRequest {
                r#type: RotationType::MongodbCredentials as i32,
                rotation_id: ROTATION.to_owned(),
            })
            .await
    };

    let port = free_port();
    let mut first = spawn(&config, &data_dir, port, None);
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
    rotate(channel)
        .await
        .expect("slot 1 after the first credential");
    first.start_kill().expect("kill");
    let _ = first.wait().await;

    let port = free_port();
    let mut crashing = spawn(&config, &data_dir, port, Some("applied"));
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
    let _ = rotate(channel).await;
    let status = tokio::time::timeout(Duration::from_secs(60), crashing.wait())
        .await
        .expect("the failpoint ends the process")
        .expect("wait");
    assert!(!status.success(), "the process aborted at APPLIED");

    gate.shut();
    let port = free_port();
    let _restarted = spawn(&config, &data_dir, port, None);
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
    let states = attempt_states(&data_dir).await;
    assert!(
        states.iter().any(|s| s == "applied"),
        "serving while the attempt waits for MongoDB: {states:?}"
    );
    assert!(
        !states.iter().any(|s| s == "failed"),
        "never FAILED while the target may hold the candidate: {states:?}"
    );

    gate.open().await;
    wait_for_attempts_to_end(&data_dir, Duration::from_secs(180)).await;
    let (_, creds) = credentials(&channel).await;
    assert_eq!(creds.len(), 2);
    for (user, password) in &creds {
        assert!(db.login(user, password).await, "{user} logs in");
    }
    assert!(
        attempt_states(&data_dir)
            .await
            .iter()
            .all(|s| s == "committed"),
        "nothing failed"
    );
}
