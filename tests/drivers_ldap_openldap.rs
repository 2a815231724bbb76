//! The `ldap-password` driver against a real OpenLDAP slapd (provider `openldap`, RFC 3062
//! Password Modify): the chosen-secret contract over LDAPS and StartTLS with the server's
//! self-signed certificate pinned, the new password hashed by the server, a wrong CA and a wrong
//! admin password refused and changing nothing, no password in any error text; then the real
//! binary: kill -9 at `prepared`, `applied` and `verified`, after which the stored password binds.

use std::path::{Path, PathBuf};

use rotator::drivers::{
    AnyDriver, BuildError, ConnectionConfig, Credential, Driver as _, DriverError, DriverErrorKind,
    DriverOptions, RotationDriver, Slot, TlsConfig, TlsMode,
};
use rotator::proto::{LdapPasswordParameters, RotationType, rotation_parameters::Kind};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_no_secret, assert_phase_span, captured_traces, check_contract, error_texts,
    start_trace_capture,
};
use rotator_testkit::issued_local::{self, ROTATION_ID, Running};
use rotator_testkit::local_server::{attempt_states, stored_single_password};
use rotator_testkit::slapd::{ADMIN_DN, ADMIN_PASSWORD, Slapd};
use rotator_testkit::test_ca::TestCa;

const SYSTEM: &str = "ldap";
const ADMIN_ENV: &str = "LDAP_ADMIN";
const TYPE: RotationType = RotationType::LdapPassword;
const BIN: &str = env!("CARGO_BIN_EXE_rotator");

#[derive(Clone, Copy)]
enum Transport {
    Ldaps,
    StartTls,
    Plain,
}

fn connection(slapd: &Slapd, transport: Transport, ca_pem: Option<&str>) -> ConnectionConfig {
    let (port, mode) = match transport {
        Transport::Ldaps => (slapd.ldaps_port(), TlsMode::VerifyFull),
        Transport::StartTls => (slapd.ldap_port(), TlsMode::VerifyFull),
        Transport::Plain => (slapd.ldap_port(), TlsMode::Disable),
    };
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port,
        database: String::new(),
        admin_username: ADMIN_DN.into(),
        admin_password: SecretString::new(ADMIN_PASSWORD),
        tls: TlsConfig {
            mode,
            ca_pem: ca_pem.map(str::to_owned),
        },
    }
}

fn options(transport: Transport) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("provider".into(), "openldap".into());
    if let Transport::StartTls = transport {
        t.insert("transport".into(), "starttls".into());
    }
    t
}

fn parameters(dn: &str, method: &str) -> Kind {
    Kind::LdapPassword(LdapPasswordParameters {
        dn: dn.to_owned(),
        rotation_method: Some(method.to_owned()),
        password_requirements: None,
    })
}

fn try_build(
    connection: ConnectionConfig,
    dn: &str,
    method: &str,
    options: toml::Table,
) -> Result<RotationDriver, BuildError> {
    AnyDriver::build(
        ROTATION_ID,
        connection,
        &parameters(dn, method),
        DriverOptions {
            options,
            ..DriverOptions::default()
        },
    )
}

fn driver(slapd: &Slapd, transport: Transport, dn: &str) -> RotationDriver {
    try_build(
        connection(slapd, transport, Some(slapd.cert_pem())),
        dn,
        "connection-principal",
        options(transport),
    )
    .expect("a valid ldap rotation")
}

fn assert_kind(result: Result<(), DriverError>, kind: DriverErrorKind) -> DriverError {
    let e = result.expect_err("must fail");
    assert_eq!(e.kind(), kind, "{e}");
    e
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

#[tokio::test]
async fn contract_admin_reset_over_ldaps_with_a_pinned_self_signed_certificate() {
    let slapd = Slapd::shared().await;
    let dn = slapd.create_user(&unique("u"), "Initial-Pw-1").await;
    let rd = driver(&slapd, Transport::Ldaps, &dn);
    assert_eq!(rd.driver.username_for(Slot::First), dn);
    assert_eq!(rd.driver.username_for(Slot::Second), dn, "single-phase");

    let kept = check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
    assert!(slapd.can_bind(&dn, kept.secret.expose()).await);
    assert!(
        !slapd.can_bind(&dn, "Initial-Pw-1").await,
        "the old one dies"
    );
    let stored = slapd.user_password(&dn).await;
    assert!(
        stored.len() == 1 && stored[0].starts_with("{SSHA}"),
        "Password Modify makes slapd hash it: {stored:?}"
    );
    rd.driver.probe().await.expect("probe");
    assert_phase_span("probe", SYSTEM, ADMIN_DN);

    rd.driver.revoke(&dn).await.expect("revoke");
    assert!(!slapd.can_bind(&dn, kept.secret.expose()).await, "revoked");
    assert_kind(
        rd.driver.verify(&kept).await,
        DriverErrorKind::LoginRejected,
    );
}

#[tokio::test]
async fn starttls_with_the_pinned_certificate_replaces_the_password() {
    let slapd = Slapd::shared().await;
    let dn = slapd.create_user(&unique("s"), "Initial-Pw-2").await;
    let rd = driver(&slapd, Transport::StartTls, &dn);
    let kept = check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
    assert!(slapd.can_bind(&dn, kept.secret.expose()).await);
    assert!(!slapd.can_bind(&dn, "Initial-Pw-2").await);
}

#[tokio::test]
async fn plain_ldap_only_when_tls_is_disabled_explicitly() {
    let slapd = Slapd::shared().await;
    let dn = slapd.create_user(&unique("p"), "Initial-Pw-3").await;
    let rd = try_build(
        connection(&slapd, Transport::Plain, None),
        &dn,
        "connection-principal",
        options(Transport::Plain),
    )
    .expect("tls = disable builds");
    let credential = Credential {
        id: dn.clone(),
        secret: rd.password_policy.generate(),
    };
    rd.driver
        .apply(&credential)
        .await
        .expect("apply in the clear");
    rd.driver.verify(&credential).await.expect("verify");
    // Asking for StartTLS while disabling TLS is a contradiction, refused at build.
    let mut contradictory = options(Transport::Plain);
    contradictory.insert("transport".into(), "starttls".into());
    let e = try_build(
        connection(&slapd, Transport::Plain, None),
        &dn,
        "connection-principal",
        contradictory,
    )
    .expect_err("refused");
    assert!(e.to_string().contains("disable"), "{e}");
    // A TLS connection to the plain port fails as TLS, before anything is sent.
    let mut wrong_port = connection(&slapd, Transport::Ldaps, Some(slapd.cert_pem()));
    wrong_port.port = slapd.ldap_port();
    let rd = try_build(
        wrong_port,
        &dn,
        "connection-principal",
        options(Transport::Ldaps),
    )
    .expect("build");
    let e = rd.driver.probe().await.expect_err("not TLS");
    assert!(!e.may_have_changed_target(), "{e}");
}

#[tokio::test]
async fn tls_require_encrypts_without_checking_the_certificate() {
    let slapd = Slapd::shared().await;
    let dn = slapd.create_user(&unique("q"), "Initial-Pw-10").await;
    for transport in [Transport::Ldaps, Transport::StartTls] {
        let mut c = connection(&slapd, transport, None);
        c.tls.mode = TlsMode::Require;
        let rd = try_build(c, &dn, "connection-principal", options(transport)).expect("build");
        let credential = Credential {
            id: dn.clone(),
            secret: rd.password_policy.generate(),
        };
        rd.driver.apply(&credential).await.expect("apply");
        rd.driver.verify(&credential).await.expect("verify");
        assert!(slapd.can_bind(&dn, credential.secret.expose()).await);
    }
}

#[tokio::test]
async fn a_wrong_ca_is_refused_with_what_to_fix_and_nothing_changes() {
    let slapd = Slapd::shared().await;
    let dn = slapd.create_user(&unique("c"), "Initial-Pw-4").await;
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let other_ca = TestCa::create(ca_dir.path());
    for transport in [Transport::Ldaps, Transport::StartTls] {
        let rd = try_build(
            connection(&slapd, transport, Some(&other_ca.ca_pem)),
            &dn,
            "connection-principal",
            options(transport),
        )
        .expect("build");
        let candidate = Credential {
            id: dn.clone(),
            secret: rd.password_policy.generate(),
        };
        let e = assert_kind(rd.driver.apply(&candidate).await, DriverErrorKind::Tls);
        assert!(!e.may_have_changed_target(), "{e}");
        assert!(
            e.detail().contains("ca_file") && e.detail().contains("certificate"),
            "the refusal says what to fix: {e}"
        );
        assert_kind(rd.driver.probe().await, DriverErrorKind::Tls);
        assert_no_secret(
            &[&candidate.secret],
            error_texts(&[e]).iter().map(String::as_str),
        );
    }
    // No CA file: the system roots do not know a self-signed certificate.
    let rd = try_build(
        connection(&slapd, Transport::Ldaps, None),
        &dn,
        "connection-principal",
        options(Transport::Ldaps),
    )
    .expect("build");
    assert_kind(rd.driver.probe().await, DriverErrorKind::Tls);
    assert!(slapd.can_bind(&dn, "Initial-Pw-4").await, "nothing changed");
}

#[tokio::test]
async fn a_wrong_admin_password_changes_nothing_and_no_password_leaks() {
    start_trace_capture();
    let slapd = Slapd::shared().await;
    let dn = slapd.create_user(&unique("w"), "Initial-Pw-5").await;
    let mut c = connection(&slapd, Transport::Ldaps, Some(slapd.cert_pem()));
    let wrong_admin = SecretString::new("Wrong-Admin-Password-9");
    c.admin_password = wrong_admin.clone();
    let rd = try_build(c, &dn, "connection-principal", options(Transport::Ldaps)).expect("build");
    let candidate = Credential {
        id: dn.clone(),
        secret: rd.password_policy.generate(),
    };
    let mut errors = vec![assert_kind(
        rd.driver.apply(&candidate).await,
        DriverErrorKind::AdminLoginRejected,
    )];
    assert!(!errors[0].may_have_changed_target());
    errors.push(assert_kind(
        rd.driver.probe().await,
        DriverErrorKind::AdminLoginRejected,
    ));
    errors.push(assert_kind(
        rd.driver.revoke(&dn).await,
        DriverErrorKind::AdminLoginRejected,
    ));
    assert!(slapd.can_bind(&dn, "Initial-Pw-5").await, "nothing changed");
    assert!(!slapd.can_bind(&dn, candidate.secret.expose()).await);

    // A wrong password for the account, and an unknown entry.
    let good = driver(&slapd, Transport::Ldaps, &dn);
    errors.push(assert_kind(
        good.driver.verify(&candidate).await,
        DriverErrorKind::LoginRejected,
    ));
    let missing = format!("uid={},dc=example,dc=test", unique("nobody"));
    let rd = driver(&slapd, Transport::Ldaps, &missing);
    let other = Credential {
        id: missing,
        secret: rd.password_policy.generate(),
    };
    errors.push(assert_kind(
        rd.driver.apply(&other).await,
        DriverErrorKind::UserNotFound,
    ));
    let secrets = [&candidate.secret, &wrong_admin, &other.secret];
    assert_no_secret(&secrets, error_texts(&errors).iter().map(String::as_str));
    assert_no_secret(
        &secrets,
        [
            format!("{:?}", rd.driver).as_str(),
            captured_traces().as_str(),
        ],
    );
}

#[tokio::test]
async fn an_empty_password_never_counts_as_a_login() {
    let slapd = Slapd::shared().await;
    let dn = slapd.create_user(&unique("e"), "Initial-Pw-6").await;
    let rd = driver(&slapd, Transport::Ldaps, &dn);
    let empty = Credential {
        id: dn.clone(),
        secret: SecretString::new(""),
    };
    // slapd accepts a bind with a DN and no password as anonymous (RFC 4513 unauthenticated).
    assert_kind(
        rd.driver.verify(&empty).await,
        DriverErrorKind::InvalidInput,
    );
    assert_kind(rd.driver.apply(&empty).await, DriverErrorKind::InvalidInput);
    let mut c = connection(&slapd, Transport::Ldaps, Some(slapd.cert_pem()));
    c.admin_password = SecretString::new("");
    let rd = try_build(c, &dn, "connection-principal", options(Transport::Ldaps)).expect("build");
    assert_kind(rd.driver.probe().await, DriverErrorKind::InvalidInput);
    assert!(slapd.can_bind(&dn, "Initial-Pw-6").await);
}

#[tokio::test]
async fn parameters_are_checked_before_anything_is_sent() {
    let slapd = Slapd::shared().await;
    let c = || connection(&slapd, Transport::Ldaps, Some(slapd.cert_pem()));
    let build = |dn: &str, method: &str, options: toml::Table| {
        try_build(c(), dn, method, options)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let e = build(
        "not a dn",
        "connection-principal",
        options(Transport::Ldaps),
    )
    .expect_err("x");
    assert!(e.contains("Invalid DN/UPN format"), "{e}");
    let e = build(" ", "connection-principal", options(Transport::Ldaps)).expect_err("x");
    assert!(e.contains("DN/UPN required"), "{e}");
    let e = build(
        "alice@example.test",
        "connection-principal",
        options(Transport::Ldaps),
    )
    .expect_err("a UPN is AD's");
    assert!(e.contains("UPN"), "{e}");
    let e = build(
        "uid=a,dc=example,dc=test",
        "login-as-root",
        options(Transport::Ldaps),
    )
    .expect_err("x");
    assert!(e.contains("rotationMethod"), "{e}");
    let e = build(
        "CN=Admin,DC=example,DC=test",
        "connection-principal",
        options(Transport::Ldaps),
    )
    .expect_err("the bind DN itself");
    assert!(e.contains("bind DN"), "{e}");
    let mut bad = options(Transport::Ldaps);
    bad.insert("provider".into(), "novell".into());
    assert!(build("uid=a,dc=example,dc=test", "connection-principal", bad).is_err());
    let mut bad = options(Transport::Ldaps);
    bad.insert("bogus".into(), "1".into());
    assert!(build("uid=a,dc=example,dc=test", "connection-principal", bad).is_err());
    // target-principal without a current password cannot log in as the account.
    let dn = slapd.create_user(&unique("t"), "Initial-Pw-7").await;
    let rd = try_build(c(), &dn, "target-principal", options(Transport::Ldaps)).expect("build");
    let credential = Credential {
        id: dn.clone(),
        secret: rd.password_policy.generate(),
    };
    assert_kind(
        rd.driver.apply(&credential).await,
        DriverErrorKind::InvalidInput,
    );
    assert!(slapd.can_bind(&dn, "Initial-Pw-7").await);
}

#[tokio::test]
async fn target_principal_changes_its_own_password_and_resumes_idempotently() {
    let slapd = Slapd::shared().await;
    let dn = slapd.create_user(&unique("self"), "Current-Pw-1").await;
    let rd = try_build(
        connection(&slapd, Transport::StartTls, Some(slapd.cert_pem())),
        &dn,
        "target-principal",
        options(Transport::StartTls),
    )
    .expect("a valid target-principal rotation");
    let driver = &rd.driver;
    let new = Credential {
        id: dn.clone(),
        secret: SecretString::new(uuid::Uuid::new_v4().simple().to_string()),
    };
    let current = [
        SecretString::new("Not-The-Password-0"),
        SecretString::new("Current-Pw-1"),
    ];
    driver
        .apply_with_current(&new, &current)
        .await
        .expect("the account changes its own password");
    assert!(slapd.can_bind(&dn, new.secret.expose()).await);
    assert!(
        !slapd.can_bind(&dn, "Current-Pw-1").await,
        "the old one dies"
    );
    let stored = slapd.user_password(&dn).await;
    assert!(stored[0].starts_with("{SSHA}"), "{stored:?}");
    // Recovery applies the same candidate again: the account already holds it, so nothing is
    // changed and it succeeds.
    driver
        .apply_with_current(&new, &current)
        .await
        .expect("idempotent");
    assert!(slapd.can_bind(&dn, new.secret.expose()).await);
    assert_eq!(
        slapd.user_password(&dn).await,
        stored,
        "nothing was changed"
    );
    driver.verify(&new).await.expect("verify");

    // No password it may hold logs in: refused, nothing changed.
    let other = Credential {
        id: dn.clone(),
        secret: SecretString::new("Another-New-Pw-2"),
    };
    let e = assert_kind(
        driver
            .apply_with_current(&other, &[SecretString::new("Wrong-Pw-3")])
            .await,
        DriverErrorKind::LoginRejected,
    );
    assert!(!e.may_have_changed_target());
    assert!(slapd.can_bind(&dn, new.secret.expose()).await);
    let secrets = [&new.secret, &other.secret, &current[1]];
    assert_no_secret(&secrets, error_texts(&[e]).iter().map(String::as_str));
}

// === through the binary ===

fn config(dir: &Path, slapd: &Slapd, dn: &str) -> PathBuf {
    config_with(dir, slapd, &format!("{{ dn = \"{dn}\" }}"), "")
}

/// As [`config`], with the rotation's `parameters` (an inline table) and `extra` lines.
fn config_with(dir: &Path, slapd: &Slapd, parameters: &str, extra: &str) -> PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "directory"
app = "ldap"
host = "127.0.0.1"
port = {port}
username = "{ADMIN_DN}"
password = "env:{ADMIN_ENV}"
ca_file = "{ca}"
provider = "openldap"

[[rotations]]
id = "{ROTATION_ID}"
name = "service-account"
type = "ldap-password"
connection = "directory"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = {parameters}
{extra}
secrets_mapping = {{ dn = "LDAP_DN", password = "LDAP_PASSWORD" }}
"#,
        port = slapd.ldaps_port(),
        ca = slapd.cert_file().display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The directory takes exactly the stored password (slot 0) of `dn`.
async fn assert_stored_binds(slapd: &Slapd, dn: &str, running: &Running, what: &str) -> String {
    let (stored_dn, password) =
        stored_single_password(&running.channel, TYPE, ROTATION_ID, what).await;
    assert_eq!(stored_dn, dn, "{what}");
    assert!(
        slapd.can_bind(dn, &password).await,
        "{what}: the stored password binds"
    );
    password
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rotation_through_the_binary_replaces_the_password() {
    let slapd = Slapd::shared().await;
    let dn = slapd.create_user(&unique("b"), "Initial-Pw-8").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &slapd, &dn);
    let running = issued_local::start(BIN, dir.path(), &config, (ADMIN_ENV, ADMIN_PASSWORD), None)
        .await
        .expect("serving");
    let first = assert_stored_binds(&slapd, &dn, &running, "first create").await;
    assert!(!slapd.can_bind(&dn, "Initial-Pw-8").await);
    running.rotate(TYPE).await.expect("rotate");
    let second = assert_stored_binds(&slapd, &dn, &running, "rotated").await;
    assert_ne!(first, second);
    assert!(
        !slapd.can_bind(&dn, &first).await,
        "single-phase: the old one dies"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_prepared_applied_verified_leaves_the_stored_password_binding() {
    let slapd = Slapd::shared().await;
    for boundary in ["prepared", "applied", "verified"] {
        let dn = slapd.create_user(&unique("k"), "Initial-Pw-9").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), &slapd, &dn);
        let env = (ADMIN_ENV, ADMIN_PASSWORD);
        issued_local::crash_twice_at(
            BIN,
            dir.path(),
            &config,
            env,
            boundary,
            TYPE,
            async |clean, what| {
                assert_stored_binds(&slapd, &dn, clean, what).await;
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_principal_through_the_binary_survives_kill_9_at_each_boundary() {
    let slapd = Slapd::shared().await;
    for boundary in ["prepared", "applied", "verified"] {
        let dn = slapd.create_user(&unique("tk"), "Initial-Pw-11").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let initial = dir.path().join("initial-password");
        std::fs::write(&initial, "Initial-Pw-11").expect("write the initial password");
        let extra = format!(
            "temporary_parameters = {{ password = \"file:{}\" }}",
            initial.display()
        );
        let parameters = format!("{{ dn = \"{dn}\", rotationMethod = \"target-principal\" }}");
        let config = config_with(dir.path(), &slapd, &parameters, &extra);
        // The wrong admin password: only the account's own login can change anything.
        let env = (ADMIN_ENV, "not-the-admin-password");
        for round in 1..=2 {
            let what = format!("target-principal, {boundary}, round {round}");
            issued_local::crash_at(BIN, dir.path(), &config, env, boundary, TYPE).await;
            let clean = issued_local::start(BIN, dir.path(), &config, env, None)
                .await
                .expect("serving");
            let stored = assert_stored_binds(&slapd, &dn, &clean, &what).await;
            assert!(!slapd.can_bind(&dn, "Initial-Pw-11").await, "{what}");
            clean.rotate(TYPE).await.expect("a rotation after recovery");
            let next = assert_stored_binds(&slapd, &dn, &clean, &what).await;
            assert_ne!(stored, next, "{what}");
            clean.stop().await;
            let states = attempt_states(&dir.path().join("data")).await;
            assert!(
                states.iter().all(|s| s == "committed" || s == "failed"),
                "{what}: open attempts remain: {states:?}"
            );
        }
    }
}
