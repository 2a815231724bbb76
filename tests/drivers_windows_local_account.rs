//! The Windows local account driver against a private standalone smbd (tdbsam local accounts,
//! SAMR over SMB3 with encryption required): the chosen-secret contract with login-as-root
//! (`SamrSetUserInfo2` level 23), a symbol-heavy password with `'`, `"` and `\`, forbidden
//! symbols refused at build and before any child runs, a wrong admin password refused with
//! nothing changed, the password never on a child's argv or environment and its credentials
//! file 0600 and gone afterwards (recorded by wrapper scripts in front of the real tools); then
//! the real binary: a single-phase local rotation, and kill -9 at `prepared`, `applied` and
//! `verified`, after which the stored password logs in.
//!
//! In the nextest test group `samba` (one test at a time).

use std::path::{Path, PathBuf};

use rotator::drivers::{
    AnyDriver, BuildError, ConnectionConfig, Credential, Driver as _, DriverError, DriverErrorKind,
    DriverOptions, RotationDriver, Slot,
};
use rotator::proto::{
    LocalAccountParameters, PasswordRequirements, RequiredCharacters, RotationType,
    rotation_parameters::Kind,
};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_no_secret, assert_phase_span, captured_traces, check_contract, error_texts,
    start_trace_capture,
};
use rotator_testkit::issued_local::{self, Running};
use rotator_testkit::local_server::stored_single_password;
use rotator_testkit::samba_standalone::{ADMIN, ADMIN_PASSWORD, SambaStandalone};

const SYSTEM: &str = "smb";
const ROTATION: &str = issued_local::ROTATION_ID;
const ADMIN_ENV: &str = "SMB_ADMIN";
const TYPE: RotationType = RotationType::WindowsLocalAccount;
const BIN: &str = env!("CARGO_BIN_EXE_rotator");
const INITIAL: &str = "Initial-Pass-1";
/// Every ASCII punctuation character the driver allows (``; | & ` $ ( )`` are forbidden).
const SAFE_SYMBOLS: &str = r#"'"\-_.~!*@#%^+=[]{}:,<>/?"#;

fn connection(samba: &SambaStandalone, admin_password: &str) -> ConnectionConfig {
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port: samba.port(),
        database: String::new(),
        admin_username: ADMIN.into(),
        admin_password: SecretString::new(admin_password),
        tls: Default::default(),
    }
}

fn parameters(user: &str, method: Option<&str>, req: Option<PasswordRequirements>) -> Kind {
    Kind::WindowsLocalAccount(LocalAccountParameters {
        username: user.to_owned(),
        rotation_method: method.map(str::to_owned),
        password_requirements: req,
        use_sudo: None,
    })
}

fn try_build(
    samba: &SambaStandalone,
    admin_password: &str,
    parameters: &Kind,
    options: toml::Table,
) -> Result<RotationDriver, BuildError> {
    AnyDriver::build(
        ROTATION,
        connection(samba, admin_password),
        parameters,
        DriverOptions {
            options,
            ..DriverOptions::default()
        },
    )
}

fn driver(samba: &SambaStandalone, user: &str) -> RotationDriver {
    try_build(
        samba,
        ADMIN_PASSWORD,
        &parameters(user, None, None),
        toml::Table::new(),
    )
    .expect("a valid windows rotation")
}

fn symbols(length: u32, symbols: u32, allowed: &str) -> PasswordRequirements {
    PasswordRequirements {
        length,
        required: Some(RequiredCharacters {
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols,
        }),
        allowed_symbols: Some(allowed.to_owned()),
    }
}

fn assert_kind(result: Result<(), DriverError>, kind: DriverErrorKind) -> DriverError {
    let e = result.expect_err("must fail");
    assert_eq!(e.kind(), kind, "{e}");
    e
}

/// Credentials files the driver left in the temp dir.
fn leftover_auth_files() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rotator-smb-"))
        })
        .collect()
}

/// Wrapper scripts named `rpcclient` and `smbclient` in `dir` that record their argv, their
/// environment exactly as passed to exec, and the mode and path of the `-A` file, then exec
/// the real tool. Returns the record file.
fn recording_tools(dir: &Path) -> PathBuf {
    let record = dir.join("calls");
    for tool in ["rpcclient", "smbclient"] {
        let real = which(tool);
        let script = format!(
            r#"#!/bin/sh
R='{record}'
{{ echo "CALL {tool}"; for a in "$@"; do echo "ARG $a"; done
  tr '\0' '\n' < /proc/$$/environ | sed 's/^/ENV /'
  prev=; for a in "$@"; do [ "$prev" = -A ] && echo "AUTH $a $(stat -c %a "$a")"; prev=$a; done
}} >> "$R"
exec '{real}' "$@"
"#,
            record = record.display(),
            real = real.display(),
        );
        let path = dir.join(tool);
        std::fs::write(&path, script).expect("write wrapper");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    record
}

fn which(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{tool} not on PATH; run scripts/test.sh"))
}

fn tools_option(dir: &Path) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("samba_bin_dir".into(), dir.display().to_string().into());
    t
}

#[tokio::test]
async fn contract_login_as_root_apply_verify_revoke_probe() {
    let samba = SambaStandalone::shared().await;
    let user = samba.add_user(INITIAL);
    let rd = driver(&samba, &user);
    assert_eq!(rd.driver.username_for(Slot::First), user);
    assert_eq!(rd.driver.username_for(Slot::Second), user, "single-phase");

    // apply, verify, apply again (idempotent), a wrong password refused, the replaced one
    // refused.
    let kept = check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
    assert!(samba.login_works(&user, kept.secret.expose()));
    assert!(
        !samba.login_works(&user, INITIAL),
        "the old password is dead"
    );
    rd.driver.probe().await.expect("probe");
    assert_phase_span("probe", SYSTEM, ADMIN);

    rd.driver.revoke(&user).await.expect("revoke");
    assert!(!samba.login_works(&user, kept.secret.expose()), "revoked");
    rd.driver.revoke(&user).await.expect("revoke again");
    assert_kind(
        rd.driver.verify(&kept).await,
        DriverErrorKind::LoginRejected,
    );
    assert!(
        leftover_auth_files().is_empty(),
        "{:?}",
        leftover_auth_files()
    );
}

#[tokio::test]
async fn quotes_backslashes_and_every_allowed_symbol_survive_rpcclients_parser() {
    let samba = SambaStandalone::shared().await;
    let user = samba.add_user(INITIAL);
    let rd = try_build(
        &samba,
        ADMIN_PASSWORD,
        &parameters(
            &user,
            Some("login-as-root"),
            Some(symbols(64, 40, SAFE_SYMBOLS)),
        ),
        toml::Table::new(),
    )
    .expect("build");
    // Fixed passwords with the hardest characters first, then generated ones.
    let mut passwords = vec![
        SecretString::new(r#"Ab1'"\'x"#),
        SecretString::new(r#"Ab1\\"''"\"#),
        SecretString::new(r"-Ab1 \ x"),
    ];
    passwords.extend((0..3).map(|_| rd.password_policy.generate()));
    for secret in passwords {
        let credential = Credential {
            id: user.clone(),
            secret,
        };
        rd.driver.apply(&credential).await.expect("apply");
        rd.driver.verify(&credential).await.expect("verify");
        assert!(
            samba.login_works(&user, credential.secret.expose()),
            "exactly this password was set"
        );
    }
}

#[tokio::test]
async fn forbidden_symbols_are_refused_before_anything_runs() {
    let samba = SambaStandalone::shared().await;
    let user = samba.add_user(INITIAL);
    for bad in [";", "|", "&", "`", "$", "(", ")", "-;", "\n", "\r", "\0"] {
        let built = try_build(
            &samba,
            ADMIN_PASSWORD,
            &parameters(&user, None, Some(symbols(20, 2, bad))),
            toml::Table::new(),
        );
        assert!(
            matches!(built, Err(BuildError::Password(_))),
            "allowedSymbols {bad:?} must be refused at build"
        );
    }
    let tools = tempfile::tempdir().expect("tempdir");
    let record = recording_tools(tools.path());
    let rd = try_build(
        &samba,
        ADMIN_PASSWORD,
        &parameters(&user, None, None),
        tools_option(tools.path()),
    )
    .expect("build");
    let mut errors = Vec::new();
    let mut secrets = Vec::new();
    for c in [";", "|", "&", "`", "$", "(", ")", "\n", "\r", "\0"] {
        let secret = SecretString::new(format!("Abc123{c}xyz789"));
        let credential = Credential {
            id: user.clone(),
            secret: secret.clone(),
        };
        let e = assert_kind(
            rd.driver.apply(&credential).await,
            DriverErrorKind::InvalidInput,
        );
        assert!(!e.may_have_changed_target());
        errors.push(e);
        secrets.push(secret);
    }
    assert!(!record.exists(), "no Samba tool ran");
    assert!(samba.login_works(&user, INITIAL), "nothing changed");
    let refs: Vec<&SecretString> = secrets.iter().collect();
    assert_no_secret(&refs, error_texts(&errors).iter().map(String::as_str));
}

#[tokio::test]
async fn privileged_or_malformed_usernames_and_bad_options_are_refused_at_build() {
    let samba = SambaStandalone::shared().await;
    for user in [
        "Administrator",
        "guest",
        "SYSTEM",
        "defaultaccount",
        "-x",
        "a.",
        "a b",
        "root",
        "ROOT",
    ] {
        assert!(
            try_build(
                &samba,
                ADMIN_PASSWORD,
                &parameters(user, None, None),
                toml::Table::new()
            )
            .is_err(),
            "{user:?} must be refused"
        );
    }
    let user = samba.add_user(INITIAL);
    assert!(
        try_build(
            &samba,
            ADMIN_PASSWORD,
            &parameters(&user, Some("login-as-admin"), None),
            toml::Table::new()
        )
        .is_err()
    );
    assert!(
        try_build(
            &samba,
            "pw;bad",
            &parameters(&user, None, None),
            toml::Table::new()
        )
        .is_err(),
        "a connection password with a forbidden character"
    );
    let mut opts = toml::Table::new();
    opts.insert("smb_encrypt".into(), "maybe".into());
    assert!(try_build(&samba, ADMIN_PASSWORD, &parameters(&user, None, None), opts).is_err());
    let mut opts = toml::Table::new();
    opts.insert("samba_bin_dir".into(), "relative/bin".into());
    assert!(try_build(&samba, ADMIN_PASSWORD, &parameters(&user, None, None), opts).is_err());
    let mut opts = toml::Table::new();
    opts.insert("workgroup".into(), "X".into());
    assert!(
        try_build(&samba, ADMIN_PASSWORD, &parameters(&user, None, None), opts).is_err(),
        "unknown option"
    );
    assert!(samba.login_works(&user, INITIAL), "building sends nothing");
}

#[tokio::test]
async fn refusals_are_classified_and_change_nothing() {
    start_trace_capture();
    let samba = SambaStandalone::shared().await;
    let user = samba.add_user(INITIAL);
    let wrong_admin = "Wrong-Admin-Pass-9";
    let rd = try_build(
        &samba,
        wrong_admin,
        &parameters(&user, None, None),
        toml::Table::new(),
    )
    .expect("build");
    let candidate = Credential {
        id: user.clone(),
        secret: rd.password_policy.generate(),
    };
    let mut errors = Vec::new();
    let e = assert_kind(
        rd.driver.apply(&candidate).await,
        DriverErrorKind::AdminLoginRejected,
    );
    assert!(!e.may_have_changed_target(), "refused at login");
    errors.push(e);
    errors.push(assert_kind(
        rd.driver.probe().await,
        DriverErrorKind::AdminLoginRejected,
    ));
    assert!(samba.login_works(&user, INITIAL), "nothing changed");

    // A user that does not exist (a valid name no account has).
    let good = driver(&samba, "nosuchuser1");
    errors.push(assert_kind(
        good.driver
            .apply(&Credential {
                id: "nosuchuser1".into(),
                secret: candidate.secret.clone(),
            })
            .await,
        DriverErrorKind::UserNotFound,
    ));
    // A target account as the "admin": SetUserInfo2 is refused (not an administrator).
    let other = samba.add_user(INITIAL);
    let as_user = AnyDriver::build(
        ROTATION,
        ConnectionConfig {
            admin_username: other.clone(),
            admin_password: SecretString::new(INITIAL),
            ..connection(&samba, INITIAL)
        },
        &parameters(&user, None, None),
        DriverOptions::default(),
    )
    .expect("build");
    errors.push(assert_kind(
        as_user.driver.apply(&candidate).await,
        DriverErrorKind::PermissionDenied,
    ));
    // Nothing listens: unreachable, before anything was sent.
    let closed = rotator_testkit::local_server::free_port();
    let unreachable = AnyDriver::build(
        ROTATION,
        ConnectionConfig {
            port: closed,
            ..connection(&samba, ADMIN_PASSWORD)
        },
        &parameters(&user, None, None),
        DriverOptions::default(),
    )
    .expect("build");
    let e = assert_kind(
        unreachable.driver.apply(&candidate).await,
        DriverErrorKind::Unreachable,
    );
    assert!(!e.may_have_changed_target());
    errors.push(e);
    errors.push(assert_kind(
        rd.driver.verify(&candidate).await,
        DriverErrorKind::LoginRejected,
    ));
    assert!(samba.login_works(&user, INITIAL), "nothing changed");

    let secrets = [
        &candidate.secret,
        &SecretString::new(wrong_admin),
        &SecretString::new(ADMIN_PASSWORD),
        &SecretString::new(INITIAL),
    ];
    assert_no_secret(&secrets, error_texts(&errors).iter().map(String::as_str));
    assert_no_secret(
        &secrets,
        [
            format!("{:?}", rd.driver).as_str(),
            captured_traces().as_str(),
        ],
    );
    assert!(leftover_auth_files().is_empty());
}

#[tokio::test]
async fn no_password_on_argv_or_in_a_childs_environment_and_the_auth_file_is_gone() {
    let samba = SambaStandalone::shared().await;
    let user = samba.add_user(INITIAL);
    let tools = tempfile::tempdir().expect("tempdir");
    let record = recording_tools(tools.path());
    let rd = try_build(
        &samba,
        ADMIN_PASSWORD,
        &parameters(&user, None, Some(symbols(40, 8, SAFE_SYMBOLS))),
        tools_option(tools.path()),
    )
    .expect("build");
    let credential = Credential {
        id: user.clone(),
        secret: rd.password_policy.generate(),
    };
    rd.driver.apply(&credential).await.expect("apply");
    rd.driver.verify(&credential).await.expect("verify");
    let wrong = Credential {
        id: user.clone(),
        secret: rd.password_policy.generate(),
    };
    assert_kind(
        rd.driver.verify(&wrong).await,
        DriverErrorKind::LoginRejected,
    );
    rd.driver.probe().await.expect("probe");
    assert!(samba.login_works(&user, credential.secret.expose()));
    // login-as-target: the old and the new password on rpcclient's stdin, the old one in the
    // credentials file.
    let as_target = try_build(
        &samba,
        ADMIN_PASSWORD,
        &parameters(
            &user,
            Some("login-as-target"),
            Some(symbols(40, 8, SAFE_SYMBOLS)),
        ),
        tools_option(tools.path()),
    )
    .expect("build");
    let next = Credential {
        id: user.clone(),
        secret: as_target.password_policy.generate(),
    };
    as_target
        .driver
        .apply_with_current(&next, std::slice::from_ref(&credential.secret))
        .await
        .expect("apply as the account");
    assert!(samba.login_works(&user, next.secret.expose()));

    let calls = std::fs::read_to_string(&record).expect("the wrappers ran");
    assert_eq!(calls.matches("CALL rpcclient").count(), 3, "{calls}");
    assert_eq!(calls.matches("CALL smbclient").count(), 2, "{calls}");
    for secret in [
        &credential.secret,
        &next.secret,
        &wrong.secret,
        &SecretString::new(ADMIN_PASSWORD),
        &SecretString::new(INITIAL),
    ] {
        assert!(
            !calls.contains(secret.expose()),
            "a password reached argv or env:\n{calls}"
        );
    }
    let env: Vec<&str> = calls
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .map(|kv| kv.split_once('=').map_or(kv, |(k, _)| k))
        .collect();
    assert!(
        env.iter().all(|k| *k == "PATH" || *k == "LC_ALL"),
        "a cleared environment: {env:?}"
    );
    assert!(calls.contains("ARG --option=client min protocol=SMB3"));
    assert!(calls.contains("ARG --option=client smb encrypt=required"));
    let auth: Vec<(&str, &str)> = calls
        .lines()
        .filter_map(|l| l.strip_prefix("AUTH ")?.rsplit_once(' '))
        .collect();
    assert_eq!(auth.len(), 5);
    for (path, mode) in auth {
        assert_eq!(mode, "600", "{path}");
        assert!(!Path::new(path).exists(), "{path} was removed");
    }
}

// === through the binary ===

fn config(dir: &Path, samba: &SambaStandalone, user: &str) -> PathBuf {
    config_with(dir, samba, user, "login-as-root")
}

/// A config whose rotation uses `method`; login-as-target also gets the account's initial
/// password (`temporary_parameters`, from a file: the one env variable is the admin's).
fn config_with(dir: &Path, samba: &SambaStandalone, user: &str, method: &str) -> PathBuf {
    let path = dir.join("rotator.toml");
    let temporary = if method == "login-as-target" {
        let initial = dir.join("initial-password");
        std::fs::write(&initial, INITIAL).expect("write the initial password");
        format!(
            "temporary_parameters = {{ password = \"file:{}\" }}\n",
            initial.display()
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"
[[connections]]
name = "fs1"
app = "smb"
host = "127.0.0.1"
port = {port}
username = "{ADMIN}"
password = "env:{ADMIN_ENV}"

[[rotations]]
id = "{ROTATION}"
name = "win-local"
type = "windows-local-account"
connection = "fs1"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
{temporary}parameters = {{ username = "{user}", rotationMethod = "{method}", passwordRequirements = {{ length = 32, required = {{ lowercase = 1, uppercase = 1, digits = 1, symbols = 4 }}, allowedSymbols = "'\"\\-_.!" }} }}
secrets_mapping = {{ username = "WINDOWS_USERNAME", password = "WINDOWS_PASSWORD" }}
"#,
        port = samba.port(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The stored credential (slot 0): its password logs in and is the account's only one.
async fn assert_stored_logs_in(
    samba: &SambaStandalone,
    user: &str,
    running: &Running,
    what: &str,
) -> String {
    let (username, password) = stored_single_password(&running.channel, TYPE, ROTATION, what).await;
    assert_eq!(username, user);
    assert!(
        samba.login_works(user, &password),
        "{what}: the stored password logs in"
    );
    password
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rotation_through_the_binary_replaces_the_password_in_place() {
    let samba = SambaStandalone::shared().await;
    for method in ["login-as-root", "login-as-target"] {
        rotate_through_the_binary(&samba, method).await;
    }
}

async fn rotate_through_the_binary(samba: &SambaStandalone, method: &str) {
    let user = samba.add_user(INITIAL);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with(dir.path(), samba, &user, method);
    let running = issued_local::start(BIN, dir.path(), &config, (ADMIN_ENV, ADMIN_PASSWORD), None)
        .await
        .expect("serving");
    let first = assert_stored_logs_in(samba, &user, &running, "first create").await;
    assert!(
        !samba.login_works(&user, INITIAL),
        "the unmanaged password was replaced"
    );
    running.rotate(TYPE).await.expect("rotate");
    let second = assert_stored_logs_in(samba, &user, &running, "rotated").await;
    assert_ne!(first, second);
    assert!(
        !samba.login_works(&user, &first),
        "single-phase: the previous password dies"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_prepared_applied_verified_leaves_the_stored_password_working() {
    let samba = SambaStandalone::shared().await;
    let cases = ["login-as-root", "login-as-target"]
        .into_iter()
        .flat_map(|m| ["prepared", "applied", "verified"].map(|b| (m, b)));
    for (method, boundary) in cases {
        let user = samba.add_user(INITIAL);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_with(dir.path(), &samba, &user, method);
        let env = (ADMIN_ENV, ADMIN_PASSWORD);
        issued_local::crash_twice_at(
            BIN,
            dir.path(),
            &config,
            env,
            boundary,
            TYPE,
            async |clean, what| {
                assert_stored_logs_in(&samba, &user, clean, &format!("{method}, {what}")).await;
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_64_on_forbidden_allowed_symbols_and_changes_nothing() {
    let samba = SambaStandalone::shared().await;
    let user = samba.add_user(INITIAL);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), &samba, &user);
    let text = std::fs::read_to_string(&path).expect("config").replace(
        r#"allowedSymbols = "'\"\\-_.!""#,
        r#"allowedSymbols = "-_$!""#,
    );
    assert!(text.contains(r#""-_$!""#), "the symbols were replaced");
    std::fs::write(&path, text).expect("write");
    let mut command = rotator_testkit::local_server::rotator_command(
        BIN,
        &path,
        &dir.path().join("data"),
        rotator_testkit::local_server::free_port(),
        (ADMIN_ENV, ADMIN_PASSWORD),
    );
    command.stderr(std::process::Stdio::piped());
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        command.spawn().expect("spawn").wait_with_output(),
    )
    .await
    .expect("serve stops on a configuration error")
    .expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("Invalid symbols"), "{stderr}");
    assert!(samba.login_works(&user, INITIAL), "nothing changed");
}

#[tokio::test]
async fn login_as_target_changes_its_own_password_with_a_current_one() {
    start_trace_capture();
    let samba = SambaStandalone::shared().await;
    let user = samba.add_user(INITIAL);
    let rd = try_build(
        &samba,
        ADMIN_PASSWORD,
        &parameters(
            &user,
            Some("login-as-target"),
            Some(symbols(40, 6, SAFE_SYMBOLS)),
        ),
        toml::Table::new(),
    )
    .expect("build");
    let first = Credential {
        id: user.clone(),
        secret: rd.password_policy.generate(),
    };
    let wrong = SecretString::new("Not-The-Password-7");
    // Without the current password there is nothing to log in with.
    let plain = assert_kind(rd.driver.apply(&first).await, DriverErrorKind::InvalidInput);
    assert!(!plain.may_have_changed_target());
    assert!(samba.login_works(&user, INITIAL));

    // The most likely password first; a wrong one is skipped.
    rd.driver
        .apply_with_current(&first, &[wrong.clone(), SecretString::new(INITIAL)])
        .await
        .expect("apply as the account");
    rd.driver.verify(&first).await.expect("verify");
    assert!(
        !samba.login_works(&user, INITIAL),
        "the old password is dead"
    );
    // An interrupted apply already set it: the known passwords fail, the new one logs in.
    rd.driver
        .apply_with_current(&first, &[SecretString::new(INITIAL)])
        .await
        .expect("idempotent");
    assert!(samba.login_works(&user, first.secret.expose()));

    let second = Credential {
        id: user.clone(),
        secret: rd.password_policy.generate(),
    };
    rd.driver
        .apply_with_current(&second, std::slice::from_ref(&first.secret))
        .await
        .expect("a rotation from the stored password");
    assert!(samba.login_works(&user, second.secret.expose()));
    assert!(!samba.login_works(&user, first.secret.expose()));

    // No known password logs in: refused, nothing changed.
    let third = Credential {
        id: user.clone(),
        secret: rd.password_policy.generate(),
    };
    let refused = assert_kind(
        rd.driver
            .apply_with_current(&third, &[wrong.clone(), first.secret.clone()])
            .await,
        DriverErrorKind::LoginRejected,
    );
    assert!(!refused.may_have_changed_target());
    assert!(
        samba.login_works(&user, second.secret.expose()),
        "nothing changed"
    );
    let no_revoke = assert_kind(rd.driver.revoke(&user).await, DriverErrorKind::InvalidInput);
    assert!(samba.login_works(&user, second.secret.expose()));

    let secrets = [&first.secret, &second.secret, &third.secret, &wrong];
    assert_no_secret(
        &secrets,
        error_texts(&[plain, refused, no_revoke])
            .iter()
            .map(String::as_str),
    );
    assert_no_secret(&secrets, [captured_traces().as_str()]);
    assert!(leftover_auth_files().is_empty());
}

#[tokio::test]
async fn a_hung_tool_times_out_is_killed_and_leaves_no_credentials_file() {
    let samba = SambaStandalone::shared().await;
    let user = samba.add_user(INITIAL);
    let tools = tempfile::tempdir().expect("tempdir");
    let record = tools.path().join("hung");
    // An rpcclient that never answers: records its pid and -A file, then sleeps in place.
    let script = format!(
        "#!/bin/sh\nprev=; for a in \"$@\"; do [ \"$prev\" = -A ] && echo \"$$ $a\" > '{}'; prev=$a; done\nexec sleep 600\n",
        record.display()
    );
    let path = tools.path().join("rpcclient");
    std::fs::write(&path, script).expect("write");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut options = tools_option(tools.path());
    options.insert("command_timeout_seconds".into(), 1.into());
    let rd = try_build(
        &samba,
        ADMIN_PASSWORD,
        &parameters(&user, None, None),
        options,
    )
    .expect("build");
    let credential = Credential {
        id: user.clone(),
        secret: rd.password_policy.generate(),
    };
    let e = assert_kind(rd.driver.apply(&credential).await, DriverErrorKind::Timeout);
    assert!(
        e.may_have_changed_target(),
        "after a timeout the outcome is unknown"
    );
    let text = std::fs::read_to_string(&record).expect("the fake ran");
    let (pid, auth) = text.trim().split_once(' ').expect("pid and file");
    assert!(!Path::new(auth).exists(), "the credentials file is gone");
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gone() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone(), "the hung child {pid} was killed");
    assert!(samba.login_works(&user, INITIAL), "nothing changed");
    let mut bad = tools_option(tools.path());
    bad.insert("command_timeout_seconds".into(), 0.into());
    assert!(try_build(&samba, ADMIN_PASSWORD, &parameters(&user, None, None), bad).is_err());
}
