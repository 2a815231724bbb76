//! `windows-local-account`: the password of a machine-local Windows (or Samba tdbsam) account,
//! chosen by rotator and set over SMB3 + MS-RPC SAMR with Samba's `rpcclient`, as upstream
//! (`spec/rotation-types.md` §12). Single-phase: the account has one password, replaced in place.
//!
//! - **apply, login-as-root** (default): `rpcclient` logged in as the connection's admin runs
//!   `setuserinfo2 <user> 23 <new>` (SamrSetUserInfo2, level 23: a password reset). Setting the
//!   same password again is harmless, so a resumed attempt applies again.
//! - **apply, login-as-target**: `rpcclient` logged in as the target with each password it may
//!   hold now runs `chgpasswd3 <user> <old> <new>` (SamrUnicodeChangePasswordUser3: a non-admin
//!   may not reset its own password with SetUserInfo2, Samba answers `NT_STATUS_ACCESS_DENIED`).
//!   When none logs in but the new one does, an interrupted apply already set it.
//! - **verify**: `smbclient -L` logged in as the target with the new password and no domain (an
//!   SMB session setup as a local account).
//! - **revoke** (login-as-root only): a reset to a random password nobody keeps.
//! - **probe**: `rpcclient` logged in as the admin runs `lookupnames <user>`, changing nothing.
//!
//! **The password never reaches a command line or an environment.** Credentials go in a 0600
//! temporary file (`tempfile`, removed on drop, also when the call is cancelled) passed with
//! `-A`, and the command goes on `rpcclient`'s standard input, not `-c` (rpcclient reads commands
//! line by line from a non-tty stdin; it then exits 0 whatever the command's result, so the
//! result is read from its output: `result was NT_STATUS_…`). The child runs with a cleared
//! environment (`PATH`, `LC_ALL=C`), a timeout, and is killed when the call is dropped. Every
//! argument is backslash-escaped for rpcclient's command parser (popt), so `'`, `"` and `\`
//! survive. Symbols that upstream forbids (``; | & ` $ ( )``, newline, CR, NUL) are refused in
//! `allowedSymbols` at build and in any password before a child runs (spec §14 item 19).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use super::password::PasswordPolicy;
use super::redact::Redactor;
use super::{
    BuildContext, Built, CONNECT_TIMEOUT, Credential, DbSystem, Descriptor, Driver, DriverError,
    DriverErrorKind, OPERATION_TIMEOUT, Operations, Phase, invalid,
};
use crate::proto::{RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("smb");

/// Characters no password handled by this driver may contain (upstream's rule, spec §12).
pub const FORBIDDEN_CHARACTERS: &[char] = &[';', '|', '&', '`', '$', '(', ')', '\n', '\r', '\0'];

/// Account names upstream refuses to rotate, compared case-insensitively.
pub const PRIVILEGED_ACCOUNTS: &[&str] = &["administrator", "system", "guest", "defaultaccount"];

/// How long one `rpcclient` or `smbclient` run may take: connect, log in, one command.
pub const CHILD_TIMEOUT: Duration =
    Duration::from_secs(CONNECT_TIMEOUT.as_secs() + OPERATION_TIMEOUT.as_secs());

/// The connection option that replaces [`CHILD_TIMEOUT`] (whole seconds, 1–600).
pub const TIMEOUT_OPTION: &str = "command_timeout_seconds";

/// The longest command line fed to rpcclient (its reader takes `BUFSIZ`, 8 KiB, per line).
const MAX_COMMAND: usize = 4096;

/// The prefix of the temporary credentials files, so that leftovers are easy to find.
pub const AUTH_FILE_PREFIX: &str = "rotator-smb-";

/// `windows-local-account` over SMB3 + SAMR with Samba's client tools.
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "smb",
    default_port: 445,
    rotation_types: &[RotationType::WindowsLocalAccount],
    shape: CredentialShape::UsernamePassword,
    source: SecretSource::Chosen,
    system: SYSTEM,
    operations: Operations {
        apply: "SamrSetUserInfo2",
        verify: "SMB session setup",
        revoke: "SamrSetUserInfo2",
        probe: "LsarLookupNames",
    },
    options: &["domain", "smb_encrypt", "samba_bin_dir", TIMEOUT_OPTION],
    build,
};

/// Who logs in to change the password (`rotationMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationMethod {
    /// `login-as-root`: the connection's admin resets the password (the default).
    LoginAsRoot,
    /// `login-as-target`: the account changes its own password with its current one.
    LoginAsTarget,
}

/// The Windows local account driver of one rotation.
#[derive(Debug)]
pub struct WindowsDriver {
    host: String,
    port: u16,
    /// The connection's domain, for the admin's login only (the target is a local account).
    domain: Option<String>,
    admin_username: String,
    admin_password: SecretString,
    /// The rotated account.
    target: String,
    method: RotationMethod,
    /// `client smb encrypt`: `required` unless the connection says otherwise.
    encrypt: &'static str,
    /// Where `rpcclient` and `smbclient` are; `PATH` when absent.
    bin_dir: Option<PathBuf>,
    /// How long one tool run may take.
    timeout: Duration,
}

/// Whose login a tool run uses: decides how a refused logon is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    Admin,
    Target,
}

/// One of Samba's client tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Rpcclient,
    Smbclient,
}

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::WindowsLocalAccount(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let bad = |m: String| invalid(SYSTEM, Phase::Build, m);
    let target = parameters.username.trim().to_owned();
    check_target_username(&target).map_err(bad)?;
    let method = match parameters.rotation_method.as_deref().map(str::trim) {
        None | Some("" | "login-as-root") => RotationMethod::LoginAsRoot,
        Some("login-as-target") => RotationMethod::LoginAsTarget,
        Some(other) => {
            return Err(bad(format!(
                "rotationMethod must be login-as-root or login-as-target, not {other:?}"
            )));
        }
    };
    let c = ctx.connection;
    check_host(&c.host).map_err(bad)?;
    check_admin_username(&c.admin_username).map_err(bad)?;
    check_password(&c.admin_password).map_err(|m| bad(format!("the connection password {m}")))?;
    if target.eq_ignore_ascii_case(c.admin_username.trim()) {
        return Err(bad(
            "Provided username is used in Infisical app connections.".to_owned(),
        ));
    }
    let domain =
        super::http::string_option(ctx.options, "domain", SYSTEM)?.filter(|d| !d.is_empty());
    if let Some(d) = &domain {
        check_domain(d).map_err(bad)?;
    }
    let encrypt = match super::http::string_option(ctx.options, "smb_encrypt", SYSTEM)?.as_deref() {
        None | Some("required") => "required",
        Some("desired") => "desired",
        Some("off") => "off",
        Some(other) => {
            return Err(bad(format!(
                "option smb_encrypt must be required, desired or off, not {other:?}"
            )));
        }
    };
    let bin_dir = super::http::string_option(ctx.options, "samba_bin_dir", SYSTEM)?
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    if bin_dir.as_ref().is_some_and(|d| !d.is_absolute()) {
        return Err(bad(
            "option samba_bin_dir must be an absolute path".to_owned()
        ));
    }
    let timeout = match ctx.options.get(TIMEOUT_OPTION) {
        None => CHILD_TIMEOUT,
        Some(toml::Value::Integer(s)) if (1..=600).contains(s) => {
            Duration::from_secs(s.unsigned_abs())
        }
        Some(_) => {
            return Err(bad(format!(
                "option {TIMEOUT_OPTION} must be a whole number of seconds, 1-600"
            )));
        }
    };
    let driver = WindowsDriver {
        host: c.host.trim().to_owned(),
        port: c.port,
        domain,
        admin_username: c.admin_username.trim().to_owned(),
        admin_password: c.admin_password.clone(),
        target: target.clone(),
        method,
        encrypt,
        bin_dir,
        timeout,
    };
    Ok(Built::chosen(
        driver,
        [target.clone(), target],
        parameters.password_requirements.as_ref(),
    ))
}

// === input rules (spec §12) ===

fn safe_name(s: &str, extra: &[char]) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

/// The rotated account: 1–20 of `[A-Za-z0-9_.-]`, not starting with `-` or `.`, not ending with
/// `.`, not a privileged built-in account.
fn check_target_username(u: &str) -> Result<(), String> {
    if u.is_empty() || u.len() > 20 || !safe_name(u, &['_', '.', '-']) {
        return Err("username must be 1-20 characters of letters, digits, _ . -".to_owned());
    }
    if u.starts_with(['-', '.']) || u.ends_with('.') {
        return Err("username must not start with - or . nor end with .".to_owned());
    }
    if PRIVILEGED_ACCOUNTS
        .iter()
        .any(|p| u.eq_ignore_ascii_case(p))
    {
        return Err(format!(
            "Cannot rotate passwords for privileged system accounts ({u})"
        ));
    }
    Ok(())
}

fn check_host(h: &str) -> Result<(), String> {
    let h = h.trim();
    if h.is_empty() || h.len() > 253 || !safe_name(h, &['.', '-']) || h.starts_with(['-', '.']) {
        return Err(
            "the connection host must be a host name or IPv4 address (letters, digits, . -)"
                .to_owned(),
        );
    }
    Ok(())
}

fn check_admin_username(u: &str) -> Result<(), String> {
    let u = u.trim();
    if u.is_empty() || u.len() > 104 || !safe_name(u, &['_', '.', '-']) || u.starts_with(['-', '.'])
    {
        return Err("the connection username must be 1-104 characters of letters, digits, _ . - (put a domain in option domain)".to_owned());
    }
    Ok(())
}

fn check_domain(d: &str) -> Result<(), String> {
    if d.len() > 255 || !safe_name(d, &['_', '.', '-']) || d.starts_with('-') {
        return Err(
            "option domain must be at most 255 characters of letters, digits, _ . -".to_owned(),
        );
    }
    Ok(())
}

/// A password this driver may hand to Samba's tools: not empty, none of
/// [`FORBIDDEN_CHARACTERS`], no leading or trailing blank (the credentials file trims them).
/// The message never quotes the password.
fn check_password(p: &SecretString) -> Result<(), String> {
    let p = p.expose();
    if p.is_empty() {
        return Err("is empty".to_owned());
    }
    if p.contains(FORBIDDEN_CHARACTERS) {
        return Err(
            "contains a forbidden character (; | & ` $ ( ), newline, CR or NUL)".to_owned(),
        );
    }
    if p.starts_with([' ', '\t']) || p.ends_with([' ', '\t']) {
        return Err("starts or ends with a blank".to_owned());
    }
    Ok(())
}

/// `s` as one argument for rpcclient's command parser (popt's `poptParseArgvString`): outside
/// quotes a backslash takes the next character literally, so every ASCII character other than a
/// letter or digit is escaped.
fn escape_argument(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A 0600 temporary credentials file (`username`, `password`, optional `domain` lines) for
/// `-A`, removed when dropped.
fn auth_file(
    username: &str,
    password: &SecretString,
    domain: Option<&str>,
    phase: Phase,
) -> Result<tempfile::NamedTempFile, DriverError> {
    let fail = |e: std::io::Error| {
        DriverError::new(
            DriverErrorKind::Server,
            SYSTEM,
            phase,
            format!("cannot write the temporary credentials file: {e}"),
        )
        .before_sending()
    };
    // tempfile creates the file with mode 0600 and a random name.
    let mut file = tempfile::Builder::new()
        .prefix(AUTH_FILE_PREFIX)
        .tempfile()
        .map_err(fail)?;
    let mut text = format!("username = {username}\npassword = {}\n", password.expose());
    if let Some(d) = domain {
        text.push_str(&format!("domain = {d}\n"));
    }
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.flush().map_err(fail)?;
    Ok(file)
}

// === impl WindowsDriver ===

impl WindowsDriver {
    /// The rotation method.
    pub fn method(&self) -> RotationMethod {
        self.method
    }

    /// The command of `tool` with credentials file `auth`: the only place arguments are built.
    /// No secret goes in it.
    fn command(&self, tool: Tool, auth: &Path) -> Command {
        let name = match tool {
            Tool::Rpcclient => "rpcclient",
            Tool::Smbclient => "smbclient",
        };
        let program = self
            .bin_dir
            .as_ref()
            .map_or_else(|| PathBuf::from(name), |d| d.join(name));
        let mut cmd = Command::new(program);
        if tool == Tool::Smbclient {
            cmd.arg("-L");
        }
        cmd.arg(format!("//{}", self.host))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-A")
            .arg(auth)
            .arg("--option=client min protocol=SMB3")
            .arg(format!("--option=client smb encrypt={}", self.encrypt));
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        cmd.env_clear()
            .env("PATH", path)
            .env("LC_ALL", "C")
            .kill_on_drop(true)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `tool` logged in with `auth`, feeding `input` (one rpcclient command) on stdin.
    /// Success is exit 0 with no `NT_STATUS_` code and no parser complaint in the output.
    async fn run(
        &self,
        tool: Tool,
        auth: &Path,
        input: Option<&str>,
        phase: Phase,
        login: Login,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let mut cmd = self.command(tool, auth);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().map_err(|e| {
            DriverError::new(
                DriverErrorKind::Server,
                SYSTEM,
                phase,
                format!(
                    "cannot run {}: {e} (install Samba's smbclient package)",
                    cmd.as_std().get_program().to_string_lossy()
                ),
            )
            .before_sending()
        })?;
        let stdin = child.stdin.take();
        let io = async move {
            if let (Some(mut pipe), Some(line)) = (stdin, input) {
                // A child that died early closes the pipe: its output says why.
                let _ = pipe.write_all(line.as_bytes()).await;
                let _ = pipe.shutdown().await;
            }
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(self.timeout, io).await {
            // The child is killed when the future holding it is dropped (kill_on_drop).
            Err(_) => {
                return Err(DriverError::new(
                    DriverErrorKind::Timeout,
                    SYSTEM,
                    phase,
                    format!("no answer within {} s", self.timeout.as_secs()),
                ));
            }
            Ok(Err(e)) => {
                return Err(DriverError::new(
                    DriverErrorKind::Unreachable,
                    SYSTEM,
                    phase,
                    format!("waiting for the Samba client failed: {e}"),
                ));
            }
            Ok(Ok(output)) => output,
        };
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.code().is_none() {
            // Killed by a signal: the command may have run.
            return Err(DriverError::new(
                DriverErrorKind::Unreachable,
                SYSTEM,
                phase,
                "the Samba client was killed by a signal",
            ));
        }
        let parse_error = text.contains("rpcclient: ") || text.contains("command not found");
        if output.status.success() && nt_status(&text).is_none() && !parse_error {
            return Ok(());
        }
        Err(classify(
            &text,
            output.status.success(),
            phase,
            login,
            redactor,
        ))
    }

    /// Resets `user`'s password to `new` as the admin (SamrSetUserInfo2 level 23).
    async fn reset(&self, phase: Phase, user: &str, new: &SecretString) -> Result<(), DriverError> {
        check_password(new).map_err(|m| invalid(SYSTEM, phase, format!("the new password {m}")))?;
        let escaped = escape_argument(new.expose());
        let redactor =
            Redactor::new([new.expose(), escaped.as_str(), self.admin_password.expose()]);
        let line = format!("setuserinfo2 {} 23 {escaped}\n", escape_argument(user));
        if line.len() > MAX_COMMAND {
            return Err(invalid(SYSTEM, phase, "the new password is too long"));
        }
        let auth = auth_file(
            &self.admin_username,
            &self.admin_password,
            self.domain.as_deref(),
            phase,
        )?;
        let result = self
            .run(
                Tool::Rpcclient,
                auth.path(),
                Some(&line),
                phase,
                Login::Admin,
                &redactor,
            )
            .await;
        drop(auth);
        result
    }

    /// Changes the target's password from `old` to `new`, logged in as the target with `old`.
    async fn change_own(
        &self,
        old: &SecretString,
        new: &SecretString,
        escaped_new: &str,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let line = format!(
            "chgpasswd3 {} {} {escaped_new}\n",
            escape_argument(&self.target),
            escape_argument(old.expose())
        );
        if line.len() > MAX_COMMAND {
            return Err(invalid(SYSTEM, Phase::Apply, "a password is too long"));
        }
        let redactor = redactor.also(new.expose());
        let auth = auth_file(&self.target, old, None, Phase::Apply)?;
        let result = self
            .run(
                Tool::Rpcclient,
                auth.path(),
                Some(&line),
                Phase::Apply,
                Login::Target,
                &redactor,
            )
            .await;
        drop(auth);
        result
    }

    /// An SMB session setup as `user` with `password`, no domain (a local account).
    async fn login(
        &self,
        phase: Phase,
        user: &str,
        password: &SecretString,
    ) -> Result<(), DriverError> {
        check_password(password).map_err(|m| {
            DriverError::new(
                DriverErrorKind::LoginRejected,
                SYSTEM,
                phase,
                format!("the password {m}"),
            )
        })?;
        let redactor = Redactor::new([password.expose(), self.admin_password.expose()]);
        let auth = auth_file(user, password, None, phase)?;
        let result = self
            .run(
                Tool::Smbclient,
                auth.path(),
                None,
                phase,
                Login::Target,
                &redactor,
            )
            .await;
        drop(auth);
        result
    }

    /// Login-as-target apply: logs in as the target with each of `current` (most likely first)
    /// and changes its password to `credential.secret`; when none logs in but the new password
    /// does, an earlier interrupted apply set it and nothing is changed.
    ///
    /// # Errors
    ///
    /// `LoginRejected` when no known password logs in; `InvalidInput` for a refused password;
    /// other kinds as [`Driver::apply`].
    pub async fn apply_as_target(
        &self,
        credential: &Credential,
        current: &[SecretString],
    ) -> Result<(), DriverError> {
        let new = &credential.secret;
        check_password(new)
            .map_err(|m| invalid(SYSTEM, Phase::Apply, format!("the new password {m}")))?;
        let escaped = escape_argument(new.expose());
        let mut secrets: Vec<&str> = current.iter().map(SecretString::expose).collect();
        secrets.extend([new.expose(), escaped.as_str(), self.admin_password.expose()]);
        let escaped_current: Vec<String> = current
            .iter()
            .map(|c| escape_argument(c.expose()))
            .collect();
        secrets.extend(escaped_current.iter().map(String::as_str));
        let redactor = Redactor::new(secrets);
        let mut refused = None;
        for old in current {
            if old == new || check_password(old).is_err() {
                continue;
            }
            match self.change_own(old, new, &escaped, &redactor).await {
                Ok(()) => return Ok(()),
                // This password does not log in: try the next.
                Err(e) if e.kind() == DriverErrorKind::LoginRejected => refused = Some(e),
                Err(e) => return Err(e),
            }
        }
        match self.login(Phase::Apply, &credential.id, new).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == DriverErrorKind::LoginRejected => Err(DriverError::new(
                DriverErrorKind::LoginRejected,
                SYSTEM,
                Phase::Apply,
                format!(
                    "none of the {} known password(s) of {} logs in, nor the new one{}",
                    current.len(),
                    credential.id,
                    refused.map_or_else(String::new, |e| format!(" (last: {})", e.detail()))
                ),
            )
            .before_sending()),
            Err(e) => Err(e),
        }
    }
}

impl Driver for WindowsDriver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        match self.method {
            RotationMethod::LoginAsRoot => {
                self.reset(Phase::Apply, &credential.id, &credential.secret)
                    .await
            }
            RotationMethod::LoginAsTarget => Err(invalid(
                SYSTEM,
                Phase::Apply,
                "login-as-target needs the account's current password (apply_with_current)",
            )),
        }
    }

    async fn apply_with_current(
        &self,
        credential: &Credential,
        current: &[SecretString],
    ) -> Result<(), DriverError> {
        match self.method {
            RotationMethod::LoginAsRoot => self.apply(credential).await,
            RotationMethod::LoginAsTarget => self.apply_as_target(credential, current).await,
        }
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        self.login(Phase::Verify, &credential.id, &credential.secret)
            .await
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        if self.method == RotationMethod::LoginAsTarget {
            return Err(invalid(
                SYSTEM,
                Phase::Revoke,
                "login-as-target cannot revoke: it needs the account's current password",
            ));
        }
        let discarded = PasswordPolicy::default_for(RotationType::WindowsLocalAccount).generate();
        match self.reset(Phase::Revoke, id, &discarded).await {
            Err(e) if e.kind() == DriverErrorKind::UserNotFound => Ok(()),
            other => other,
        }
    }

    async fn probe(&self) -> Result<(), DriverError> {
        let redactor = Redactor::new([self.admin_password.expose()]);
        let line = format!("lookupnames {}\n", escape_argument(&self.target));
        let auth = auth_file(
            &self.admin_username,
            &self.admin_password,
            self.domain.as_deref(),
            Phase::Probe,
        )?;
        let result = self
            .run(
                Tool::Rpcclient,
                auth.path(),
                Some(&line),
                Phase::Probe,
                Login::Admin,
                &redactor,
            )
            .await;
        drop(auth);
        result
    }
}

/// The first `NT_STATUS_…` code in `text`, without its prefix.
fn nt_status(text: &str) -> Option<&str> {
    let start = text.find("NT_STATUS_")? + "NT_STATUS_".len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|c| !c.is_empty())
}

/// Classifies a failed run. `exited_ok`: rpcclient exits 0 after a failed command (stdin mode)
/// and non-zero when it could not connect or log in, which is before anything was sent.
fn classify(
    text: &str,
    exited_ok: bool,
    phase: Phase,
    login: Login,
    redactor: &Redactor<'_>,
) -> DriverError {
    use DriverErrorKind as K;
    let connecting = !exited_ok;
    let Some(code) = nt_status(text) else {
        let detail = redactor.scrub(text.trim());
        let e = DriverError::new(
            K::Server,
            SYSTEM,
            phase,
            format!("Password change failed: {detail}"),
        );
        return if connecting { e.before_sending() } else { e };
    };
    let refused_login = if connecting {
        match login {
            Login::Admin => K::AdminLoginRejected,
            Login::Target => K::LoginRejected,
        }
    } else {
        K::LoginRejected
    };
    let (kind, message) = match code {
        "LOGON_FAILURE" | "WRONG_PASSWORD" => (
            refused_login,
            "Authentication failed: wrong username or password",
        ),
        "ACCOUNT_LOCKED_OUT" => (refused_login, "the account is locked out"),
        "ACCOUNT_DISABLED" => (refused_login, "the account is disabled"),
        "ACCOUNT_EXPIRED" => (refused_login, "the account has expired"),
        "PASSWORD_EXPIRED" => (refused_login, "the password has expired"),
        "PASSWORD_MUST_CHANGE" => (refused_login, "the password must be changed at next logon"),
        "ACCOUNT_RESTRICTION"
        | "INVALID_LOGON_HOURS"
        | "INVALID_WORKSTATION"
        | "LOGON_TYPE_NOT_GRANTED" => {
            (refused_login, "the account may not log on now or from here")
        }
        "NO_SUCH_USER" if connecting => (refused_login, "no such user"),
        "NO_SUCH_USER" | "NONE_MAPPED" => (K::UserNotFound, "no such local account"),
        "ACCESS_DENIED" => (
            K::PermissionDenied,
            "Access denied: the login may not change this account's password (it must be a local administrator)",
        ),
        "PASSWORD_RESTRICTION" => (
            K::PasswordRejected,
            "Password rejected by Windows policy (length, complexity, history or minimum age)",
        ),
        "CONNECTION_REFUSED"
        | "HOST_UNREACHABLE"
        | "NETWORK_UNREACHABLE"
        | "CONNECTION_RESET"
        | "CONNECTION_DISCONNECTED"
        | "CONNECTION_ABORTED"
        | "PIPE_BROKEN"
        | "PIPE_DISCONNECTED"
        | "BAD_NETWORK_NAME"
        | "NOT_FOUND" => (K::Unreachable, "cannot reach the SMB server"),
        "IO_TIMEOUT" => (K::Timeout, "the SMB server did not answer in time"),
        "INSUFFICIENT_RESOURCES" | "NO_MEMORY" | "REQUEST_NOT_ACCEPTED" | "TOO_MANY_SESSIONS" => {
            (K::ServerUnavailable, "the SMB server is busy")
        }
        "UNSUCCESSFUL" | "NOT_SUPPORTED" | "INVALID_NETWORK_RESPONSE" => (
            K::Server,
            "SMB failed: verify SMB is enabled and the server supports SMB3 with encryption",
        ),
        "INVALID_PARAMETER" => (K::Server, "the server refused a parameter"),
        _ => (K::Server, "SMB error"),
    };
    let e = DriverError::new(kind, SYSTEM, phase, format!("{message} (NT_STATUS_{code})"));
    if connecting { e.before_sending() } else { e }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(method: RotationMethod) -> WindowsDriver {
        WindowsDriver {
            host: "127.0.0.1".into(),
            port: 1445,
            domain: Some("WORKGROUP".into()),
            admin_username: "root".into(),
            admin_password: SecretString::new("Admin-Secret-1"),
            target: "winuser".into(),
            method,
            encrypt: "required",
            bin_dir: None,
            timeout: CHILD_TIMEOUT,
        }
    }

    #[test]
    fn the_command_line_and_environment_hold_no_password() {
        let d = driver(RotationMethod::LoginAsRoot);
        let new = SecretString::new("New-Secret-2");
        let file = auth_file("root", &d.admin_password, d.domain.as_deref(), Phase::Apply)
            .expect("auth file");
        let cmd = d.command(Tool::Rpcclient, file.path());
        let std = cmd.as_std();
        let args: Vec<String> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "//127.0.0.1".to_owned(),
                "-p".into(),
                "1445".into(),
                "-A".into(),
                file.path().to_string_lossy().into_owned(),
                "--option=client min protocol=SMB3".into(),
                "--option=client smb encrypt=required".into(),
            ]
        );
        let envs: Vec<(String, Option<String>)> = std
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let keys: Vec<&str> = envs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["LC_ALL", "PATH"], "a cleared environment");
        let everything = format!("{args:?} {envs:?}");
        for secret in [&d.admin_password, &new] {
            assert!(!everything.contains(secret.expose()));
        }
        // The credentials file is private and goes away on drop.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(file.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(file.path()).expect("read");
        assert_eq!(
            text,
            "username = root\npassword = Admin-Secret-1\ndomain = WORKGROUP\n"
        );
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn escaping_survives_popt_quotes_and_backslashes() {
        assert_eq!(escape_argument("Ab1"), "Ab1");
        assert_eq!(escape_argument(r#"a'b"c\d e"#), r#"a\'b\"c\\d\ e"#);
        assert_eq!(escape_argument("-x.~!*"), r"\-x\.\~\!\*");
    }

    #[test]
    fn forbidden_and_blank_edged_passwords_are_refused() {
        for bad in [
            "", "a;b", "a|b", "a&b", "a`b", "a$b", "a(b", "a)b", "a\nb", "a\rb", "a\0b", " ab",
            "ab\t",
        ] {
            assert!(check_password(&SecretString::new(bad)).is_err(), "{bad:?}");
        }
        assert!(check_password(&SecretString::new(r#"Ok'"\-_.~!*"#)).is_ok());
    }

    #[test]
    fn usernames_follow_the_spec() {
        for ok in ["winuser", "a", "svc_app-1.x", "ABCDEFGHIJKLMNOPQRST"] {
            assert!(check_target_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "a.",
            "a b",
            "a;b",
            "ABCDEFGHIJKLMNOPQRSTU",
            "Administrator",
            "GUEST",
            "system",
            "DefaultAccount",
        ] {
            assert!(check_target_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nt_status_codes_classify() {
        let r = Redactor::default();
        let k = |text: &str, ok: bool, login: Login| classify(text, ok, Phase::Apply, login, &r);
        let e = k(
            "Cannot connect to server.  Error was NT_STATUS_LOGON_FAILURE",
            false,
            Login::Admin,
        );
        assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected);
        assert!(!e.may_have_changed_target());
        assert_eq!(
            k(
                "session setup failed: NT_STATUS_LOGON_FAILURE",
                false,
                Login::Target
            )
            .kind(),
            DriverErrorKind::LoginRejected
        );
        assert_eq!(
            k("result was NT_STATUS_NONE_MAPPED\n", true, Login::Admin).kind(),
            DriverErrorKind::UserNotFound
        );
        assert_eq!(
            k("result was NT_STATUS_ACCESS_DENIED", true, Login::Admin).kind(),
            DriverErrorKind::PermissionDenied
        );
        assert_eq!(
            k(
                "result was NT_STATUS_PASSWORD_RESTRICTION",
                true,
                Login::Admin
            )
            .kind(),
            DriverErrorKind::PasswordRejected
        );
        let e = k(
            "Connection to 127.0.0.1 failed (Error NT_STATUS_CONNECTION_REFUSED)",
            false,
            Login::Admin,
        );
        assert_eq!(e.kind(), DriverErrorKind::Unreachable);
        assert!(!e.may_have_changed_target(), "nothing was sent");
        let e = k("result was NT_STATUS_IO_TIMEOUT", true, Login::Admin);
        assert!(e.may_have_changed_target(), "the command may have run");
        assert_eq!(
            k("result was NT_STATUS_FOO_BAR", true, Login::Admin).detail(),
            "SMB error (NT_STATUS_FOO_BAR)"
        );
    }

    #[test]
    fn output_without_a_code_is_scrubbed() {
        let r = Redactor::new(["Very-Secret-Pw-1", r"Very\-Secret\-Pw\-1"]);
        let e = classify(
            r"rpcclient: bad quote in Very\-Secret\-Pw\-1",
            true,
            Phase::Apply,
            Login::Admin,
            &r,
        );
        assert!(!e.to_string().contains("Secret"), "{e}");
        assert_eq!(e.kind(), DriverErrorKind::Server);
    }
}
