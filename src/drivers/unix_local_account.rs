//! `unix-linux-local-account`: a local account's password on a Unix/Linux host, chosen by
//! rotator and set over SSH (pure-Rust `russh`, no `ssh` binary). Single-phase: the account is
//! the one principal and its password is replaced in place.
//!
//! - **Host key pinned.** The connection names the host key (`host_key = "ssh-ed25519 AAAA…"`,
//!   a `known_hosts`-style public key) or its fingerprint (`host_key_fingerprint =
//!   "SHA256:…"`); any other key is refused before authentication, naming the offered
//!   fingerprint. A connection without a pin does not build. (Upstream pins nothing.)
//! - **Admin login** by the connection's password, or by `private_key_file` (OpenSSH or PEM,
//!   optional `private_key_passphrase = "env:NAME" | "file:PATH"`).
//! - **login-as-root** (the default, as upstream's code): as the admin, `getent passwd -- <user>`
//!   (a missing account is `UserNotFound` before anything changes), then `/usr/sbin/chpasswd`
//!   with the line `<user>:<password>` on **stdin**, never on a command line. With `useSudo`
//!   the admin runs it through sudo: `sudo -n` when sudo needs no password (a probe
//!   `sudo -n -- /usr/sbin/chpasswd` with empty input, which changes nothing, decides),
//!   otherwise `sudo -k -S -p ''` with the admin password as the first stdin line (password
//!   login only; a key login needs `NOPASSWD` for `/usr/sbin/chpasswd`). Success is exit
//!   status 0, never output text.
//! - **login-as-target**: SSH as the account with its current password and run `passwd` over a
//!   PTY with `LC_ALL=C`, answering its three prompts (current, new, new; matched loosely on
//!   `password:`). Success is exit status 0. The current passwords come from the engine
//!   (`apply_with_current`: the stored credential, then `temporary_parameters.password`);
//!   plain `apply` has none and refuses.
//! - **verify**: a fresh SSH login as the account with the new password that runs `true`.
//! - **revoke**: login-as-root sets a random password nobody keeps; login-as-target cannot
//!   (it needs the current password) and refuses.
//! - **probe**: the admin's login, running `true`.
//!
//! Errors: a refused host key is `Tls` (the transport's identity check, permanent, never
//! retried); a refused admin login `AdminLoginRejected`, a refused account login
//! `LoginRejected`; a connection that fails before login is `Unreachable` and marked
//! `before_sending`, like every failure before the password line is written.

use std::fmt;
use std::sync::Arc;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::keys::ssh_key::Fingerprint;
use russh::{ChannelMsg, Pty};

use super::password::PasswordPolicy;
use super::redact::Redactor;
use super::{
    BuildContext, Built, CONNECT_TIMEOUT, ConnectionConfig, Credential, DbSystem, Descriptor, Driver, DriverError,
    DriverErrorKind, OPERATION_TIMEOUT, Operations, Phase, invalid,
};
use crate::proto::{LocalAccountParameters, RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("ssh");

/// The pinned host public key, `known_hosts` style: `ssh-ed25519 AAAA… [comment]`.
pub const HOST_KEY_OPTION: &str = "host_key";
/// The pinned host key's fingerprint: `SHA256:…` (as `ssh-keygen -lf` prints it).
pub const HOST_KEY_FINGERPRINT_OPTION: &str = "host_key_fingerprint";
/// A private key file for the admin's login (instead of the connection password).
pub const PRIVATE_KEY_FILE_OPTION: &str = "private_key_file";
/// The private key's passphrase: `env:NAME` or `file:PATH`.
pub const PRIVATE_KEY_PASSPHRASE_OPTION: &str = "private_key_passphrase";
/// Accounts never rotated through this connection: a list or a comma-separated string.
pub const BLOCKED_USERS_OPTION: &str = "blocked_users";

/// Extra login time per password tried: a refused one costs the host's failure delay.
const REFUSAL_ALLOWANCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where `chpasswd` lives on Debian, Ubuntu, RHEL and Alpine (not on a normal user's PATH).
const CHPASSWD: &str = "/usr/sbin/chpasswd";

/// `unix-linux-local-account` over SSH.
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "ssh",
    default_port: 22,
    rotation_types: &[RotationType::UnixLinuxLocalAccount],
    shape: CredentialShape::UsernamePassword,
    source: SecretSource::Chosen,
    system: SYSTEM,
    operations: Operations {
        apply: "chpasswd",
        verify: "LOGIN",
        revoke: "chpasswd",
        probe: "LOGIN",
    },
    options: &[
        HOST_KEY_OPTION,
        HOST_KEY_FINGERPRINT_OPTION,
        PRIVATE_KEY_FILE_OPTION,
        PRIVATE_KEY_PASSPHRASE_OPTION,
        BLOCKED_USERS_OPTION,
    ],
    build,
};

/// How the password is changed (`rotationMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationMethod {
    /// The connection's admin sets it with `chpasswd` (upstream's default).
    LoginAsRoot,
    /// The account changes its own password with `passwd`, knowing the current one.
    LoginAsTarget,
}

/// The admin's SSH login.
#[derive(Clone)]
enum AdminAuth {
    Password(SecretString),
    Key(Arc<PrivateKey>),
}

/// The host key the connection trusts: the key itself, or its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostKeyPin {
    keys: Vec<russh::keys::ssh_key::public::KeyData>,
    fingerprints: Vec<Fingerprint>,
}

/// The driver of one rotation.
pub struct UnixDriver {
    host: String,
    port: u16,
    admin: String,
    auth: AdminAuth,
    pin: Arc<HostKeyPin>,
    method: RotationMethod,
    use_sudo: bool,
}

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::UnixLinuxLocalAccount(p) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let driver = UnixDriver::new(ctx.connection, p, ctx.options)?;
    let username = p.username.trim().to_owned();
    Ok(Built::chosen(
        driver,
        [username.clone(), username],
        p.password_requirements.as_ref(),
    ))
}

impl UnixDriver {
    /// The driver of one rotation, checked as the dispatch's build checks it (the dispatch
    /// adds its own checks of the connection and the slot users). Sends nothing.
    ///
    /// # Errors
    ///
    /// `InvalidInput`: a bad username or rotation method, the connection's own user, a
    /// blocked user, no host key pin, no usable admin login.
    pub fn new(
        connection: &ConnectionConfig,
        p: &LocalAccountParameters,
        options: &toml::Table,
    ) -> Result<Self, DriverError> {
        let bad = |m: String| invalid(SYSTEM, Phase::Build, m);
        let username = p.username.trim().to_owned();
        check_username(&username).map_err(|m| bad(m.to_owned()))?;
        let method = match p.rotation_method.as_deref().map(str::trim) {
            None | Some("") | Some("login-as-root") => RotationMethod::LoginAsRoot,
            Some("login-as-target") => RotationMethod::LoginAsTarget,
            Some(other) => {
                return Err(bad(format!(
                    "rotationMethod must be login-as-root or login-as-target, not {other:?}"
                )));
            }
        };
        if username == connection.admin_username.trim() {
            return Err(bad(
                "Provided username is used in Infisical app connections.".into(),
            ));
        }
        if blocked_users(options)?
            .iter()
            .any(|b| b.eq_ignore_ascii_case(&username))
        {
            return Err(bad(format!(
                "Username '{username}' is blocked from rotation by the SSH connection configuration."
            )));
        }
        let pin = host_key_pin(options)?;
        let auth = admin_auth(connection, options)?;
        Ok(Self {
            host: connection.host.trim().to_owned(),
            port: connection.port,
            admin: connection.admin_username.trim().to_owned(),
            auth,
            pin: Arc::new(pin),
            method,
            use_sudo: p.use_sudo.unwrap_or(false),
        })
    }
}

/// `username`: alphanumerics, `-` and `_` (Infisical's rule), and not starting with `-` (it
/// would read as an option to `getent`).
fn check_username(username: &str) -> Result<(), &'static str> {
    if username.is_empty() {
        return Err("username is required");
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("username may contain only letters, digits, - and _");
    }
    if username.starts_with('-') || username.len() > 256 {
        return Err("username must not start with - and is at most 256 characters");
    }
    Ok(())
}

fn blocked_users(options: &toml::Table) -> Result<Vec<String>, DriverError> {
    let names = match options.get(BLOCKED_USERS_OPTION) {
        None => Vec::new(),
        Some(toml::Value::String(s)) => s.split(',').map(|n| n.trim().to_owned()).collect(),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(|s| s.trim().to_owned()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                invalid(
                    SYSTEM,
                    Phase::Build,
                    format!("option {BLOCKED_USERS_OPTION} must hold strings"),
                )
            })?,
        Some(_) => {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                format!("option {BLOCKED_USERS_OPTION} must be a list or a comma-separated string"),
            ));
        }
    };
    Ok(names.into_iter().filter(|n| !n.is_empty()).collect())
}

fn string_option(options: &toml::Table, key: &str) -> Result<Option<String>, DriverError> {
    match options.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(invalid(
            SYSTEM,
            Phase::Build,
            format!("option {key} must be a non-empty string"),
        )),
    }
}

fn host_key_pin(options: &toml::Table) -> Result<HostKeyPin, DriverError> {
    let bad = |m: String| invalid(SYSTEM, Phase::Build, m);
    let mut pin = HostKeyPin {
        keys: Vec::new(),
        fingerprints: Vec::new(),
    };
    if let Some(line) = string_option(options, HOST_KEY_OPTION)? {
        // `known_hosts` lines start with the host patterns; accept them and skip to the key.
        let start = line
            .find("ssh-")
            .or_else(|| line.find("ecdsa-"))
            .unwrap_or(0);
        let key = russh::keys::ssh_key::PublicKey::from_openssh(&line[start..]).map_err(|e| {
            bad(format!(
                "option {HOST_KEY_OPTION} must be an OpenSSH public key (\"ssh-ed25519 AAAA…\"): {e}"
            ))
        })?;
        pin.keys.push(key.key_data().clone());
    }
    if let Some(fp) = string_option(options, HOST_KEY_FINGERPRINT_OPTION)? {
        let fp: Fingerprint = fp.parse().map_err(|e| {
            bad(format!(
                "option {HOST_KEY_FINGERPRINT_OPTION} must be \"SHA256:…\" as ssh-keygen -lf prints it: {e}"
            ))
        })?;
        pin.fingerprints.push(fp);
    }
    if pin.keys.is_empty() && pin.fingerprints.is_empty() {
        return Err(bad(format!(
            "the SSH host key must be pinned: set option {HOST_KEY_OPTION} (\"ssh-ed25519 AAAA…\") \
             or {HOST_KEY_FINGERPRINT_OPTION} (\"SHA256:…\", from ssh-keygen -lf on the host key)"
        )));
    }
    Ok(pin)
}

/// Resolves an `env:NAME` / `file:PATH` reference (the registry's rule for secrets).
fn secret_reference(key: &str, value: &str) -> Result<SecretString, DriverError> {
    let bad = |m: String| invalid(SYSTEM, Phase::Build, m);
    let resolved = if let Some(name) = value.strip_prefix("env:") {
        std::env::var(name).map_err(|_| {
            bad(format!(
                "option {key} refers to environment variable {name}, which is not set"
            ))
        })?
    } else if let Some(path) = value.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map_err(|e| bad(format!("option {key}: cannot read {path}: {e}")))?
            .trim_end_matches(['\n', '\r'])
            .to_owned()
    } else {
        return Err(bad(format!(
            "option {key} must be a reference, env:NAME or file:PATH, never the secret itself"
        )));
    };
    Ok(SecretString::new(resolved))
}

fn admin_auth(
    connection: &ConnectionConfig,
    options: &toml::Table,
) -> Result<AdminAuth, DriverError> {
    let bad = |m: String| invalid(SYSTEM, Phase::Build, m);
    let Some(path) = string_option(options, PRIVATE_KEY_FILE_OPTION)? else {
        if string_option(options, PRIVATE_KEY_PASSPHRASE_OPTION)?.is_some() {
            return Err(bad(format!(
                "option {PRIVATE_KEY_PASSPHRASE_OPTION} needs {PRIVATE_KEY_FILE_OPTION}"
            )));
        }
        if connection.admin_password.is_empty() {
            return Err(bad(format!(
                "the connection needs a password or option {PRIVATE_KEY_FILE_OPTION}"
            )));
        }
        return Ok(AdminAuth::Password(connection.admin_password.clone()));
    };
    let passphrase = string_option(options, PRIVATE_KEY_PASSPHRASE_OPTION)?
        .map(|r| secret_reference(PRIVATE_KEY_PASSPHRASE_OPTION, &r))
        .transpose()?;
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| bad(format!("option {PRIVATE_KEY_FILE_OPTION}: cannot read {path}: {e}")))?;
    // The library's message names the format problem, never key material.
    let key = russh::keys::decode_secret_key(&pem, passphrase.as_ref().map(SecretString::expose))
        .map_err(|e| {
            bad(format!(
                "option {PRIVATE_KEY_FILE_OPTION}: {path} is not a usable private key \
                 (or the passphrase is wrong): {e}"
            ))
        })?;
    Ok(AdminAuth::Key(Arc::new(key)))
}

// === the SSH session ===

/// Accepts exactly the pinned host key; any other ends the handshake before authentication.
struct PinnedHost {
    pin: Arc<HostKeyPin>,
}

/// Why an SSH connection or call failed.
#[derive(Debug)]
enum SshError {
    Ssh(russh::Error),
    /// The server offered a key that is not the pinned one (its fingerprint and algorithm).
    HostKey(String),
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        Self::Ssh(e)
    }
}

impl HostKeyPin {
    fn accepts(&self, key: &russh::keys::ssh_key::public::KeyData) -> bool {
        self.keys.iter().any(|k| k == key)
            || self.fingerprints.iter().any(|fp| {
                let offered = key.fingerprint(fp.algorithm());
                offered == *fp
            })
    }
}

impl client::Handler for PinnedHost {
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key(),
        };
        if self.pin.accepts(key) {
            Ok(true)
        } else {
            Err(SshError::HostKey(format!(
                "{} {}",
                key.algorithm(),
                key.fingerprint(HashAlg::Sha256)
            )))
        }
    }
}

/// Who logs in, for classifying a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Target,
}

/// What a command did: its exit status and output (kept only to be scrubbed into errors).
#[derive(Debug, Default)]
struct Exec {
    status: Option<u32>,
    stderr: Vec<u8>,
    stdout: Vec<u8>,
}

impl Exec {
    fn ok(&self) -> bool {
        self.status == Some(0)
    }

    /// The last lines of stderr (or stdout), scrubbed.
    fn tail(&self, redactor: &Redactor<'_>) -> String {
        let bytes = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        let start = text.len().saturating_sub(300);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        redactor.scrub(&text[start..])
    }

    fn status_text(&self) -> String {
        self.status
            .map_or_else(|| "no exit status".to_owned(), |s| format!("exit status {s}"))
    }
}

impl UnixDriver {
    fn err(&self, kind: DriverErrorKind, phase: Phase, detail: impl Into<String>) -> DriverError {
        DriverError::new(kind, SYSTEM, phase, detail)
    }

    fn transport_error(&self, phase: Phase, e: &russh::Error) -> DriverError {
        use russh::Error as E;
        let kind = match e {
            E::IO(_)
            | E::Disconnect
            | E::HUP
            | E::ConnectionTimeout
            | E::KeepaliveTimeout
            | E::InactivityTimeout
            | E::SendError
            | E::ChannelOpenFailure(_) => DriverErrorKind::Unreachable,
            _ => DriverErrorKind::Server,
        };
        // russh's errors name protocol steps, never data.
        self.err(
            kind,
            phase,
            format!("ssh to {}:{}: {e}", self.host, self.port),
        )
    }

    /// Connects, checks the host key against the pin and logs in. Every failure here is
    /// before anything was sent.
    async fn login(
        &self,
        phase: Phase,
        who: Who,
        user: &str,
        passwords: &[&SecretString],
    ) -> Result<(Handle<PinnedHost>, usize), DriverError> {
        let work = async {
            let config = Arc::new(client::Config {
                inactivity_timeout: Some(OPERATION_TIMEOUT + CONNECT_TIMEOUT),
                nodelay: true,
                ..client::Config::default()
            });
            let handler = PinnedHost {
                pin: self.pin.clone(),
            };
            let mut handle = client::connect(config, (self.host.as_str(), self.port), handler)
                .await
                .map_err(|e| match e {
                    SshError::HostKey(offered) => self.err(
                        DriverErrorKind::Tls,
                        phase,
                        format!(
                            "the host key of {}:{} is not the pinned one: the server offered {offered}; \
                             refusing to log in (check {HOST_KEY_OPTION} / {HOST_KEY_FINGERPRINT_OPTION})",
                            self.host, self.port
                        ),
                    ),
                    SshError::Ssh(e) => self.transport_error(phase, &e),
                })?;
            let refused = |kind| {
                self.err(
                    kind,
                    phase,
                    format!("{}:{} refused the SSH login of {user:?}", self.host, self.port),
                )
            };
            match (who, &self.auth) {
                (Who::Admin, AdminAuth::Key(key)) => {
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| self.transport_error(phase, &e))?
                        .flatten();
                    let key = PrivateKeyWithHashAlg::new(key.clone(), hash);
                    let result = handle
                        .authenticate_publickey(user, key)
                        .await
                        .map_err(|e| self.transport_error(phase, &e))?;
                    if result.success() {
                        Ok((handle, 0))
                    } else {
                        Err(refused(DriverErrorKind::AdminLoginRejected))
                    }
                }
                _ => {
                    for (i, password) in passwords.iter().enumerate() {
                        let result = handle
                            .authenticate_password(user, password.expose())
                            .await
                            .map_err(|e| self.transport_error(phase, &e))?;
                        if result.success() {
                            return Ok((handle, i));
                        }
                    }
                    Err(refused(match who {
                        Who::Admin => DriverErrorKind::AdminLoginRejected,
                        Who::Target => DriverErrorKind::LoginRejected,
                    }))
                }
            }
        };
        // Each refused password costs the host's failure delay (pam_unix: about 3 s).
        let limit = CONNECT_TIMEOUT + REFUSAL_ALLOWANCE * u32::try_from(passwords.len()).unwrap_or(1);
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result.map_err(DriverError::before_sending),
            Err(_) => Err(self
                .err(
                    DriverErrorKind::Timeout,
                    phase,
                    format!("no SSH login to {}:{} within {limit:?}", self.host, self.port),
                )
                .before_sending()),
        }
    }

    async fn admin_login(&self, phase: Phase) -> Result<Handle<PinnedHost>, DriverError> {
        let password = match &self.auth {
            AdminAuth::Password(p) => Some(p),
            AdminAuth::Key(_) => None,
        };
        let passwords: Vec<&SecretString> = password.into_iter().collect();
        self.login(phase, Who::Admin, &self.admin, &passwords)
            .await
            .map(|(h, _)| h)
    }

    /// Runs `command` (no secret in it), writes `stdin` and closes it, and collects the exit
    /// status, within the operation timeout.
    async fn run(
        &self,
        handle: &Handle<PinnedHost>,
        phase: Phase,
        command: &str,
        stdin: &[u8],
    ) -> Result<Exec, DriverError> {
        let work = async {
            let mut channel = handle.channel_open_session().await?;
            channel.exec(true, command).await?;
            if !stdin.is_empty() {
                channel.data(stdin).await?;
            }
            channel.eof().await?;
            let mut exec = Exec::default();
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => extend_bounded(&mut exec.stdout, &data),
                    ChannelMsg::ExtendedData { data, .. } => extend_bounded(&mut exec.stderr, &data),
                    ChannelMsg::ExitStatus { exit_status } => exec.status = Some(exit_status),
                    ChannelMsg::Failure => {
                        return Err(russh::Error::RequestDenied);
                    }
                    _ => {}
                }
            }
            Ok::<_, russh::Error>(exec)
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, work).await {
            Ok(result) => result.map_err(|e| self.transport_error(phase, &e)),
            Err(_) => Err(self.err(
                DriverErrorKind::Timeout,
                phase,
                format!("{command:?} did not finish within {OPERATION_TIMEOUT:?}"),
            )),
        }
    }

    /// login-as-root: sets `password` for `user` with chpasswd, as the admin.
    async fn set_as_admin(
        &self,
        phase: Phase,
        user: &str,
        password: &SecretString,
    ) -> Result<(), DriverError> {
        check_password(password, phase)?;
        let admin_password = match &self.auth {
            AdminAuth::Password(p) => Some(p),
            AdminAuth::Key(_) => None,
        };
        let redactor = Redactor::new(
            [Some(password), admin_password]
                .into_iter()
                .flatten()
                .map(SecretString::expose),
        );
        let handle = self.admin_login(phase).await?;
        let result = self
            .chpasswd(&handle, phase, user, password, admin_password, &redactor)
            .await;
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        result
    }

    async fn chpasswd(
        &self,
        handle: &Handle<PinnedHost>,
        phase: Phase,
        user: &str,
        password: &SecretString,
        admin_password: Option<&SecretString>,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let before = DriverError::before_sending;
        let lookup = self
            .run(handle, phase, &lookup_command(user), b"")
            .await
            .map_err(before)?;
        match lookup.status {
            Some(0) => {}
            Some(2) => {
                return Err(self.err(
                    DriverErrorKind::UserNotFound,
                    phase,
                    format!("no account {user:?} on {} (getent passwd)", self.host),
                ));
            }
            _ => {
                return Err(self.err(
                    DriverErrorKind::Server,
                    phase,
                    format!(
                        "getent passwd {user:?} failed ({}): {}",
                        lookup.status_text(),
                        lookup.tail(redactor)
                    ),
                ));
            }
        }
        let line = format!("{user}:{}\n", password.expose());
        let (command, stdin) = if self.use_sudo {
            // Empty input: chpasswd changes nothing, so this only asks whether sudo runs it
            // without a password.
            let probe = self
                .run(handle, phase, &chpasswd_command(Sudo::NoPassword), b"")
                .await
                .map_err(before)?;
            match (probe.ok(), admin_password) {
                (true, _) => (chpasswd_command(Sudo::NoPassword), line),
                (false, Some(admin)) => (
                    chpasswd_command(Sudo::PasswordOnStdin),
                    format!("{}\n{line}", admin.expose()),
                ),
                (false, None) => {
                    return Err(self.err(
                        DriverErrorKind::PermissionDenied,
                        phase,
                        format!(
                            "sudo asks {} for a password but the connection logs in with a key: \
                             allow it NOPASSWD for {CHPASSWD} in sudoers ({}: {})",
                            self.admin,
                            probe.status_text(),
                            probe.tail(redactor)
                        ),
                    ));
                }
            }
        } else {
            (chpasswd_command(Sudo::No), line)
        };
        let done = self
            .run(handle, phase, &command, stdin.as_bytes())
            .await?;
        if done.ok() {
            Ok(())
        } else {
            // chpasswd changes a line's account only on success; sudo refusing runs nothing.
            Err(self.err(
                DriverErrorKind::Server,
                phase,
                format!(
                    "{} for {user:?} failed ({}): {}",
                    if self.use_sudo { "sudo chpasswd" } else { "chpasswd" },
                    done.status_text(),
                    done.tail(redactor)
                ),
            ))
        }
    }

    /// login-as-target: logs in as the account with one of `current` (most likely first), or
    /// with the new password itself (an interrupted earlier apply may have set it: then there
    /// is nothing to do), and changes the password with `passwd` over a PTY.
    ///
    /// # Errors
    ///
    /// `LoginRejected` when none of the passwords logs in; `PasswordRejected` when `passwd`
    /// exits non-zero (the password is unchanged); transport kinds otherwise.
    async fn apply_as_target(
        &self,
        credential: &Credential,
        current: &[SecretString],
    ) -> Result<(), DriverError> {
        let phase = Phase::Apply;
        check_password(&credential.secret, phase)?;
        let mut passwords: Vec<&SecretString> = current
            .iter()
            .filter(|c| !c.is_empty() && *c != &credential.secret)
            .collect();
        passwords.push(&credential.secret);
        let (handle, which) = self
            .login(phase, Who::Target, &credential.id, &passwords)
            .await?;
        if which == passwords.len() - 1 {
            // Logged in with the new password: already set.
            return Ok(());
        }
        let old = passwords[which];
        let redactor = Redactor::new(
            current
                .iter()
                .map(SecretString::expose)
                .chain([credential.secret.expose()]),
        );
        let result = self
            .passwd_over_pty(&handle, &credential.id, old, &credential.secret, &redactor)
            .await;
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        result
    }

    async fn passwd_over_pty(
        &self,
        handle: &Handle<PinnedHost>,
        user: &str,
        old: &SecretString,
        new: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let phase = Phase::Apply;
        let answers = [old, new, new];
        let mut sent = 0usize;
        let mut seen = Vec::new();
        let mut transcript = Vec::new();
        let mut status = None;
        let work = async {
            let mut channel = handle.channel_open_session().await?;
            channel
                .request_pty(true, "dumb", 200, 24, 0, 0, &[(Pty::ECHO, 0)])
                .await?;
            channel.exec(true, PASSWD_COMMAND).await?;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        extend_bounded(&mut seen, &data);
                        extend_bounded(&mut transcript, &data);
                        if is_prompt(&seen) {
                            seen.clear();
                            let Some(answer) = answers.get(sent) else {
                                // A fourth prompt: passwd refused the new password and asks
                                // again. Stop it; the password is unchanged.
                                let _ = channel.data(&b"\x03"[..]).await;
                                let _ = channel.close().await;
                                break;
                            };
                            channel
                                .data(format!("{}\n", answer.expose()).as_bytes())
                                .await?;
                            sent += 1;
                        }
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::Failure => return Err(russh::Error::RequestDenied),
                    _ => {}
                }
            }
            Ok::<_, russh::Error>(())
        };
        let outcome = tokio::time::timeout(OPERATION_TIMEOUT, work).await;
        let before_new = sent < 2;
        let mark = |e: DriverError| if before_new { e.before_sending() } else { e };
        match outcome {
            Err(_) => Err(mark(self.err(
                DriverErrorKind::Timeout,
                phase,
                format!("passwd as {user:?} did not finish within {OPERATION_TIMEOUT:?}"),
            ))),
            Ok(Err(e)) => Err(mark(self.transport_error(phase, &e))),
            Ok(Ok(())) if status == Some(0) => Ok(()),
            Ok(Ok(())) => {
                let exec = Exec {
                    status,
                    stdout: transcript,
                    stderr: Vec::new(),
                };
                Err(self.err(
                    DriverErrorKind::PasswordRejected,
                    phase,
                    format!(
                        "passwd as {user:?} failed ({}, {sent} answers sent): {}",
                        exec.status_text(),
                        exec.tail(redactor)
                    ),
                ))
            }
        }
    }
}

/// `passwd` of the logged-in account, its prompts in English (`LC_ALL=C`).
pub const PASSWD_COMMAND: &str = "LC_ALL=C passwd";

/// Whether the output since the last answer ends in a password prompt (`…password:`,
/// `Retype new password:`; case-insensitive, trailing spaces ignored).
fn is_prompt(seen: &[u8]) -> bool {
    let text = String::from_utf8_lossy(seen).to_ascii_lowercase();
    text.trim_end().ends_with("password:")
}

/// Keeps at most 64 KiB of a peer's output (upstream's cap on unmatched output).
fn extend_bounded(buffer: &mut Vec<u8>, data: &[u8]) {
    const CAP: usize = 64 * 1024;
    let room = CAP.saturating_sub(buffer.len());
    buffer.extend_from_slice(&data[..data.len().min(room)]);
}

/// A password chpasswd and passwd can take on one line.
fn check_password(password: &SecretString, phase: Phase) -> Result<(), DriverError> {
    if password.expose().contains(['\n', '\r', '\0']) {
        return Err(invalid(
            SYSTEM,
            phase,
            "the password contains a line break or NUL",
        ));
    }
    Ok(())
}

/// How chpasswd is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sudo {
    /// As the admin itself (root, or an account allowed to run chpasswd).
    No,
    /// `sudo -n`: fails rather than asking for a password.
    NoPassword,
    /// `sudo -k -S -p ''`: the admin password is the first line of stdin; `-k` ignores a
    /// cached sudo login, so sudo reads that line exactly when it needs a password.
    PasswordOnStdin,
}

/// The command that looks the account up: exit status 2 when it does not exist.
pub fn lookup_command(user: &str) -> String {
    format!("LC_ALL=C getent passwd -- {user}")
}

/// The chpasswd command line. It never holds a password: the `user:password` line goes to
/// stdin.
pub fn chpasswd_command(sudo: Sudo) -> String {
    match sudo {
        Sudo::No => format!("LC_ALL=C {CHPASSWD}"),
        Sudo::NoPassword => format!("LC_ALL=C sudo -n -- {CHPASSWD}"),
        Sudo::PasswordOnStdin => format!("LC_ALL=C sudo -k -S -p '' -- {CHPASSWD}"),
    }
}

impl fmt::Debug for UnixDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            AdminAuth::Password(_) => "password".to_owned(),
            AdminAuth::Key(k) => format!("key {}", k.public_key().fingerprint(HashAlg::Sha256)),
        };
        f.debug_struct("UnixDriver")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin", &self.admin)
            .field("auth", &auth)
            .field("method", &self.method)
            .field("use_sudo", &self.use_sudo)
            .finish_non_exhaustive()
    }
}

impl Driver for UnixDriver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        match self.method {
            RotationMethod::LoginAsRoot => {
                self.set_as_admin(Phase::Apply, &credential.id, &credential.secret)
                    .await
            }
            RotationMethod::LoginAsTarget => Err(invalid(
                SYSTEM,
                Phase::Apply,
                "login-as-target needs the account's current password \
                 (temporary_parameters.password or the stored credential)",
            )
            .before_sending()),
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
        let phase = Phase::Verify;
        let (handle, _) = self
            .login(phase, Who::Target, &credential.id, &[&credential.secret])
            .await?;
        let redactor = Redactor::new([credential.secret.expose()]);
        let exec = self.run(&handle, phase, "true", b"").await;
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        let exec = exec?;
        if exec.ok() {
            Ok(())
        } else {
            // The login worked but the account cannot run a command (nologin shell).
            Err(self.err(
                DriverErrorKind::LoginRejected,
                phase,
                format!(
                    "{:?} logged in but could not run a command ({}): {}",
                    credential.id,
                    exec.status_text(),
                    exec.tail(&redactor)
                ),
            ))
        }
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        match self.method {
            RotationMethod::LoginAsRoot => {
                let discarded =
                    PasswordPolicy::default_for(RotationType::UnixLinuxLocalAccount).generate();
                self.set_as_admin(Phase::Revoke, id, &discarded).await
            }
            RotationMethod::LoginAsTarget => Err(invalid(
                SYSTEM,
                Phase::Revoke,
                "login-as-target cannot revoke: it needs the account's current password",
            )),
        }
    }

    async fn probe(&self) -> Result<(), DriverError> {
        let phase = Phase::Probe;
        let handle = self.admin_login(phase).await?;
        let exec = self.run(&handle, phase, "true", b"").await;
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        let exec = exec?;
        if exec.ok() {
            Ok(())
        } else {
            Err(self.err(
                DriverErrorKind::AdminLoginRejected,
                phase,
                format!("{:?} logged in but could not run a command ({})", self.admin, exec.status_text()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_command_line_holds_a_password() {
        for sudo in [Sudo::No, Sudo::NoPassword, Sudo::PasswordOnStdin] {
            let c = chpasswd_command(sudo);
            assert!(c.ends_with(CHPASSWD), "{c}");
            assert!(!c.contains(':'), "no user:password on the command line: {c}");
        }
        assert_eq!(lookup_command("rot_a"), "LC_ALL=C getent passwd -- rot_a");
        assert_eq!(PASSWD_COMMAND, "LC_ALL=C passwd");
    }

    #[test]
    fn usernames_follow_infisicals_rule() {
        for ok in ["rot_a", "a-b", "A9"] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a;b", "-rf", "a/b", "a:b", "ü"] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prompts_are_matched_loosely() {
        assert!(is_prompt(b"Current password: "));
        assert!(is_prompt(b"Changing password for x.\r\nNew password: "));
        assert!(is_prompt(b"Retype new password:"));
        assert!(!is_prompt(b"passwd: password updated successfully\r\n"));
        assert!(!is_prompt(b"Changing password for x.\r\n"));
    }

    #[test]
    fn pins_parse_and_refuse_other_keys() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAZdHehcFBCXEMdq0mPFqQnnzb6api2vc+V5QZlMOALe";
        let mut options = toml::Table::new();
        assert!(host_key_pin(&options).is_err(), "no pin: config error");
        options.insert(HOST_KEY_OPTION.into(), format!("[127.0.0.1]:2222 {key} c").into());
        let pin = host_key_pin(&options).expect("a known_hosts line");
        let public = russh::keys::ssh_key::PublicKey::from_openssh(key).expect("key");
        assert!(pin.accepts(public.key_data()));
        let fp = public.fingerprint(HashAlg::Sha256).to_string();
        let mut by_fp = toml::Table::new();
        by_fp.insert(HOST_KEY_FINGERPRINT_OPTION.into(), fp.into());
        let pin = host_key_pin(&by_fp).expect("a fingerprint");
        assert!(pin.accepts(public.key_data()));
        let other = russh::keys::ssh_key::PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnM6IXth//HNuT9ooctUybASoOAQ1U/KS/ZHEfwI/+9",
        )
        .expect("key");
        assert!(!pin.accepts(other.key_data()));
        let mut garbage = toml::Table::new();
        garbage.insert(HOST_KEY_FINGERPRINT_OPTION.into(), "MD5:xx".into());
        assert!(host_key_pin(&garbage).is_err());
    }
}
