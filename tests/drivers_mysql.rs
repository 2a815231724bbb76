//! The MySQL driver against the shared MariaDB on 127.0.0.1:3306 (accounts unique per test,
//! dropped afterwards).

use std::path::Path;

use rotator::drivers::mysql::{HOST_PART_OPTION, PASSWORD_FORM_OPTION};
use rotator::drivers::quote::mysql_literal;
use rotator::drivers::{
    AnyDriver, BuildError, ConnectionConfig, Credential, Driver, DriverErrorKind, DriverOptions,
    RotationDriver, Slot, TlsConfig, TlsMode,
};
use rotator::proto::rotation_parameters::Kind;
use rotator::proto::{PasswordRequirements, RequiredCharacters, SqlCredentialsParameters};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_certificate_refused, assert_no_secret, captured_traces, check_contract, error_texts,
    start_trace_capture,
};
use rotator_testkit::mariadb::{Accounts, unique};
use rotator_testkit::private_mariadb::PrivateMariaDb;
use rotator_testkit::{mariadb, test_ca};
use sqlx::{AssertSqlSafe, Row as _};

const ADMIN_PASSWORD: &str = "admin-pw-Mx72";

fn connection(admin: &str) -> ConnectionConfig {
    ConnectionConfig {
        host: mariadb::HOST.into(),
        port: mariadb::PORT,
        database: String::new(),
        admin_username: admin.into(),
        admin_password: SecretString::new(ADMIN_PASSWORD),
        tls: TlsConfig {
            mode: TlsMode::Disable,
            ca_pem: None,
        },
    }
}

fn parameters(u1: &str, u2: &str) -> SqlCredentialsParameters {
    SqlCredentialsParameters {
        username1: u1.into(),
        username2: u2.into(),
        rotation_statement: None,
        password_requirements: None,
    }
}

fn build(
    connection: ConnectionConfig,
    p: SqlCredentialsParameters,
    host_part: Option<&str>,
) -> Result<RotationDriver, BuildError> {
    AnyDriver::build(
        "7a0d5e9c-0000-4000-8000-000000000002",
        connection,
        &Kind::MysqlCredentials(p),
        DriverOptions {
            options: mysql_options(host_part.unwrap_or("%"), "plaintext"),
            ..DriverOptions::default()
        },
    )
}

/// The connection options of the MySQL driver, as a `[[connections]]` table holds them.
fn mysql_options(host_part: &str, password_form: &str) -> toml::Table {
    toml::Table::from_iter([
        (HOST_PART_OPTION.to_owned(), host_part.into()),
        (PASSWORD_FORM_OPTION.to_owned(), password_form.into()),
    ])
}

/// An admin and two target accounts on host `%`, with known initial passwords.
struct Fixture {
    accounts: Accounts,
    admin: String,
    targets: [Credential; 2],
}

async fn fixture() -> Fixture {
    let mut accounts = Accounts::default();
    let admin = unique("adm");
    accounts.create_admin(&admin, ADMIN_PASSWORD).await;
    let mut targets = Vec::new();
    for slot in ["a", "b"] {
        let user = unique(slot);
        let password = format!("initial-{slot}-{}", uuid::Uuid::new_v4().simple());
        accounts.create(&user, "%", &password).await;
        targets.push(Credential {
            id: user,
            secret: SecretString::new(password),
        });
    }
    Fixture {
        accounts,
        admin,
        targets: [targets.remove(0), targets.remove(0)],
    }
}

impl Fixture {
    fn driver(&self) -> RotationDriver {
        build(
            connection(&self.admin),
            parameters(&self.targets[0].id, &self.targets[1].id),
            None,
        )
        .expect("a valid mysql rotation")
    }
}

#[tokio::test]
async fn the_contract_holds_on_both_slots_with_default_and_symbol_heavy_passwords() {
    let f = fixture().await;
    let rd = f.driver();
    check_contract(&rd.driver, &rd.password_policy, Slot::First).await;

    let mut p = parameters(&f.targets[0].id, &f.targets[1].id);
    p.password_requirements = Some(PasswordRequirements {
        length: 40,
        required: Some(RequiredCharacters {
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols: 24,
        }),
        allowed_symbols: Some("'\\%_`;\"@-".into()),
    });
    let rd = build(connection(&f.admin), p, None).expect("valid");
    check_contract(&rd.driver, &rd.password_policy, Slot::Second).await;
}

#[tokio::test]
async fn two_rotations_keep_the_previous_credential_and_kill_the_one_before() {
    let f = fixture().await;
    let RotationDriver {
        driver,
        password_policy,
    } = f.driver();
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
}

#[tokio::test]
async fn failures_are_classified_and_leave_the_password_unchanged() {
    start_trace_capture();
    let mut f = fixture().await;
    let rd = f.driver();
    let new = Credential {
        id: f.targets[0].id.clone(),
        secret: rd.password_policy.generate(),
    };
    let p = || parameters(&f.targets[0].id, &f.targets[1].id);
    let mut errors = Vec::new();

    let mut closed = connection(&f.admin);
    closed.port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let e = build(closed, p(), None)
        .expect("valid")
        .driver
        .apply(&new)
        .await
        .expect_err("no server");
    assert_eq!(e.kind(), DriverErrorKind::Unreachable, "{e}");
    assert!(e.is_transient());
    errors.push(e);

    let mut bad_admin = connection(&f.admin);
    bad_admin.admin_password = SecretString::new("not-the-admin-password");
    let bad = build(bad_admin, p(), None).expect("valid").driver;
    let e = bad.apply(&new).await.expect_err("bad admin");
    assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");
    assert!(!e.is_transient());
    assert!(!e.to_string().contains("not-the-admin-password"));
    errors.push(e);

    let missing = unique("missing");
    let e = build(
        connection(&f.admin),
        parameters(&missing, &f.targets[1].id),
        None,
    )
    .expect("valid")
    .driver
    .apply(&Credential {
        id: missing,
        secret: new.secret.clone(),
    })
    .await
    .expect_err("no such account");
    assert_eq!(e.kind(), DriverErrorKind::UserNotFound, "{e}");
    assert!(!e.is_transient());
    errors.push(e);

    let weak = unique("weak");
    f.accounts.create(&weak, "%", ADMIN_PASSWORD).await;
    let e = build(connection(&weak), p(), None)
        .expect("valid")
        .driver
        .apply(&new)
        .await
        .expect_err("no CREATE USER privilege");
    assert_eq!(e.kind(), DriverErrorKind::PermissionDenied, "{e}");
    errors.push(e);

    rd.driver
        .verify(&f.targets[0])
        .await
        .expect("the initial password still works after every failure");
    let e = rd.driver.verify(&new).await.expect_err("never applied");
    assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
    errors.push(e);

    let texts = error_texts(&errors);
    assert_no_secret(&[&new.secret], texts.iter().map(String::as_str));
    assert_no_secret(&[&new.secret], [captured_traces().as_str()]);
}

#[tokio::test]
async fn the_account_host_part_is_configurable() {
    let mut accounts = Accounts::default();
    let admin = unique("adm");
    accounts.create_admin(&admin, ADMIN_PASSWORD).await;
    let (u1, u2) = (unique("h1"), unique("h2"));
    accounts.create(&u1, "127.0.0.1", "initial-h1").await;
    accounts.create(&u2, "127.0.0.1", "initial-h2").await;

    let rd = build(connection(&admin), parameters(&u1, &u2), Some("127.0.0.1")).expect("valid");
    check_contract(&rd.driver, &rd.password_policy, Slot::First).await;

    // With the default `%`, these accounts do not exist.
    let rd = build(connection(&admin), parameters(&u1, &u2), None).expect("valid");
    let e = rd
        .driver
        .apply(&Credential {
            id: u2.clone(),
            secret: rd.password_policy.generate(),
        })
        .await
        .expect_err("'u'@'%' does not exist");
    assert_eq!(e.kind(), DriverErrorKind::UserNotFound, "{e}");
}

/// The literals the driver builds read back unchanged on the real server, with and without
/// `NO_BACKSLASH_ESCAPES`.
#[tokio::test]
async fn literals_round_trip_in_both_sql_modes() {
    let every_ascii: String = (1u8..=127).map(char::from).collect();
    let values = [every_ascii.as_str(), "a'b", "\\'", "'\\", "x\\", "\\\\''"];
    let mut conn = mariadb::root().await;
    for (mode, escapes) in [("NO_BACKSLASH_ESCAPES", false), ("", true)] {
        sqlx::raw_sql(AssertSqlSafe(format!("SET SESSION sql_mode = '{mode}'")))
            .execute(&mut conn)
            .await
            .expect("set sql_mode");
        for value in values {
            let sql = format!(
                "SELECT CAST({} AS CHAR) AS v",
                mysql_literal(value, escapes).expect("no NUL")
            );
            let back: String = sqlx::raw_sql(AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .expect("select")
                .get("v");
            assert_eq!(back, value, "sql_mode = {mode:?}");
        }
    }
}

/// A server whose `sql_mode` has `NO_BACKSLASH_ESCAPES` (a private one: the shared server's mode
/// must not change): the driver reads the mode and passwords full of `\` and `'` still work.
#[tokio::test]
async fn backslashes_survive_a_server_with_no_backslash_escapes() {
    let server = PrivateMariaDb::start(&["--sql-mode=NO_BACKSLASH_ESCAPES"]);
    server.sql(&format!(
        "CREATE USER 'adm'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}'; GRANT CREATE USER ON *.* TO 'adm'@'%';\
         CREATE USER 'u1'@'%' IDENTIFIED BY 'initial-1'; CREATE USER 'u2'@'%' IDENTIFIED BY 'initial-2';"
    ));
    let mut p = parameters("u1", "u2");
    p.password_requirements = Some(PasswordRequirements {
        length: 32,
        required: Some(RequiredCharacters {
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols: 20,
        }),
        allowed_symbols: Some("\\'".into()),
    });
    let mut c = connection("adm");
    c.port = server.port();
    let rd = build(c, p, None).expect("valid");
    check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
}

/// MariaDB writes `ALTER USER … IDENTIFIED BY '<plaintext>'` verbatim to its general and binary
/// logs; the native-hash form sends only `*<SHA1(SHA1(pw))>`, so no log sees the password.
#[tokio::test]
async fn the_native_hash_form_keeps_the_password_out_of_mariadbs_logs() {
    let server = PrivateMariaDb::start(&[
        "--log-bin=bin",
        "--server-id=1",
        "--general-log=1",
        "--general-log-file=general.log",
        "--log-output=FILE",
    ]);
    server.sql(&format!(
        "CREATE USER 'adm'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}'; GRANT CREATE USER ON *.* TO 'adm'@'%';\
         CREATE USER 'u1'@'%' IDENTIFIED BY 'initial-1'; CREATE USER 'u2'@'%' IDENTIFIED BY 'initial-2';"
    ));
    let mut c = connection("adm");
    c.port = server.port();
    let driver_with = |form| {
        AnyDriver::build(
            "native-hash",
            c.clone(),
            &Kind::MysqlCredentials(parameters("u1", "u2")),
            DriverOptions {
                options: mysql_options("%", form),
                ..DriverOptions::default()
            },
        )
        .expect("valid")
    };
    let hashed = driver_with("native-hash");
    let c1 = Credential {
        id: "u1".into(),
        secret: hashed.password_policy.generate(),
    };
    hashed
        .driver
        .apply(&c1)
        .await
        .expect("apply as a native hash");
    hashed
        .driver
        .verify(&c1)
        .await
        .expect("the password logs in");
    hashed.driver.apply(&c1).await.expect("idempotent");
    check_contract(&hashed.driver, &hashed.password_policy, Slot::Second).await;

    let plain = driver_with("plaintext");
    let c2 = Credential {
        id: "u2".into(),
        secret: plain.password_policy.generate(),
    };
    plain.driver.apply(&c2).await.expect("apply as plaintext");
    plain
        .driver
        .verify(&c2)
        .await
        .expect("the password logs in");

    let general =
        std::fs::read_to_string(server.data_dir().join("general.log")).unwrap_or_default();
    let binlog = server.binlog_text();
    let hash = rotator::drivers::mysql::native_password_hash(&c1.secret);
    for log in [&general, &binlog] {
        assert!(log.contains(hash.expose()), "the hash form reached the log");
        assert_no_secret(&[&c1.secret], [log.as_str()]);
        // The server's behaviour docs/drivers.md warns about; if this fails, update the docs.
        assert!(
            log.contains(c2.secret.expose()),
            "MariaDB logs the plaintext form"
        );
    }
}

#[tokio::test]
async fn revoke_kills_the_password_and_is_idempotent() {
    let f = fixture().await;
    let rd = f.driver();
    let c = check_contract(&rd.driver, &rd.password_policy, Slot::Second).await;
    rd.driver.revoke(&c.id).await.expect("revoke");
    rd.driver.revoke(&c.id).await.expect("revoke again");
    let e = rd.driver.verify(&c).await.expect_err("revoked");
    assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
}

#[tokio::test]
async fn unsafe_requests_are_refused_before_anything_is_sent() {
    let f = fixture().await;
    let rd = f.driver();
    rd.driver.probe().await.expect("the admin logs in");
    let e = rd
        .driver
        .apply(&Credential {
            id: f.admin.clone(),
            secret: rd.password_policy.generate(),
        })
        .await
        .expect_err("never the admin");
    assert_eq!(e.kind(), DriverErrorKind::InvalidInput);
    let e = rd
        .driver
        .apply(&Credential {
            id: "root".into(),
            secret: rd.password_policy.generate(),
        })
        .await
        .expect_err("not a rotation user");
    assert_eq!(e.kind(), DriverErrorKind::InvalidInput);

    let mut custom = parameters(&f.targets[0].id, &f.targets[1].id);
    custom.rotation_statement =
        Some("ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}'".into());
    assert!(matches!(
        build(connection(&f.admin), custom, None),
        Err(BuildError::Invalid(_))
    ));
    rd.driver.verify(&f.targets[0]).await.expect("unchanged");
    rd.driver.verify(&f.targets[1]).await.expect("unchanged");
}

/// A private MariaDB serving `cert_file` (key `key_file`, and `ca_file` as its own CA list),
/// with the admin `adm` and the accounts `u1`, `u2`, all `REQUIRE SSL`.
fn tls_server(dir: &Path, cert_file: &Path, key_file: &Path, ca_file: &Path) -> PrivateMariaDb {
    // mariadbd runs as `mysql` and must read the files.
    for path in [dir, cert_file, key_file, ca_file] {
        let status = std::process::Command::new("chmod")
            .arg("a+rX")
            .arg(path)
            .status()
            .expect("chmod");
        assert!(status.success());
    }
    let server = PrivateMariaDb::start(&[
        &format!("--ssl-cert={}", cert_file.display()),
        &format!("--ssl-key={}", key_file.display()),
        &format!("--ssl-ca={}", ca_file.display()),
    ]);
    server.sql(&format!(
        "CREATE USER 'adm'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}' REQUIRE SSL; GRANT CREATE USER ON *.* TO 'adm'@'%';\
         CREATE USER 'u1'@'%' IDENTIFIED BY 'initial-1' REQUIRE SSL; CREATE USER 'u2'@'%' IDENTIFIED BY 'initial-2' REQUIRE SSL;"
    ));
    server
}

/// A driver for `server`'s `u1`/`u2` as `adm` with this TLS mode and CA file.
fn with_tls(server: &PrivateMariaDb, mode: TlsMode, ca_pem: Option<String>) -> RotationDriver {
    let mut c = connection("adm");
    c.port = server.port();
    c.tls = TlsConfig { mode, ca_pem };
    build(c, parameters("u1", "u2"), None).expect("valid")
}

/// The TLS modes against a private MariaDB with a certificate from a private CA.
#[tokio::test]
async fn tls_modes_check_the_certificate_as_configured() {
    let certs_dir = tempfile::tempdir().expect("a temp dir");
    let ca = test_ca::TestCa::create(certs_dir.path());
    let server = tls_server(certs_dir.path(), &ca.cert_file, &ca.key_file, &ca.ca_file);
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
    assert_certificate_refused(&e, "connection's ca_file", ADMIN_PASSWORD);
    // The accounts REQUIRE SSL: without TLS the admin is refused.
    let plain = with_tls(&server, TlsMode::Disable, None);
    let e = plain.driver.probe().await.expect_err("TLS is required");
    assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected, "{e}");
}

/// A self-signed (CA:TRUE) server certificate given as the `ca_file` is pinned, as `openssl req
/// -x509` and rcgen make it; another self-signed certificate is a TLS failure naming `ca_file`.
/// (sqlx, the driver's client before, refused both: `CaUsedAsEndEntity`.)
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
        let server = tls_server(dir.path(), &made.cert_file, &made.key_file, &made.cert_file);
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

/// A `ca_file` with a CA still gets full verification of the chain, the server's name included,
/// and so does a pinned self-signed certificate; a server without TLS is refused under
/// `require` with what to do.
#[tokio::test]
async fn verify_full_with_a_ca_file_still_checks_the_server_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = test_ca::TestCa::create_for(dir.path(), "DNS:db.example");
    let server = tls_server(dir.path(), &ca.cert_file, &ca.key_file, &ca.ca_file);
    let refused = with_tls(&server, TlsMode::VerifyFull, Some(ca.ca_pem.clone()))
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
    let server = tls_server(
        named_dir.path(),
        &named.cert_file,
        &named.key_file,
        &named.cert_file,
    );
    let refused = with_tls(&server, TlsMode::VerifyFull, Some(named.pem.clone()))
        .driver
        .probe()
        .await
        .expect_err("the pinned certificate names another host");
    assert_certificate_refused(
        &refused,
        "connect with a host name the certificate names",
        ADMIN_PASSWORD,
    );

    let plain = PrivateMariaDb::start(&[]);
    // With no account for the client's host, MariaDB refuses it before the handshake.
    plain.sql(&format!(
        "CREATE USER 'adm'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}'"
    ));
    let refused = with_tls(&plain, TlsMode::Require, None)
        .driver
        .probe()
        .await
        .expect_err("the server has no TLS");
    assert_certificate_refused(&refused, "does not accept TLS", ADMIN_PASSWORD);
}
