//! The Redis driver against private `redis-server`s with ACL users (with and without an ACL
//! file), started by the test.

use std::collections::BTreeSet;

use rotator::drivers::{
    AnyDriver, BuildError, ConnectionConfig, Credential, Driver, DriverErrorKind, DriverOptions,
    RotationDriver, Slot, TlsConfig, TlsMode,
};
use rotator::proto::rotation_parameters::Kind;
use rotator::proto::{PasswordRequirements, RedisCredentialsParameters, RequiredCharacters};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_certificate_refused, assert_no_secret, captured_traces, check_contract, error_texts,
    start_trace_capture,
};
use rotator_testkit::private_redis::{ADMIN_PASSWORD, ADMIN_USER, PrivateRedis};
use rotator_testkit::test_ca;
use sha2::Digest as _;

const SCOPE: &str = "~app:* +@read +@write";

fn connection(port: u16) -> ConnectionConfig {
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port,
        database: String::new(),
        admin_username: ADMIN_USER.into(),
        admin_password: SecretString::new(ADMIN_PASSWORD),
        tls: TlsConfig {
            mode: TlsMode::Disable,
            ca_pem: None,
        },
    }
}

fn parameters(scope: &str) -> RedisCredentialsParameters {
    RedisCredentialsParameters {
        permission_scope: scope.into(),
        password_requirements: None,
    }
}

/// A driver for a fresh rotation id (so fresh slot users) on `port`.
fn build(
    connection: ConnectionConfig,
    p: RedisCredentialsParameters,
) -> Result<RotationDriver, BuildError> {
    AnyDriver::build(
        &uuid::Uuid::new_v4().to_string(),
        connection,
        &Kind::RedisCredentials(p),
        DriverOptions::default(),
    )
}

fn acl_users(server: &PrivateRedis) -> BTreeSet<String> {
    let mut admin = server.admin();
    redis::cmd("ACL")
        .arg("USERS")
        .query::<Vec<String>>(&mut admin)
        .expect("ACL USERS")
        .into_iter()
        .collect()
}

#[tokio::test]
async fn the_contract_holds_on_both_slots_with_default_and_symbol_heavy_passwords() {
    let server = PrivateRedis::shared();
    let rd = build(connection(server.port()), parameters(SCOPE)).expect("valid");
    check_contract(&rd.driver, &rd.password_policy, Slot::First).await;

    let mut p = parameters(SCOPE);
    p.password_requirements = Some(PasswordRequirements {
        length: 40,
        required: Some(RequiredCharacters {
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols: 24,
        }),
        allowed_symbols: Some("<>#!\\'%`~".into()),
    });
    let rd = build(connection(server.port()), p).expect("valid");
    check_contract(&rd.driver, &rd.password_policy, Slot::Second).await;
}

#[tokio::test]
async fn two_rotations_keep_the_previous_credential_and_kill_the_one_before_without_user_churn() {
    let server = PrivateRedis::shared();
    let RotationDriver {
        driver,
        password_policy,
    } = build(connection(server.port()), parameters(SCOPE)).expect("valid");
    let credential = |slot| Credential {
        id: driver.username_for(slot).to_owned(),
        secret: password_policy.generate(),
    };
    let p1 = credential(Slot::First);
    driver.apply(&p1).await.expect("issue P1");
    let p2 = credential(Slot::Second);
    driver.apply(&p2).await.expect("rotate to P2");
    driver.verify(&p2).await.expect("P2 logs in");
    driver
        .verify(&p1)
        .await
        .expect("P1 still logs in (dual phase)");
    let p3 = credential(Slot::First);
    driver.apply(&p3).await.expect("rotate to P3");
    driver.verify(&p3).await.expect("P3 logs in");
    driver
        .verify(&p2)
        .await
        .expect("P2 still logs in (dual phase)");
    let dead = driver.verify(&p1).await.expect_err("P1 must be dead");
    assert_eq!(dead.kind(), DriverErrorKind::LoginRejected);

    // More rotations never add users: exactly the two slot users exist for this rotation.
    let mut slot = Slot::Second;
    for _ in 0..4 {
        driver.apply(&credential(slot)).await.expect("rotate");
        slot = slot.other();
    }
    let mine: Vec<String> = acl_users(&server)
        .into_iter()
        .filter(|u| u == driver.username_for(Slot::First) || u == driver.username_for(Slot::Second))
        .collect();
    assert_eq!(mine.len(), 2, "one ACL user per slot, never more");
}

#[tokio::test]
async fn the_acl_file_holds_only_a_hash_and_survives_a_restart() {
    let mut server = PrivateRedis::start(true);
    let rd = build(connection(server.port()), parameters(SCOPE)).expect("valid");
    let c = Credential {
        id: rd.driver.username_for(Slot::First).to_owned(),
        secret: rd.password_policy.generate(),
    };
    rd.driver.apply(&c).await.expect("apply");

    let file = server.acl_file();
    let hash = hex(&sha2::Sha256::digest(c.secret.expose().as_bytes()));
    let line = file
        .lines()
        .find(|l| l.starts_with(&format!("user {} ", c.id)))
        .expect("ACL SAVE wrote the slot user");
    assert!(line.contains(&format!("#{hash}")), "{line}");
    assert!(line.contains("~app:*"), "the scope is saved: {line}");
    assert_no_secret(&[&c.secret], [file.as_str()]);

    server.restart();
    rd.driver
        .verify(&c)
        .await
        .expect("the credential survives a restart (it was saved)");
}

#[tokio::test]
async fn a_server_without_an_acl_file_still_rotates() {
    let server = PrivateRedis::start(false);
    let rd = build(connection(server.port()), parameters(SCOPE)).expect("valid");
    check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
}

#[tokio::test]
async fn the_permission_scope_is_what_the_user_gets() {
    let server = PrivateRedis::shared();
    let rd = build(connection(server.port()), parameters(SCOPE)).expect("valid");
    let c = Credential {
        id: rd.driver.username_for(Slot::Second).to_owned(),
        secret: rd.password_policy.generate(),
    };
    rd.driver.apply(&c).await.expect("apply");
    let mut conn = server
        .connect(&c.id, c.secret.expose())
        .expect("the slot user logs in");
    redis::cmd("SET")
        .arg("app:key")
        .arg("1")
        .query::<()>(&mut conn)
        .expect("inside the scope");
    let denied = redis::cmd("SET")
        .arg("other:key")
        .arg("1")
        .query::<()>(&mut conn)
        .expect_err("outside the scope");
    assert_eq!(denied.code(), Some("NOPERM"));
    let denied = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query::<()>(&mut conn)
        .expect_err("not a granted command");
    assert_eq!(denied.code(), Some("NOPERM"));
}

#[tokio::test]
async fn failures_are_classified_and_leave_the_password_unchanged() {
    start_trace_capture();
    let server = PrivateRedis::shared();
    let rotation_id = uuid::Uuid::new_v4().to_string();
    let build_for = |c: ConnectionConfig, scope: &str| {
        AnyDriver::build(
            &rotation_id,
            c,
            &Kind::RedisCredentials(parameters(scope)),
            DriverOptions::default(),
        )
        .expect("valid")
    };
    let rd = build_for(connection(server.port()), SCOPE);
    let old = Credential {
        id: rd.driver.username_for(Slot::First).to_owned(),
        secret: rd.password_policy.generate(),
    };
    rd.driver.apply(&old).await.expect("the initial credential");
    let new = Credential {
        id: old.id.clone(),
        secret: rd.password_policy.generate(),
    };
    let mut errors = Vec::new();

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let e = build_for(connection(closed), SCOPE)
        .driver
        .apply(&new)
        .await
        .expect_err("no server");
    assert_eq!(e.kind(), DriverErrorKind::Unreachable, "{e}");
    assert!(e.is_transient());
    errors.push(e);

    let mut bad_admin = connection(server.port());
    bad_admin.admin_password = SecretString::new("not-the-admin-password");
    let bad = build_for(bad_admin, SCOPE).driver;
    let e = bad.apply(&new).await.expect_err("bad admin");
    assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");
    assert!(!e.is_transient());
    errors.push(e);
    let e = bad.probe().await.expect_err("probe with a bad admin");
    assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");

    // A rule Redis does not know: refused as a whole, nothing changes.
    let e = build_for(connection(server.port()), "~app:* +@nonsense")
        .driver
        .apply(&new)
        .await
        .expect_err("unknown ACL category");
    assert_eq!(e.kind(), DriverErrorKind::InvalidInput, "{e}");
    assert!(!e.is_transient());
    errors.push(e);

    // The slot user of another rotation does not exist: its login is refused.
    let ghost = build_for(connection(server.port()), SCOPE);
    let other = build(connection(server.port()), parameters(SCOPE)).expect("valid");
    let e = ghost
        .driver
        .verify(&Credential {
            id: other.driver.username_for(Slot::First).to_owned(),
            secret: new.secret.clone(),
        })
        .await
        .expect_err("no such user");
    assert_eq!(e.kind(), DriverErrorKind::LoginRejected, "{e}");
    errors.push(e);

    rd.driver
        .verify(&old)
        .await
        .expect("the previous password still works after every failure");
    let e = rd.driver.verify(&new).await.expect_err("never applied");
    assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
    errors.push(e);

    let texts = error_texts(&errors);
    assert_no_secret(
        &[&new.secret, &old.secret],
        texts.iter().map(String::as_str),
    );
    assert_no_secret(&[&new.secret, &old.secret], [captured_traces().as_str()]);
}

#[tokio::test]
async fn revoke_deletes_the_slot_user_and_is_idempotent() {
    let server = PrivateRedis::shared();
    let rd = build(connection(server.port()), parameters(SCOPE)).expect("valid");
    let c = check_contract(&rd.driver, &rd.password_policy, Slot::Second).await;
    rd.driver.revoke(&c.id).await.expect("revoke");
    rd.driver.revoke(&c.id).await.expect("revoke again");
    let e = rd.driver.verify(&c).await.expect_err("revoked");
    assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
    assert!(!acl_users(&server).contains(&c.id));
}

/// What dies when (docs/drivers.md): Redis checks a password only at AUTH, so a connection
/// opened with the previous password keeps working; deleting the user closes it.
#[tokio::test]
async fn an_open_connection_outlives_a_password_change_but_not_a_revoke() {
    let server = PrivateRedis::shared();
    let rd = build(connection(server.port()), parameters(SCOPE)).expect("valid");
    let user = rd.driver.username_for(Slot::First).to_owned();
    let first = Credential {
        id: user.clone(),
        secret: rd.password_policy.generate(),
    };
    rd.driver.apply(&first).await.expect("apply");
    let mut open = server
        .connect(&user, first.secret.expose())
        .expect("log in");
    let second = Credential {
        id: user.clone(),
        secret: rd.password_policy.generate(),
    };
    rd.driver.apply(&second).await.expect("change the password");
    redis::cmd("GET")
        .arg("app:x")
        .query::<Option<String>>(&mut open)
        .expect("the open connection still works after the password change");
    rd.driver.revoke(&user).await.expect("revoke");
    redis::cmd("GET")
        .arg("app:x")
        .query::<Option<String>>(&mut open)
        .expect_err("deleting the user closed its connection");
}

#[tokio::test]
async fn unsafe_requests_are_refused_before_anything_is_sent() {
    let server = PrivateRedis::shared();
    let rd = build(connection(server.port()), parameters(SCOPE)).expect("valid");
    rd.driver.probe().await.expect("the admin logs in");
    for user in [ADMIN_USER, "default", "someone-else"] {
        let e = rd
            .driver
            .apply(&Credential {
                id: user.into(),
                secret: rd.password_policy.generate(),
            })
            .await
            .expect_err("not a slot user");
        assert_eq!(e.kind(), DriverErrorKind::InvalidInput, "{user}");
    }
    for scope in ["", "~* nopass", "~* >extra-password", "~* off"] {
        assert!(
            matches!(
                build(connection(server.port()), parameters(scope)),
                Err(BuildError::Invalid(_))
            ),
            "{scope:?}"
        );
    }
    let users = [ADMIN_USER.to_owned(), "x".to_owned()];
    let built = AnyDriver::build(
        "id",
        connection(server.port()),
        &Kind::RedisCredentials(parameters(SCOPE)),
        DriverOptions {
            usernames: Some(users),
            ..DriverOptions::default()
        },
    );
    assert!(matches!(built, Err(BuildError::Invalid(_))));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The TLS modes against a TLS-only server with a certificate from a private CA.
#[tokio::test]
async fn tls_modes_check_the_certificate_as_configured() {
    let certs_dir = tempfile::tempdir().expect("a temp dir");
    let ca = test_ca::TestCa::create(certs_dir.path());
    let server = PrivateRedis::start_with_tls(
        ca.cert_file.clone(),
        ca.key_file.clone(),
        ca.ca_file.clone(),
    );
    let verified = with_tls(&server, TlsMode::VerifyFull, Some(ca.ca_pem.clone()));
    check_contract(&verified.driver, &verified.password_policy, Slot::First).await;
    let encrypted = with_tls(&server, TlsMode::Require, None);
    check_contract(&encrypted.driver, &encrypted.password_policy, Slot::Second).await;

    let untrusted = with_tls(&server, TlsMode::VerifyFull, None);
    let e = untrusted
        .driver
        .probe()
        .await
        .expect_err("the CA is not a system root");
    assert_eq!(e.kind(), DriverErrorKind::Tls, "{e}");
    assert!(!e.is_transient());
}

/// A driver for `server` with this TLS mode and CA file.
fn with_tls(server: &PrivateRedis, mode: TlsMode, ca_pem: Option<String>) -> RotationDriver {
    let mut c = connection(server.port());
    c.tls = TlsConfig { mode, ca_pem };
    build(c, parameters(SCOPE)).expect("valid")
}

/// A self-signed (CA:TRUE) server certificate given as the `ca_file` is pinned, as `openssl req
/// -x509` and rcgen make it; another self-signed certificate is a TLS failure naming `ca_file`.
#[tokio::test]
async fn verify_full_pins_a_self_signed_certificate_given_as_the_ca_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let other_dir = tempfile::tempdir().expect("a temp dir");
    let other = test_ca::SelfSigned::rcgen(other_dir.path());
    for made in [
        test_ca::SelfSigned::openssl(dir.path()),
        test_ca::SelfSigned::rcgen(dir.path()),
    ] {
        let server = PrivateRedis::start_with_tls(
            made.cert_file.clone(),
            made.key_file.clone(),
            made.cert_file.clone(),
        );
        let pinned = with_tls(&server, TlsMode::VerifyFull, Some(made.pem.clone()));
        check_contract(&pinned.driver, &pinned.password_policy, Slot::First).await;

        let refused = with_tls(&server, TlsMode::VerifyFull, Some(other.pem.clone()))
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

/// A `ca_file` with a CA still gets full verification of the chain, the server's name included.
#[tokio::test]
async fn verify_full_with_a_ca_file_still_checks_the_server_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = test_ca::TestCa::create_for(dir.path(), "DNS:redis.example");
    let server = PrivateRedis::start_with_tls(
        ca.cert_file.clone(),
        ca.key_file.clone(),
        ca.ca_file.clone(),
    );
    let refused = with_tls(&server, TlsMode::VerifyFull, Some(ca.ca_pem.clone()))
        .driver
        .probe()
        .await
        .expect_err("the certificate names another host");
    assert_certificate_refused(&refused, "does not name 127.0.0.1", ADMIN_PASSWORD);
    // The same server is accepted under `require` (encrypted, not verified).
    with_tls(&server, TlsMode::Require, None)
        .driver
        .probe()
        .await
        .expect("require does not check the certificate");
}
