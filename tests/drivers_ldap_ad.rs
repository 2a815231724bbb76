//! The `ldap-password` driver against a real Samba AD DC (provider `active-directory`,
//! `unicodePwd`): admin resets over LDAPS (CA-verified) and StartTLS (server certificate
//! pinned), by DN and by UPN; the old password dies at once (`old password allowed period = 0`);
//! AD's refusals classified (policy 19, TLS required 8, wrong admin 49) and changing nothing; a
//! wrong CA refused; no password in any error text; then the real binary: a rotation, and kill -9
//! at `prepared`, `applied` and `verified`, after which the stored password binds.
//!
//! The DC binds fixed ports, so this binary is in the nextest test group `samba`
//! (`.config/nextest.toml`, `max-threads = 1`).

use rotator::drivers::ldap_password::LdapDriver;
use rotator::drivers::{
    AnyDriver, BuildError, ConnectionConfig, Credential, Driver as _, DriverError, DriverErrorKind,
    DriverOptions, RotationDriver, Slot, TlsConfig, TlsMode,
};
use rotator::proto::{
    LdapPasswordParameters, PasswordRequirements, RequiredCharacters, RotationType,
    rotation_parameters::Kind,
};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_no_secret, captured_traces, check_contract, error_texts, start_trace_capture,
};
use rotator_testkit::issued_local::{self, ROTATION_ID, Running};
use rotator_testkit::local_server::{attempt_states, stored_single_password};
use rotator_testkit::samba_ad::{ADMIN_PASSWORD, ADMIN_UPN, DOMAIN, SambaAd};
use rotator_testkit::test_ca::TestCa;

const ROTATION: &str = ROTATION_ID;

#[derive(Clone, Copy)]
enum Transport {
    Ldaps,
    StartTls,
    Plain,
}

fn connection(transport: Transport, ca_pem: Option<String>) -> ConnectionConfig {
    let (port, mode) = match transport {
        Transport::Ldaps => (636, TlsMode::VerifyFull),
        Transport::StartTls => (389, TlsMode::VerifyFull),
        Transport::Plain => (389, TlsMode::Disable),
    };
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port,
        database: String::new(),
        admin_username: ADMIN_UPN.into(),
        admin_password: SecretString::new(ADMIN_PASSWORD),
        tls: TlsConfig { mode, ca_pem },
    }
}

fn options(transport: Transport) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("provider".into(), "active-directory".into());
    if let Transport::StartTls = transport {
        t.insert("transport".into(), "starttls".into());
    }
    t
}

fn try_build(
    connection: ConnectionConfig,
    dn: &str,
    method: &str,
    transport: Transport,
    requirements: Option<PasswordRequirements>,
) -> Result<RotationDriver, BuildError> {
    AnyDriver::build(
        ROTATION,
        connection,
        &Kind::LdapPassword(LdapPasswordParameters {
            dn: dn.to_owned(),
            rotation_method: Some(method.to_owned()),
            password_requirements: requirements,
        }),
        DriverOptions {
            options: options(transport),
            ..DriverOptions::default()
        },
    )
}

fn assert_kind(result: Result<(), DriverError>, kind: DriverErrorKind) -> DriverError {
    let e = result.expect_err("must fail");
    assert_eq!(e.kind(), kind, "{e}");
    e
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reset_over_ldaps_verified_by_the_ca() {
    let ad = SambaAd::shared().await;
    let name = unique("r");
    let dn = ad.create_user(&name, "Initial-Pass-1!").await;
    let rd = try_build(
        connection(Transport::Ldaps, Some(ad.ca_pem().to_owned())),
        &dn,
        "connection-principal",
        Transport::Ldaps,
        None,
    )
    .expect("build");
    assert_eq!(rd.driver.username_for(Slot::Second), dn, "single-phase");
    let kept = check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
    assert!(ad.can_bind(&dn, kept.secret.expose()).await);
    assert!(
        !ad.can_bind(&dn, "Initial-Pass-1!").await,
        "the old one dies"
    );
    rd.driver.probe().await.expect("probe");
    rd.driver.revoke(&dn).await.expect("revoke");
    assert!(!ad.can_bind(&dn, kept.secret.expose()).await, "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reset_of_a_upn_over_starttls_with_the_certificate_pinned() {
    let ad = SambaAd::shared().await;
    let name = unique("u");
    let dn = ad.create_user(&name, "Initial-Pass-2!").await;
    let upn = format!("{name}@{DOMAIN}");
    let rd = try_build(
        connection(Transport::StartTls, Some(ad.cert_pem())),
        &upn,
        "connection-principal",
        Transport::StartTls,
        None,
    )
    .expect("build");
    let kept = check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
    assert!(ad.can_bind(&dn, kept.secret.expose()).await, "the DN binds");
    assert!(
        ad.can_bind(&upn, kept.secret.expose()).await,
        "the UPN binds"
    );
    assert!(!ad.can_bind(&upn, "Initial-Pass-2!").await);

    let missing = format!("{}@{DOMAIN}", unique("nobody"));
    let rd = try_build(
        connection(Transport::StartTls, Some(ad.cert_pem())),
        &missing,
        "connection-principal",
        Transport::StartTls,
        None,
    )
    .expect("build");
    let e = assert_kind(
        rd.driver
            .apply(&Credential {
                id: missing.clone(),
                secret: rd.password_policy.generate(),
            })
            .await,
        DriverErrorKind::UserNotFound,
    );
    assert!(e.detail().contains("Unable to resolve DN"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_principal_self_change_deletes_the_old_and_adds_the_new_in_one_modify() {
    let ad = SambaAd::shared().await;
    let name = unique("s");
    let dn = ad.create_user(&name, "Current-Pass-4!").await;
    let upn = format!("{name}@{DOMAIN}");
    for (id, transport) in [(&dn, Transport::Ldaps), (&upn, Transport::StartTls)] {
        // Through the dispatch, as the engine calls it.
        let rd = try_build(
            connection(transport, Some(ad.ca_pem().to_owned())),
            id,
            "target-principal",
            transport,
            None,
        )
        .expect("build");
        let driver = &rd.driver;
        let before = if id == &dn {
            "Current-Pass-4!".to_owned()
        } else {
            "Second-Pass-5!aa".to_owned()
        };
        let new = Credential {
            id: id.clone(),
            secret: SecretString::new(if id == &dn {
                "Second-Pass-5!aa"
            } else {
                "Third-Pass-6!bb"
            }),
        };
        let current = [
            SecretString::new("Not-Held-Pass-0!"),
            SecretString::new(&before),
        ];
        driver
            .apply_with_current(&new, &current)
            .await
            .expect("the account changes its own password");
        assert!(ad.can_bind(&dn, new.secret.expose()).await);
        assert!(!ad.can_bind(&dn, &before).await, "the old one dies");
        // Already holding the candidate: Ok without a change (AD would refuse a change to a
        // password in the history, so a second change would fail).
        driver
            .apply_with_current(&new, &current)
            .await
            .expect("idempotent");
        driver.verify(&new).await.expect("verify");
    }
    // The connection may not reset it when the account does `replace` itself: AD says 50.
    let e = LdapDriver::new(
        &ConnectionConfig {
            admin_username: upn.clone(),
            admin_password: SecretString::new("Third-Pass-6!bb"),
            ..connection(Transport::Ldaps, Some(ad.ca_pem().to_owned()))
        },
        &options(Transport::Ldaps),
        &LdapPasswordParameters {
            dn: dn.clone(),
            rotation_method: None,
            password_requirements: None,
        },
    )
    .expect("build")
    .0
    .apply(&Credential {
        id: dn.clone(),
        secret: SecretString::new("Fourth-Pass-7!cc"),
    })
    .await
    .expect_err("a user may not reset its own password");
    assert_eq!(e.kind(), DriverErrorKind::PermissionDenied, "{e}");
    assert!(ad.can_bind(&dn, "Third-Pass-6!bb").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_classified_change_nothing_and_never_show_a_password() {
    start_trace_capture();
    let ad = SambaAd::shared().await;
    let dn = ad.create_user(&unique("f"), "Initial-Pass-3!").await;
    let ca = || Some(ad.ca_pem().to_owned());
    let mut errors = Vec::new();
    let mut secrets = Vec::new();

    // A wrong admin password: 49 on the admin bind.
    let mut c = connection(Transport::Ldaps, ca());
    let wrong_admin = SecretString::new("Wrong-Admin-Pass-9!");
    c.admin_password = wrong_admin.clone();
    let rd = try_build(c, &dn, "connection-principal", Transport::Ldaps, None).expect("build");
    let candidate = Credential {
        id: dn.clone(),
        secret: rd.password_policy.generate(),
    };
    let e = assert_kind(
        rd.driver.apply(&candidate).await,
        DriverErrorKind::AdminLoginRejected,
    );
    assert!(!e.may_have_changed_target());
    errors.push(e);
    secrets.extend([wrong_admin, candidate.secret.clone()]);

    // A password AD's policy refuses (too short): 19, with AD's reason.
    let short = PasswordRequirements {
        length: 4,
        required: Some(RequiredCharacters {
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols: 0,
        }),
        allowed_symbols: None,
    };
    let rd = try_build(
        connection(Transport::Ldaps, ca()),
        &dn,
        "connection-principal",
        Transport::Ldaps,
        Some(short),
    )
    .expect("build");
    let weak = Credential {
        id: dn.clone(),
        secret: rd.password_policy.generate(),
    };
    let e = assert_kind(
        rd.driver.apply(&weak).await,
        DriverErrorKind::PasswordRejected,
    );
    assert!(e.detail().contains("rc=19"), "{e}");
    errors.push(e);
    secrets.push(weak.secret.clone());

    // Plain LDAP (tls = "disable"): AD wants TLS for a simple bind (8 strongerAuthRequired).
    let rd = try_build(
        connection(Transport::Plain, None),
        &dn,
        "connection-principal",
        Transport::Plain,
        None,
    )
    .expect("build");
    let plain = Credential {
        id: dn.clone(),
        secret: rd.password_policy.generate(),
    };
    errors.push(assert_kind(
        rd.driver.apply(&plain).await,
        DriverErrorKind::Tls,
    ));
    secrets.push(plain.secret.clone());

    // A CA that did not issue the DC's certificate.
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let other = TestCa::create(ca_dir.path());
    for transport in [Transport::Ldaps, Transport::StartTls] {
        let rd = try_build(
            connection(transport, Some(other.ca_pem.clone())),
            &dn,
            "connection-principal",
            transport,
            None,
        )
        .expect("build");
        let e = assert_kind(rd.driver.apply(&candidate).await, DriverErrorKind::Tls);
        assert!(e.detail().contains("ca_file"), "says what to fix: {e}");
        errors.push(e);
    }

    assert!(ad.can_bind(&dn, "Initial-Pass-3!").await, "nothing changed");
    for s in &secrets {
        assert!(!ad.can_bind(&dn, s.expose()).await);
    }
    let refs: Vec<&SecretString> = secrets.iter().collect();
    assert_no_secret(&refs, error_texts(&errors).iter().map(String::as_str));
    assert_no_secret(&refs, [captured_traces().as_str()]);
}

// === through the binary ===

const BIN: &str = env!("CARGO_BIN_EXE_rotator");
const ADMIN_ENV: &str = "AD_ADMIN";

fn config(dir: &std::path::Path, ad: &SambaAd, dn: &str) -> std::path::PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "corp-ad"
app = "ldap"
host = "127.0.0.1"
port = 636
username = "{ADMIN_UPN}"
password = "env:{ADMIN_ENV}"
ca_file = "{ca}"
provider = "active-directory"

[[rotations]]
id = "{ROTATION_ID}"
name = "service-account"
type = "ldap-password"
connection = "corp-ad"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = {{ dn = "{dn}" }}
secrets_mapping = {{ dn = "LDAP_DN", password = "LDAP_PASSWORD" }}
"#,
        ca = ad.ca_file().display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The DC takes exactly the stored password (slot 0) of `dn`.
async fn assert_stored_binds(ad: &SambaAd, dn: &str, running: &Running, what: &str) -> String {
    let (stored_dn, password) = stored_single_password(
        &running.channel,
        RotationType::LdapPassword,
        ROTATION_ID,
        what,
    )
    .await;
    assert_eq!(stored_dn, dn, "{what}");
    assert!(
        ad.can_bind(dn, &password).await,
        "{what}: the stored password binds"
    );
    password
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_binary_a_rotation_and_kill_9_at_each_boundary_leave_the_stored_password_binding()
 {
    let ad = SambaAd::shared().await;
    let env = (ADMIN_ENV, ADMIN_PASSWORD);
    let dn = ad.create_user(&unique("b"), "Initial-Pass-8!").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_file = config(dir.path(), &ad, &dn);
    let running = issued_local::start(BIN, dir.path(), &config_file, env, None)
        .await
        .expect("serving");
    let first = assert_stored_binds(&ad, &dn, &running, "first create").await;
    assert!(!ad.can_bind(&dn, "Initial-Pass-8!").await);
    running
        .rotate(RotationType::LdapPassword)
        .await
        .expect("rotate");
    let second = assert_stored_binds(&ad, &dn, &running, "rotated").await;
    assert_ne!(first, second);
    assert!(
        !ad.can_bind(&dn, &first).await,
        "single-phase: the old one dies"
    );
    running.stop().await;

    for boundary in ["prepared", "applied", "verified"] {
        let dn = ad.create_user(&unique("k"), "Initial-Pass-9!").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config_file = config(dir.path(), &ad, &dn);
        for round in 1..=2 {
            let what = format!("{boundary}, round {round}");
            issued_local::crash_at(
                BIN,
                dir.path(),
                &config_file,
                env,
                boundary,
                RotationType::LdapPassword,
            )
            .await;
            let clean = issued_local::start(BIN, dir.path(), &config_file, env, None)
                .await
                .expect("serving");
            assert_stored_binds(&ad, &dn, &clean, &what).await;
            clean.stop().await;
            let states = attempt_states(&dir.path().join("data")).await;
            assert!(
                states.iter().all(|s| s == "committed" || s == "failed"),
                "{what}: open attempts remain: {states:?}"
            );
        }
    }
}
