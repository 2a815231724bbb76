//! The PostgreSQL driver against a private PostgreSQL 15 cluster with `scram-sha-256` host auth
//! (started by the test; the machine's shared server trusts every password and proves nothing).

use std::sync::Arc;

use rotator::drivers::ConnectionShared;
use rotator::drivers::quote::{pg_identifier, pg_literal};
use rotator::drivers::{
    AnyDriver, BuildError, ConnectionConfig, Credential, Driver, DriverErrorKind, DriverOptions,
    RotationDriver, Slot, TlsConfig, TlsMode, scram,
};
use rotator::proto::rotation_parameters::Kind;
use rotator::proto::{PasswordRequirements, RequiredCharacters, SqlCredentialsParameters};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_certificate_refused, assert_no_secret, captured_traces, check_contract, error_texts,
    start_trace_capture,
};
use rotator_testkit::private_postgres::{ADMIN_PASSWORD, ADMIN_USER, PrivatePostgres};
use rotator_testkit::test_ca;
use sqlx::{AssertSqlSafe, Row as _};

fn connection(pg: &PrivatePostgres) -> ConnectionConfig {
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port: pg.port(),
        database: "postgres".into(),
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

fn parameters(u1: &str, u2: &str) -> SqlCredentialsParameters {
    SqlCredentialsParameters {
        username1: u1.into(),
        username2: u2.into(),
        rotation_statement: None,
        password_requirements: None,
    }
}

fn build(connection: ConnectionConfig, p: SqlCredentialsParameters) -> RotationDriver {
    AnyDriver::build(
        "3f2c1b8e-0000-4000-8000-000000000001",
        connection,
        &Kind::PostgresCredentials(p),
        DriverOptions::default(),
    )
    .expect("a valid postgres rotation")
}

/// Two fresh LOGIN roles with known initial passwords.
async fn two_roles(pg: &PrivatePostgres) -> [Credential; 2] {
    let mut out = Vec::new();
    for slot in ["a", "b"] {
        let name = unique(&format!("app_{slot}"));
        let password = SecretString::new(format!("initial-{slot}-{}", uuid::Uuid::new_v4()));
        pg.create_role(&name, password.expose()).await;
        out.push(Credential {
            id: name,
            secret: password,
        });
    }
    [out.remove(0), out.remove(0)]
}

fn setup(pg: &Arc<PrivatePostgres>, roles: &[Credential; 2]) -> RotationDriver {
    build(connection(pg), parameters(&roles[0].id, &roles[1].id))
}

#[tokio::test]
async fn the_contract_holds_on_both_slots_with_default_and_symbol_heavy_passwords() {
    let pg = PrivatePostgres::shared();
    let roles = two_roles(&pg).await;
    let rd = setup(&pg, &roles);
    check_contract(&rd.driver, &rd.password_policy, Slot::First).await;

    let mut p = parameters(&roles[0].id, &roles[1].id);
    p.password_requirements = Some(PasswordRequirements {
        length: 40,
        required: Some(RequiredCharacters {
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols: 20,
        }),
        allowed_symbols: Some("'\\$;-%_`{}".into()),
    });
    let rd = build(connection(&pg), p);
    check_contract(&rd.driver, &rd.password_policy, Slot::Second).await;
}

#[tokio::test]
async fn two_rotations_keep_the_previous_credential_and_kill_the_one_before() {
    let pg = PrivatePostgres::shared();
    let roles = two_roles(&pg).await;
    let RotationDriver {
        driver,
        password_policy,
    } = setup(&pg, &roles);
    let credential = |slot| Credential {
        id: driver.username_for(slot).to_owned(),
        secret: password_policy.generate(),
    };

    // Create: slot 0 gets P1.
    let p1 = credential(Slot::First);
    driver.apply(&p1).await.expect("issue P1");
    // Rotation 1: slot 1 gets P2; P1 (now inactive) still logs in.
    let p2 = credential(Slot::Second);
    driver.apply(&p2).await.expect("rotate to P2");
    driver.verify(&p2).await.expect("P2 logs in");
    driver
        .verify(&p1)
        .await
        .expect("P1 still logs in (dual phase)");
    // Rotation 2: slot 0 gets P3; P2 still logs in, P1 is dead.
    let p3 = credential(Slot::First);
    driver.apply(&p3).await.expect("rotate to P3");
    driver.verify(&p3).await.expect("P3 logs in");
    driver
        .verify(&p2)
        .await
        .expect("P2 still logs in (dual phase)");
    let dead = driver.verify(&p1).await.expect_err("P1 must be dead");
    assert_eq!(dead.kind(), DriverErrorKind::LoginRejected);
}

#[tokio::test]
async fn only_a_scram_verifier_reaches_the_server() {
    let pg = PrivatePostgres::shared();
    let roles = two_roles(&pg).await;
    let rd = setup(&pg, &roles);
    let c = Credential {
        id: roles[0].id.clone(),
        secret: rd.password_policy.generate(),
    };
    rd.driver.apply(&c).await.expect("apply");

    let log = pg.server_log();
    assert!(
        log.lines().any(|l| l.contains("ALTER ROLE")
            && l.contains(&c.id)
            && l.contains("PASSWORD 'SCRAM-SHA-256$4096:")),
        "the server log shows the ALTER ROLE with a verifier"
    );
    assert_no_secret(&[&c.secret], [log.as_str()]);

    let mut su = pg.superuser().await;
    let stored: String = sqlx::query("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(&c.id)
        .fetch_one(&mut su)
        .await
        .expect("the role's verifier")
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "stored as SCRAM");
}

/// The verifier computed here equals the one PostgreSQL computes itself for the same password,
/// salt and iteration count.
#[tokio::test]
async fn the_client_side_verifier_equals_the_servers_own() {
    let pg = PrivatePostgres::shared();
    let name = unique("scram");
    let password = "Pencil-'\\-~!*-0123456789-xyzXYZ";
    pg.create_role(&name, password).await;
    let mut su = pg.superuser().await;
    let stored: String = sqlx::query("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(&name)
        .fetch_one(&mut su)
        .await
        .expect("the role's verifier")
        .get(0);
    // SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>
    let (iterations, salt) = stored
        .strip_prefix("SCRAM-SHA-256$")
        .and_then(|rest| rest.split('$').next())
        .and_then(|head| head.split_once(':'))
        .expect("a SCRAM verifier");
    use base64::Engine as _;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(salt)
        .expect("base64 salt");
    let ours = scram::verifier_with(password, &salt, iterations.parse().expect("a number"))
        .expect("printable ASCII");
    assert_eq!(ours.expose(), stored);
}

#[tokio::test]
async fn failures_are_classified_and_leave_the_password_unchanged() {
    start_trace_capture();
    let pg = PrivatePostgres::shared();
    let roles = two_roles(&pg).await;
    let rd = setup(&pg, &roles);
    let new = Credential {
        id: roles[0].id.clone(),
        secret: rd.password_policy.generate(),
    };
    let mut errors = Vec::new();

    // Nothing listens on the port: transient.
    let mut closed = connection(&pg);
    closed.port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        l.local_addr().expect("addr").port()
    };
    let rd_closed = build(closed, parameters(&roles[0].id, &roles[1].id));
    let e = rd_closed.driver.apply(&new).await.expect_err("no server");
    assert_eq!(e.kind(), DriverErrorKind::Unreachable, "{e}");
    assert!(e.is_transient());
    errors.push(e);

    // Wrong admin password: permanent.
    let mut bad_admin = connection(&pg);
    bad_admin.admin_password = SecretString::new("not-the-admin-password");
    let rd_bad = build(bad_admin, parameters(&roles[0].id, &roles[1].id));
    let e = rd_bad.driver.apply(&new).await.expect_err("bad admin");
    assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");
    assert!(!e.is_transient());
    assert!(!e.to_string().contains("not-the-admin-password"));
    errors.push(e);
    let e = rd_bad
        .driver
        .probe()
        .await
        .expect_err("probe with a bad admin");
    assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");

    // The target user does not exist: permanent.
    let missing = unique("missing");
    let rd_missing = build(connection(&pg), parameters(&missing, &roles[1].id));
    let e = rd_missing
        .driver
        .apply(&Credential {
            id: missing.clone(),
            secret: new.secret.clone(),
        })
        .await
        .expect_err("no such role");
    assert_eq!(e.kind(), DriverErrorKind::UserNotFound, "{e}");
    assert!(!e.is_transient());
    errors.push(e);

    // An admin without CREATEROLE: permanent.
    let weak = unique("weak_admin");
    pg.create_role(&weak, "weak-admin-pw").await;
    let mut weak_conn = connection(&pg);
    weak_conn.admin_username = weak;
    weak_conn.admin_password = SecretString::new("weak-admin-pw");
    let rd_weak = build(weak_conn, parameters(&roles[0].id, &roles[1].id));
    let e = rd_weak.driver.apply(&new).await.expect_err("no privilege");
    assert_eq!(e.kind(), DriverErrorKind::PermissionDenied, "{e}");
    errors.push(e);

    // Nothing half-done: the old password still logs in, the new one does not.
    rd.driver
        .verify(&roles[0])
        .await
        .expect("the initial password still works after every failure");
    let e = rd.driver.verify(&new).await.expect_err("never applied");
    assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
    errors.push(e);

    let texts = error_texts(&errors);
    assert_no_secret(&[&new.secret], texts.iter().map(String::as_str));
    assert_no_secret(&[&new.secret], [captured_traces().as_str()]);
    assert!(
        captured_traces().contains("error.type=\"DRIVER_ADMIN_LOGIN_REJECTED\""),
        "a failed phase records error.type on its span"
    );
}

#[tokio::test]
async fn odd_role_names_and_literals_are_quoted_for_the_server() {
    let pg = PrivatePostgres::shared();
    let odd = format!(
        "We\"ird role;-- {}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let other = unique("plain");
    pg.create_role(&odd, "old-odd").await;
    pg.create_role(&other, "old-plain").await;
    let rd = build(connection(&pg), parameters(&odd, &other));
    check_contract(&rd.driver, &rd.password_policy, Slot::First).await;

    let nasty = "a'b\\c''d\\\\e'--;$$x$$";
    let mut su = pg.superuser().await;
    for scs in ["on", "off"] {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET standard_conforming_strings = {scs}"
        )))
        .execute(&mut su)
        .await
        .expect("set");
        let sql = format!(
            "SELECT {} AS {}",
            pg_literal(nasty).expect("quotable"),
            pg_identifier("col\"x").expect("quotable")
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&mut su)
            .await
            .expect("select");
        let back: String = row.get("col\"x");
        assert_eq!(back, nasty, "standard_conforming_strings = {scs}");
    }
}

#[tokio::test]
async fn revoke_kills_the_password_and_is_idempotent() {
    let pg = PrivatePostgres::shared();
    let roles = two_roles(&pg).await;
    let rd = setup(&pg, &roles);
    let c = check_contract(&rd.driver, &rd.password_policy, Slot::Second).await;
    rd.driver.revoke(&c.id).await.expect("revoke");
    rd.driver.revoke(&c.id).await.expect("revoke again");
    let e = rd.driver.verify(&c).await.expect_err("revoked");
    assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
}

#[tokio::test]
async fn unsafe_requests_are_refused_before_anything_is_sent() {
    let pg = PrivatePostgres::shared();
    let roles = two_roles(&pg).await;
    let rd = setup(&pg, &roles);
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
    let stranger = Credential {
        id: "postgres".into(),
        secret: rd.password_policy.generate(),
    };
    let e = rd
        .driver
        .apply(&stranger)
        .await
        .expect_err("not a rotation user");
    assert_eq!(e.kind(), DriverErrorKind::InvalidInput);
    let e = rd
        .driver
        .revoke("postgres")
        .await
        .expect_err("not a rotation user");
    assert_eq!(e.kind(), DriverErrorKind::InvalidInput);

    let mut custom = parameters(&roles[0].id, &roles[1].id);
    custom.rotation_statement =
        Some("ALTER USER \"{{username}}\" WITH PASSWORD '{{password}}'".into());
    let built = AnyDriver::build(
        "x",
        connection(&pg),
        &Kind::PostgresCredentials(custom),
        DriverOptions::default(),
    );
    assert!(
        matches!(built, Err(BuildError::Invalid(e)) if e.kind() == DriverErrorKind::InvalidInput)
    );
    let same = parameters(&roles[0].id, &roles[0].id);
    assert!(
        AnyDriver::build(
            "x",
            connection(&pg),
            &Kind::PostgresCredentials(same),
            DriverOptions::default()
        )
        .is_err()
    );
    let long = parameters(&"x".repeat(64), &roles[0].id);
    assert!(
        AnyDriver::build(
            "x",
            connection(&pg),
            &Kind::PostgresCredentials(long),
            DriverOptions::default()
        )
        .is_err()
    );

    // Nothing reached the roles.
    rd.driver.verify(&roles[0]).await.expect("unchanged");
    rd.driver.verify(&roles[1]).await.expect("unchanged");
}

/// The TLS modes against a server with a certificate from a private CA: `VerifyFull` with the CA
/// and `Require` work; `VerifyFull` against the system roots is a permanent TLS failure.
#[tokio::test]
async fn tls_modes_check_the_certificate_as_configured() {
    let certs_dir = tempfile::tempdir().expect("a temp dir");
    let ca = test_ca::TestCa::create(certs_dir.path());
    let pg = PrivatePostgres::start_with_tls(&ca.cert_file, &ca.key_file);
    let roles = two_roles(&pg).await;

    let verified = with_tls(&pg, &roles, TlsMode::VerifyFull, Some(ca.ca_pem.clone()));
    check_contract(&verified.driver, &verified.password_policy, Slot::First).await;
    let encrypted = with_tls(&pg, &roles, TlsMode::Require, None);
    check_contract(&encrypted.driver, &encrypted.password_policy, Slot::Second).await;

    let untrusted = with_tls(&pg, &roles, TlsMode::VerifyFull, None);
    let e = untrusted
        .driver
        .probe()
        .await
        .expect_err("the CA is not a system root");
    assert_eq!(e.kind(), DriverErrorKind::Tls, "{e}");
    assert!(!e.is_transient());
}

/// A driver for `pg`'s `roles` with this TLS mode and CA file.
fn with_tls(
    pg: &PrivatePostgres,
    roles: &[Credential; 2],
    mode: TlsMode,
    ca_pem: Option<String>,
) -> RotationDriver {
    let mut c = connection(pg);
    c.tls = TlsConfig { mode, ca_pem };
    build(c, parameters(&roles[0].id, &roles[1].id))
}

/// A self-signed (CA:TRUE) server certificate given as the `ca_file` is pinned, as `openssl req
/// -x509` and rcgen make it; another self-signed certificate is a TLS failure naming `ca_file`.
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
        let pg = PrivatePostgres::start_with_tls(&made.cert_file, &made.key_file);
        let roles = two_roles(&pg).await;
        let pinned = with_tls(&pg, &roles, TlsMode::VerifyFull, Some(made.pem.clone()));
        check_contract(&pinned.driver, &pinned.password_policy, Slot::First).await;

        let refused = with_tls(&pg, &roles, TlsMode::VerifyFull, Some(other.pem.clone()))
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
/// a server without TLS is refused under `require` with what to do.
#[tokio::test]
async fn verify_full_with_a_ca_file_still_checks_the_server_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = test_ca::TestCa::create_for(dir.path(), "DNS:db.example");
    let pg = PrivatePostgres::start_with_tls(&ca.cert_file, &ca.key_file);
    let roles = two_roles(&pg).await;
    let refused = with_tls(&pg, &roles, TlsMode::VerifyFull, Some(ca.ca_pem.clone()))
        .driver
        .probe()
        .await
        .expect_err("the certificate names another host");
    assert_certificate_refused(&refused, "does not name 127.0.0.1", ADMIN_PASSWORD);

    let plain = PrivatePostgres::shared();
    let refused = with_tls(&plain, &roles, TlsMode::Require, None)
        .driver
        .probe()
        .await
        .expect_err("the server has no TLS");
    assert_certificate_refused(&refused, "does not accept TLS", ADMIN_PASSWORD);
}

#[tokio::test]
async fn applies_reuse_one_admin_session_and_survive_its_loss() {
    // A cluster of its own: this test terminates the admin's sessions.
    let pg = PrivatePostgres::start();
    let roles = two_roles(&pg).await;
    let rd = AnyDriver::build(
        "3f2c1b8e-0000-4000-8000-000000000002",
        connection(&pg),
        &Kind::PostgresCredentials(parameters(&roles[0].id, &roles[1].id)),
        DriverOptions {
            shared: Some(ConnectionShared::new(2)),
            ..DriverOptions::default()
        },
    )
    .expect("a valid postgres rotation");
    let admin_sessions = || async {
        let mut su = pg.superuser().await;
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{ADMIN_USER}'"
        )))
        .fetch_one(&mut su)
        .await
        .expect("count sessions");
        n
    };
    let credential = |slot| Credential {
        id: rd.driver.username_for(slot).to_owned(),
        secret: rd.password_policy.generate(),
    };

    rd.driver
        .apply(&credential(Slot::First))
        .await
        .expect("apply");
    rd.driver
        .apply(&credential(Slot::Second))
        .await
        .expect("apply");
    assert_eq!(
        admin_sessions().await,
        1,
        "the second apply reused the first's session"
    );

    pg.execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{ADMIN_USER}'"
    ))
    .await;
    let third = credential(Slot::First);
    rd.driver
        .apply(&third)
        .await
        .expect("a lost session is replaced by a new login");
    rd.driver
        .verify(&third)
        .await
        .expect("the password was set");
    assert_eq!(admin_sessions().await, 1);
}
