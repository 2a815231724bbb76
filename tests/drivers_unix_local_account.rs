//! The `unix-linux-local-account` driver against a private sshd (`rotator_testkit::sshd`) and
//! real local accounts: login-as-root with a password admin (sudo asking for its password) and
//! with a key admin (sudo NOPASSWD), login-as-target (`passwd` over a PTY), the pinned host key
//! (a different one is refused before login and nothing changes), refusals classified, no
//! password in errors, `Debug`, traces or command lines; then the real binary: kill -9 at
//! `prepared`, `applied` and `verified`, after which the stored password logs in.
//!
//! A wrong-password login costs about 3 s (pam_unix's delay), so negative logins are few.

use std::path::{Path, PathBuf};

use rotator::drivers::unix_local_account::{
    self, PASSWD_COMMAND, Sudo, chpasswd_command, lookup_command,
};
use rotator::drivers::{
    AnyDriver, BuildError, ConnectionConfig, Credential, Driver as _, DriverError, DriverErrorKind,
    DriverOptions, RotationDriver, Slot, TlsConfig,
};
use rotator::proto::{LocalAccountParameters, RotationType, rotation_parameters::Kind};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_no_secret, assert_phase_span, captured_traces, check_contract, error_texts,
    start_trace_capture,
};
use rotator_testkit::issued_local::{self, Running};
use rotator_testkit::local_server::stored_single_password;
use rotator_testkit::sshd::{Sshd, UnixUser};

const SYSTEM: &str = "ssh";
const TYPE: RotationType = RotationType::UnixLinuxLocalAccount;
const ADMIN_ENV: &str = "UNIX_ADMIN";
const BIN: &str = env!("CARGO_BIN_EXE_rotator");

fn connection(sshd: &Sshd, admin: &str, password: &str) -> ConnectionConfig {
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port: sshd.port(),
        database: String::new(),
        admin_username: admin.to_owned(),
        admin_password: SecretString::new(password),
        tls: TlsConfig::default(),
    }
}

fn pinned(sshd: &Sshd) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("host_key".into(), sshd.host_key().into());
    t
}

fn parameters(user: &str, method: Option<&str>, sudo: bool) -> LocalAccountParameters {
    LocalAccountParameters {
        username: user.to_owned(),
        rotation_method: method.map(str::to_owned),
        password_requirements: None,
        use_sudo: Some(sudo),
    }
}

fn try_build(
    connection: ConnectionConfig,
    parameters: LocalAccountParameters,
    options: toml::Table,
) -> Result<RotationDriver, BuildError> {
    AnyDriver::build(
        issued_local::ROTATION_ID,
        connection,
        &Kind::UnixLinuxLocalAccount(parameters),
        DriverOptions {
            options,
            ..DriverOptions::default()
        },
    )
}

fn assert_kind(result: Result<(), DriverError>, kind: DriverErrorKind) -> DriverError {
    let e = result.expect_err("must fail");
    assert_eq!(e.kind(), kind, "{e}");
    e
}

const ADMIN_PASSWORD: &str = "Admin-Pass-1-long-enough";
const OLD_PASSWORD: &str = "Old-Pass-1-long-enough";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_as_root_with_a_password_admin_through_a_sudo_that_asks() {
    let sshd = Sshd::shared().await;
    let mut admin = UnixUser::create(ADMIN_PASSWORD);
    admin.allow_sudo_chpasswd(false);
    let target = UnixUser::create(OLD_PASSWORD);
    let rd = try_build(
        connection(&sshd, admin.name(), ADMIN_PASSWORD),
        parameters(target.name(), None, true),
        pinned(&sshd),
    )
    .expect("a valid unix rotation");
    assert_eq!(rd.driver.username_for(Slot::First), target.name());
    assert_eq!(rd.driver.username_for(Slot::Second), target.name());
    let before = target.shadow_hash();
    // apply, verify, apply again (idempotent), a wrong password refused, the replaced one
    // refused; no secret in errors, Debug or traces.
    let kept = check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
    assert_ne!(target.shadow_hash(), before, "the password changed");
    rd.driver.probe().await.expect("probe");
    assert_phase_span("probe", SYSTEM, admin.name());

    rd.driver.revoke(target.name()).await.expect("revoke");
    let refused = assert_kind(
        rd.driver.verify(&kept).await,
        DriverErrorKind::LoginRejected,
    );
    assert_no_secret(
        &[&kept.secret, &SecretString::new(ADMIN_PASSWORD)],
        error_texts(&[refused])
            .iter()
            .map(String::as_str)
            .chain([captured_traces().as_str()]),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_as_root_with_a_key_admin_and_nopasswd_sudo() {
    let sshd = Sshd::shared().await;
    let mut admin = UnixUser::create(ADMIN_PASSWORD);
    let (key_file, public) = sshd.client_key(&format!("{}_key", admin.name()), "Key-Phrase-1");
    admin.authorize_key(&public);
    admin.allow_sudo_chpasswd(true);
    let target = UnixUser::create(OLD_PASSWORD);
    let mut options = pinned(&sshd);
    options.insert(
        "private_key_file".into(),
        key_file.display().to_string().into(),
    );
    let phrase_file = key_file.with_extension("phrase");
    std::fs::write(&phrase_file, "Key-Phrase-1\n").expect("passphrase file");
    options.insert(
        "private_key_passphrase".into(),
        format!("file:{}", phrase_file.display()).into(),
    );
    // No connection password: the key logs in.
    let rd = try_build(
        connection(&sshd, admin.name(), ""),
        parameters(target.name(), Some("login-as-root"), true),
        options.clone(),
    )
    .expect("a valid unix rotation");
    let new = Credential {
        id: target.name().to_owned(),
        secret: rd.password_policy.generate(),
    };
    rd.driver
        .apply(&new)
        .await
        .expect("apply with the key admin");
    rd.driver
        .verify(&new)
        .await
        .expect("the new password logs in");
    rd.driver
        .apply(&new)
        .await
        .expect("apply again (idempotent)");
    rd.driver.verify(&new).await.expect("still logs in");
    rd.driver.probe().await.expect("probe with the key");
    let old = Credential {
        id: target.name().to_owned(),
        secret: SecretString::new(OLD_PASSWORD),
    };
    assert_kind(rd.driver.verify(&old).await, DriverErrorKind::LoginRejected);

    // Without NOPASSWD a key admin cannot answer sudo: refused, nothing changed.
    admin.allow_sudo_chpasswd(false);
    let hash = target.shadow_hash();
    let other = Credential {
        id: target.name().to_owned(),
        secret: rd.password_policy.generate(),
    };
    let e = assert_kind(
        rd.driver.apply(&other).await,
        DriverErrorKind::PermissionDenied,
    );
    assert!(!e.may_have_changed_target(), "{e}");
    assert_eq!(target.shadow_hash(), hash, "nothing changed");
    // A wrong passphrase does not build.
    options.insert(
        "private_key_passphrase".into(),
        format!("file:{}", key_file.display()).into(),
    );
    assert!(
        try_build(
            connection(&sshd, admin.name(), ""),
            parameters(target.name(), None, true),
            options,
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_as_target_changes_its_own_password_over_a_pty() {
    let sshd = Sshd::shared().await;
    let target = UnixUser::create(OLD_PASSWORD);
    // The connection's user is never logged in to by login-as-target.
    let conn = connection(&sshd, "rotu_nobody", "unused-admin-password");
    let params = parameters(target.name(), Some("login-as-target"), false);
    let rd = try_build(conn.clone(), params.clone(), pinned(&sshd)).expect("build");
    let new = Credential {
        id: target.name().to_owned(),
        secret: rd.password_policy.generate(),
    };
    // Without the current password, apply refuses before sending anything.
    let e = assert_kind(rd.driver.apply(&new).await, DriverErrorKind::InvalidInput);
    assert!(!e.may_have_changed_target());

    // The engine's seam: the passwords the account may hold, most likely first.
    let driver = &rd.driver;
    let before = target.shadow_hash();
    let wrong = SecretString::new("Not-The-Current-1");
    let old = SecretString::new(OLD_PASSWORD);
    driver
        .apply_with_current(&new, &[wrong.clone(), old.clone()])
        .await
        .expect("passwd as the account, the second candidate logging in");
    assert_ne!(target.shadow_hash(), before);
    rd.driver
        .verify(&new)
        .await
        .expect("the new password logs in");
    // Again: the new password itself logs in, so nothing is left to do.
    let hash = target.shadow_hash();
    driver
        .apply_with_current(&new, std::slice::from_ref(&old))
        .await
        .expect("idempotent");
    assert_eq!(target.shadow_hash(), hash, "unchanged by the repeat");
    let old_login = Credential {
        id: target.name().to_owned(),
        secret: old.clone(),
    };
    let refused = assert_kind(
        rd.driver.verify(&old_login).await,
        DriverErrorKind::LoginRejected,
    );
    assert_no_secret(
        &[&new.secret, &old, &wrong],
        error_texts(&[refused, e]).iter().map(String::as_str),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_key_is_refused_before_login_and_nothing_changes() {
    start_trace_capture();
    let sshd = Sshd::shared().await;
    let mut admin = UnixUser::create(ADMIN_PASSWORD);
    admin.allow_sudo_chpasswd(true);
    let target = UnixUser::create(OLD_PASSWORD);
    let (_, stranger) = sshd.client_key(&format!("{}_stranger", admin.name()), "");
    let conn = connection(&sshd, admin.name(), ADMIN_PASSWORD);
    let params = parameters(target.name(), None, true);

    let mut wrong_pin = toml::Table::new();
    wrong_pin.insert("host_key".into(), stranger.into());
    let rd = try_build(conn.clone(), params.clone(), wrong_pin).expect("build");
    let before = target.shadow_hash();
    let candidate = Credential {
        id: target.name().to_owned(),
        secret: rd.password_policy.generate(),
    };
    let mut errors = Vec::new();
    for result in [
        rd.driver.apply(&candidate).await,
        rd.driver.probe().await,
        rd.driver.verify(&candidate).await,
    ] {
        let e = assert_kind(result, DriverErrorKind::Tls);
        assert!(!e.is_transient(), "never retried: {e}");
        assert!(!e.may_have_changed_target());
        assert!(
            e.detail().contains(sshd.host_fingerprint()),
            "names the offered key: {e}"
        );
        errors.push(e);
    }
    assert_eq!(target.shadow_hash(), before, "nothing changed");

    // A fingerprint pin of the right key works; of another, it is refused the same way.
    let mut by_fingerprint = toml::Table::new();
    by_fingerprint.insert(
        "host_key_fingerprint".into(),
        sshd.host_fingerprint().into(),
    );
    let rd = try_build(conn.clone(), params.clone(), by_fingerprint).expect("build");
    rd.driver.probe().await.expect("the pinned fingerprint");

    // No pin at all: a configuration error, nothing sent.
    assert!(try_build(conn.clone(), params.clone(), toml::Table::new()).is_err());
    assert_no_secret(
        &[&candidate.secret, &SecretString::new(ADMIN_PASSWORD)],
        error_texts(&errors)
            .iter()
            .map(String::as_str)
            .chain([captured_traces().as_str()]),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_classified_and_change_nothing() {
    start_trace_capture();
    let sshd = Sshd::shared().await;
    let mut admin = UnixUser::create(ADMIN_PASSWORD);
    admin.allow_sudo_chpasswd(true);
    let target = UnixUser::create(OLD_PASSWORD);
    let conn = connection(&sshd, admin.name(), ADMIN_PASSWORD);
    let before = target.shadow_hash();
    let rd = try_build(
        conn.clone(),
        parameters(target.name(), None, true),
        pinned(&sshd),
    )
    .expect("build");
    let candidate = Credential {
        id: target.name().to_owned(),
        secret: rd.password_policy.generate(),
    };
    let mut errors = Vec::new();

    // The admin's password is wrong: refused at login.
    let wrong_admin = try_build(
        connection(&sshd, admin.name(), "Wrong-Admin-Pass-1"),
        parameters(target.name(), None, true),
        pinned(&sshd),
    )
    .expect("build");
    let e = assert_kind(
        wrong_admin.driver.apply(&candidate).await,
        DriverErrorKind::AdminLoginRejected,
    );
    assert!(!e.may_have_changed_target());
    errors.push(e);

    // An admin without a sudo rule: sudo runs nothing, chpasswd never starts.
    let powerless = UnixUser::create(ADMIN_PASSWORD);
    let no_rule = try_build(
        connection(&sshd, powerless.name(), ADMIN_PASSWORD),
        parameters(target.name(), None, true),
        pinned(&sshd),
    )
    .expect("build");
    errors.push(assert_kind(
        no_rule.driver.apply(&candidate).await,
        DriverErrorKind::Server,
    ));
    // Without useSudo a non-root admin's chpasswd fails the same way.
    let no_sudo = try_build(
        conn.clone(),
        parameters(target.name(), None, false),
        pinned(&sshd),
    )
    .expect("build");
    errors.push(assert_kind(
        no_sudo.driver.apply(&candidate).await,
        DriverErrorKind::Server,
    ));

    // No such account: found out before the password line is written.
    let ghost = "rotu_ghost0000";
    let missing =
        try_build(conn.clone(), parameters(ghost, None, true), pinned(&sshd)).expect("build");
    let e = assert_kind(
        missing
            .driver
            .apply(&Credential {
                id: ghost.into(),
                secret: candidate.secret.clone(),
            })
            .await,
        DriverErrorKind::UserNotFound,
    );
    errors.push(e);

    // Nobody listens: transient, and certainly nothing sent.
    let closed = rotator_testkit::local_server::free_port();
    let mut unreachable = conn.clone();
    unreachable.port = closed;
    let rd_closed = try_build(
        unreachable,
        parameters(target.name(), None, true),
        pinned(&sshd),
    )
    .expect("build");
    let e = assert_kind(
        rd_closed.driver.apply(&candidate).await,
        DriverErrorKind::Unreachable,
    );
    assert!(e.is_transient() && !e.may_have_changed_target(), "{e}");
    errors.push(e);

    // Build-time refusals: the connection's own user, a blocked user, a bad name.
    let mut blocked = pinned(&sshd);
    blocked.insert(
        "blocked_users".into(),
        format!("root, {}", target.name().to_uppercase()).into(),
    );
    assert!(try_build(conn.clone(), parameters(target.name(), None, true), blocked).is_err());
    assert!(
        try_build(
            conn.clone(),
            parameters(admin.name(), None, true),
            pinned(&sshd)
        )
        .is_err()
    );
    assert!(try_build(conn.clone(), parameters("a;b", None, true), pinned(&sshd)).is_err());
    assert!(
        try_build(
            conn.clone(),
            parameters(target.name(), Some("sideways"), true),
            pinned(&sshd)
        )
        .is_err()
    );
    // Another account than the rotation's is refused by the dispatch, before sending.
    assert_kind(
        rd.driver
            .apply(&Credential {
                id: admin.name().to_owned(),
                secret: candidate.secret.clone(),
            })
            .await,
        DriverErrorKind::InvalidInput,
    );

    assert_eq!(target.shadow_hash(), before, "nothing changed");
    let secrets = [&candidate.secret, &SecretString::new(ADMIN_PASSWORD)];
    assert_no_secret(&secrets, error_texts(&errors).iter().map(String::as_str));
    assert_no_secret(
        &secrets,
        [
            format!("{:?}", rd.driver).as_str(),
            captured_traces().as_str(),
        ],
    );
}

#[test]
fn command_lines_never_hold_a_password() {
    // Every command the driver sends: the password travels on stdin (chpasswd) or through the
    // PTY (passwd), never in argv, where `ps` would show it.
    let commands = [
        chpasswd_command(Sudo::No),
        chpasswd_command(Sudo::NoPassword),
        chpasswd_command(Sudo::PasswordOnStdin),
        lookup_command("rotu_x"),
        PASSWD_COMMAND.to_owned(),
    ];
    for c in &commands {
        assert!(!c.contains(':'), "{c}");
        assert!(
            c.split_whitespace()
                .all(|w| w.len() < 24 || w.starts_with('/')),
            "no long token (a password) in {c}"
        );
    }
    assert_eq!(unix_local_account::DESCRIPTOR.app, "ssh");
}

// === through the binary ===

fn config(dir: &Path, sshd: &Sshd, admin: &str, target: &str) -> PathBuf {
    write_config(
        dir,
        sshd,
        admin,
        &format!(
            r#"parameters = {{ username = "{target}", rotationMethod = "login-as-root", useSudo = true }}"#
        ),
    )
}

/// A login-as-target rotation: the account's password before rotator's first change is read
/// from a file (`temporary_parameters`); the connection's user is never logged in to.
fn config_as_target(dir: &Path, sshd: &Sshd, target: &str, initial: &str) -> PathBuf {
    let file = dir.join("initial-password");
    std::fs::write(&file, format!("{initial}\n")).expect("initial password file");
    write_config(
        dir,
        sshd,
        "rotu_nobody",
        &format!(
            r#"parameters = {{ username = "{target}", rotationMethod = "login-as-target" }}
temporary_parameters = {{ password = "file:{}" }}"#,
            file.display()
        ),
    )
}

fn write_config(dir: &Path, sshd: &Sshd, admin: &str, parameters: &str) -> PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "host"
app = "ssh"
host = "127.0.0.1"
port = {port}
username = "{admin}"
password = "env:{ADMIN_ENV}"
host_key = "{host_key}"

[[rotations]]
id = "{id}"
name = "local-account"
type = "unix-linux-local-account"
connection = "host"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
{parameters}
secrets_mapping = {{ username = "UNIX_USERNAME", password = "UNIX_PASSWORD" }}
"#,
        port = sshd.port(),
        host_key = sshd.host_key(),
        id = issued_local::ROTATION_ID,
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The stored credential (slot 0) of the rotation: (username, password).
async fn stored(running: &Running) -> (String, String) {
    stored_single_password(&running.channel, TYPE, issued_local::ROTATION_ID, "stored").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_prepared_applied_verified_leaves_the_stored_password_working() {
    let sshd = Sshd::shared().await;
    let mut admin = UnixUser::create(ADMIN_PASSWORD);
    admin.allow_sudo_chpasswd(true);
    let target = UnixUser::create(OLD_PASSWORD);
    crash_rounds(&sshd, &target, |dir| {
        config(dir, &sshd, admin.name(), target.name())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_as_target_through_the_binary_survives_kill_9_at_every_boundary() {
    let sshd = Sshd::shared().await;
    let target = UnixUser::create(OLD_PASSWORD);
    // Each boundary starts from a new store: the first create logs in with the initial
    // password from temporary_parameters, so the account gets it back first.
    crash_rounds(&sshd, &target, |dir| {
        target.set_password(OLD_PASSWORD);
        config_as_target(dir, &sshd, target.name(), OLD_PASSWORD)
    })
    .await;
}

/// For each boundary, in a new store: kill -9 at it during the first create (start-up), restart
/// and check; then kill -9 at it during a rotation, restart and check. After each restart the
/// one stored credential is the account's, it logs in, and no attempt is left open.
async fn crash_rounds(sshd: &Sshd, target: &UnixUser, mut config: impl FnMut(&Path) -> PathBuf) {
    // Verify-only driver: a fresh SSH login as the account (the admin is never used).
    let checker = try_build(
        connection(sshd, "rotu_nobody", "unused-admin-password"),
        parameters(target.name(), None, false),
        pinned(sshd),
    )
    .expect("build");
    let env = (ADMIN_ENV, ADMIN_PASSWORD);
    let mut previous: Option<String> = None;
    for boundary in ["prepared", "applied", "verified"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        issued_local::crash_twice_at(
            BIN,
            dir.path(),
            &config,
            env,
            boundary,
            TYPE,
            async |clean, what| {
                let (user, password) = stored(clean).await;
                assert_eq!(user, target.name(), "{what}");
                checker
                    .driver
                    .verify(&Credential {
                        id: user,
                        secret: SecretString::new(password.clone()),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{what}: the stored password logs in: {e}"));
                assert_ne!(previous.as_deref(), Some(password.as_str()), "{what}");
                previous = Some(password);
            },
        )
        .await;
    }
}
