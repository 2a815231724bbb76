//! `ldap-password`: the password of one directory account, chosen by rotator. Single-phase: the
//! account has one password, replaced in place.
//!
//! Two providers (connection option `provider`):
//! - **`active-directory`** (the default, as upstream): the `unicodePwd` attribute, whose value
//!   is the password wrapped in double quotes and encoded as UTF-16LE. An admin reset is one
//!   `replace`; a change as the account itself is one modify with `delete` of the current value
//!   and `add` of the new one (AD checks the deleted value against the current password).
//! - **`openldap`**: the RFC 3062 Password Modify extended operation, so the server hashes the
//!   password as configured (`{SSHA}` by default); a plain `replace: userPassword` would store it
//!   in cleartext. The admin names the account (`userIdentity`); the account itself also sends
//!   its current password (`oldPasswd`).
//!
//! Rotation methods (parameter `rotationMethod`):
//! - **`connection-principal`** (default): the connection's bind DN resets the account.
//! - **`target-principal`**: the account changes its own password, logged in with a password it
//!   may hold now (`Driver::apply_with_current`: the stored credential, then the rotation's
//!   `temporary_parameters.password`, then the candidate itself, which an interrupted apply may
//!   have set); the connection is used only by `probe`.
//!
//! Transport: `ldaps://` by default, StartTLS with option `transport = "starttls"`; the server
//! certificate is checked against `ca_file` (a CA, or the server's own certificate pinned) or the
//! system roots. Plain `ldap://` only with `tls = "disable"`, where the passwords cross the
//! network in the clear.
//!
//! - **apply**: bind, resolve a UPN to its entry DN (subtree search under the UPN's domain), then
//!   the provider's change. Applying the same password again succeeds.
//! - **verify**: a simple bind as the account with the new password on a new connection. An
//!   empty password would be an unauthenticated bind (RFC 4513), which servers accept: refused
//!   before anything is sent.
//! - **revoke**: an admin reset to a random password nobody keeps.
//! - **probe**: a simple bind as the connection's bind DN.

use std::collections::HashSet;
use std::sync::Arc;

use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};

use super::password::PasswordPolicy;
use super::redact::Redactor;
use super::{
    BuildContext, Built, CONNECT_TIMEOUT, ConnectionConfig, Credential, DbSystem, Descriptor,
    Driver, DriverError, DriverErrorKind, OPERATION_TIMEOUT, Operations, Phase, TlsMode, invalid,
};
use crate::proto::{LdapPasswordParameters, RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("ldap");

/// The Active Directory attribute holding the password (write-only).
const UNICODE_PWD: &[u8] = b"unicodePwd";

/// `ldap-password` over LDAP v3 (Active Directory or OpenLDAP).
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "ldap",
    default_port: 636,
    rotation_types: &[RotationType::LdapPassword],
    shape: CredentialShape::DnPassword,
    source: SecretSource::Chosen,
    system: SYSTEM,
    operations: Operations {
        apply: "modify",
        verify: "bind",
        revoke: "modify",
        probe: "bind",
    },
    options: &["provider", "transport"],
    build,
};

/// The directory server, which decides how a password is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Active Directory (or Samba AD): `unicodePwd`.
    ActiveDirectory,
    /// OpenLDAP `slapd`: RFC 3062 Password Modify.
    OpenLdap,
}

/// Who changes the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationMethod {
    /// The connection's bind DN resets it.
    ConnectionPrincipal,
    /// The account changes its own, logged in with its current password.
    TargetPrincipal,
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// TLS from the first byte (`ldaps://`).
    Ldaps,
    /// Plain LDAP upgraded with the StartTLS extended operation before any bind.
    StartTls,
    /// Plain LDAP: passwords in the clear (`tls = "disable"` only).
    Plain,
}

/// Who a bind logs in as, for classifying a refused bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    Admin,
    Target,
}

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::LdapPassword(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let (driver, dn) = LdapDriver::new(ctx.connection, ctx.options, parameters)?;
    Ok(Built::chosen(
        driver,
        [dn.clone(), dn],
        parameters.password_requirements.as_ref(),
    ))
}

// === impl LdapDriver ===

impl LdapDriver {
    /// The driver of one rotation and the account it rotates (`dn`, trimmed), without the
    /// dispatch's preamble: what [`DESCRIPTOR`]'s build wraps. Sends nothing.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad `dn`, `rotationMethod` or option; `Tls` when the CA file or the
    /// system roots cannot be loaded.
    pub fn new(
        c: &ConnectionConfig,
        options: &toml::Table,
        parameters: &LdapPasswordParameters,
    ) -> Result<(Self, String), DriverError> {
        new_driver(c, options, parameters)
    }
}

fn new_driver(
    c: &ConnectionConfig,
    options: &toml::Table,
    parameters: &LdapPasswordParameters,
) -> Result<(LdapDriver, String), DriverError> {
    let dn = parameters.dn.trim().to_owned();
    if dn.is_empty() {
        return Err(invalid(SYSTEM, Phase::Build, "DN/UPN required"));
    }
    let is_upn = if is_dn(&dn) {
        false
    } else if is_upn(&dn) {
        true
    } else {
        return Err(invalid(SYSTEM, Phase::Build, "Invalid DN/UPN format"));
    };
    let method = match parameters.rotation_method.as_deref().map(str::trim) {
        None | Some("" | "connection-principal") => RotationMethod::ConnectionPrincipal,
        Some("target-principal") => RotationMethod::TargetPrincipal,
        Some(other) => {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                format!(
                    "rotationMethod {other:?} is not connection-principal or target-principal"
                ),
            ));
        }
    };
    let provider = match string_option(options, "provider")?.as_deref() {
        None | Some("active-directory") => Provider::ActiveDirectory,
        Some("openldap") => Provider::OpenLdap,
        Some(other) => {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                format!("option provider {other:?} is not active-directory or openldap"),
            ));
        }
    };
    if is_upn && provider == Provider::OpenLdap {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "a UPN names an Active Directory account: give OpenLDAP the entry's DN",
        ));
    }
    if same_dn(&dn, &c.admin_username) {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "the connection's own bind DN cannot be rotated: its password is the connection's",
        ));
    }
    let transport = match (
        c.tls.mode,
        string_option(options, "transport")?.as_deref(),
    ) {
        (TlsMode::Disable, None) => Transport::Plain,
        (TlsMode::Disable, Some(_)) => {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                "option transport needs TLS, but the connection says tls = \"disable\"",
            ));
        }
        (_, None | Some("ldaps")) => Transport::Ldaps,
        (_, Some("starttls")) => Transport::StartTls,
        (_, Some(other)) => {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                format!("option transport {other:?} is not ldaps or starttls"),
            ));
        }
    };
    // `None` exactly for the plain transport (tls = "disable").
    let tls = super::tls::client_config(c, SYSTEM)?;
    let host = c.host.trim();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let scheme = if transport == Transport::Ldaps {
        "ldaps"
    } else {
        "ldap"
    };
    let url = format!("{scheme}://{host}:{}", c.port);
    if reqwest::Url::parse(&url).is_err() {
        return Err(invalid(SYSTEM, Phase::Build, "the connection host is not a host name"));
    }
    let driver = LdapDriver {
        url,
        transport,
        tls,
        provider,
        method,
        admin: c.clone(),
    };
    Ok((driver, dn))
}

/// The LDAP driver of one rotation.
#[derive(Debug)]
pub struct LdapDriver {
    /// `ldaps://host:port` or `ldap://host:port`.
    url: String,
    transport: Transport,
    /// `None` only for [`Transport::Plain`].
    tls: Option<Arc<rustls::ClientConfig>>,
    provider: Provider,
    method: RotationMethod,
    /// The bind DN and its password.
    admin: ConnectionConfig,
}

// === impl LdapDriver ===

impl LdapDriver {
    /// A new connection, TLS set up, not bound yet. Fails before anything is sent.
    async fn connect(&self, phase: Phase, redactor: &Redactor<'_>) -> Result<Ldap, DriverError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(CONNECT_TIMEOUT)
            .set_starttls(self.transport == Transport::StartTls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| connect_error(&e, phase, redactor).before_sending())?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "ldap connection ended");
            }
        });
        ldap.with_timeout(OPERATION_TIMEOUT);
        Ok(ldap)
    }

    /// A simple bind. Never with an empty password: that is an unauthenticated bind, which
    /// servers accept.
    async fn bind(
        &self,
        ldap: &mut Ldap,
        phase: Phase,
        login: Login,
        dn: &str,
        password: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        if password.is_empty() {
            let who = match login {
                Login::Admin => "the connection password is empty",
                Login::Target => "the password is empty",
            };
            return Err(invalid(SYSTEM, phase, format!("{who}: an empty bind is anonymous")));
        }
        let result = ldap
            .with_timeout(OPERATION_TIMEOUT)
            .simple_bind(dn, password.expose())
            .await
            .and_then(ldap3::LdapResult::success);
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(bind_error(&e, phase, login, redactor).before_sending()),
        }
    }

    /// Whether `credential` binds, on a new connection.
    async fn binds(&self, credential: &Credential, redactor: &Redactor<'_>) -> bool {
        let Ok(mut ldap) = self.connect(Phase::Apply, redactor).await else {
            return false;
        };
        let ok = self
            .bind(
                &mut ldap,
                Phase::Apply,
                Login::Target,
                &credential.id,
                &credential.secret,
                redactor,
            )
            .await
            .is_ok();
        let _ = ldap.unbind().await;
        ok
    }

    /// A connection bound as the connection's bind DN.
    async fn admin_session(
        &self,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> Result<Ldap, DriverError> {
        let mut ldap = self.connect(phase, redactor).await?;
        self.bind(
            &mut ldap,
            phase,
            Login::Admin,
            &self.admin.admin_username,
            &self.admin.admin_password,
            redactor,
        )
        .await?;
        Ok(ldap)
    }

    /// The entry DN of `id`: itself for a DN; for a UPN, the one entry a subtree search under
    /// the UPN's domain (`dc=<label>,…`) finds with that `userPrincipalName`.
    async fn resolve(
        &self,
        ldap: &mut Ldap,
        phase: Phase,
        id: &str,
        redactor: &Redactor<'_>,
    ) -> Result<String, DriverError> {
        if !is_upn(id) || is_dn(id) {
            return Ok(id.to_owned());
        }
        let domain = id.rsplit_once('@').map_or("", |(_, d)| d);
        let base = domain
            .split('.')
            .map(|label| format!("dc={label}"))
            .collect::<Vec<_>>()
            .join(",");
        let filter = format!("(userPrincipalName={})", ldap3::ldap_escape(id));
        let (entries, _) = ldap
            .with_timeout(OPERATION_TIMEOUT)
            .search(&base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .and_then(ldap3::SearchResult::success)
            .map_err(|e| operation_error(&e, phase, redactor).before_sending())?;
        let dns: Vec<String> = entries
            .into_iter()
            .filter(|e| !e.is_ref())
            .map(|e| SearchEntry::construct(e).dn)
            .collect();
        match dns.as_slice() {
            [dn] => Ok(dn.clone()),
            [] => Err(DriverError::new(
                DriverErrorKind::UserNotFound,
                SYSTEM,
                phase,
                format!("Unable to resolve DN for {id}."),
            )
            .before_sending()),
            _ => Err(DriverError::new(
                DriverErrorKind::InvalidInput,
                SYSTEM,
                phase,
                format!("{id} names {} entries under {base}", dns.len()),
            )
            .before_sending()),
        }
    }

    /// An admin reset of `id` to `new`.
    async fn reset(
        &self,
        phase: Phase,
        id: &str,
        new: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let mut ldap = self.admin_session(phase, redactor).await?;
        let dn = self.resolve(&mut ldap, phase, id, redactor).await?;
        let result = match self.provider {
            Provider::ActiveDirectory => {
                let value = HashSet::from([unicode_pwd(new.expose())]);
                ldap.with_timeout(OPERATION_TIMEOUT)
                    .modify(&dn, vec![Mod::Replace(UNICODE_PWD.to_vec(), value)])
                    .await
                    .and_then(ldap3::LdapResult::success)
                    .map(drop)
            }
            Provider::OpenLdap => ldap
                .with_timeout(OPERATION_TIMEOUT)
                .extended(PasswordModify {
                    user_id: Some(&dn),
                    old_pass: None,
                    new_pass: Some(new.expose()),
                })
                .await
                .and_then(|r| r.success())
                .map(drop),
        };
        let _ = ldap.unbind().await;
        result.map_err(|e| operation_error(&e, phase, redactor))
    }

    /// The account changes its own password from `current` to `new`, on a connection already
    /// bound as it.
    async fn change(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        current: &SecretString,
        new: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let result = match self.provider {
            Provider::ActiveDirectory => {
                let old = HashSet::from([unicode_pwd(current.expose())]);
                let value = HashSet::from([unicode_pwd(new.expose())]);
                ldap.with_timeout(OPERATION_TIMEOUT)
                    .modify(
                        dn,
                        vec![
                            Mod::Delete(UNICODE_PWD.to_vec(), old),
                            Mod::Add(UNICODE_PWD.to_vec(), value),
                        ],
                    )
                    .await
                    .and_then(ldap3::LdapResult::success)
                    .map(drop)
            }
            Provider::OpenLdap => ldap
                .with_timeout(OPERATION_TIMEOUT)
                .extended(PasswordModify {
                    user_id: Some(dn),
                    old_pass: Some(current.expose()),
                    new_pass: Some(new.expose()),
                })
                .await
                .and_then(|r| r.success())
                .map(drop),
        };
        result.map_err(|e| operation_error(&e, Phase::Apply, redactor))
    }

    /// `target-principal`'s apply: logs in as the account with each of `current` (the passwords
    /// it may hold now, most likely first), then with the new password; changes the password
    /// from the first that logs in, or does nothing when the new one already does (an
    /// interrupted earlier apply set it). What [`Driver::apply_with_current`] runs.
    ///
    /// # Errors
    ///
    /// `LoginRejected` when none logs in (nothing changed); otherwise as [`Driver::apply`].
    pub async fn apply_as_target(
        &self,
        credential: &Credential,
        current: &[SecretString],
    ) -> Result<(), DriverError> {
        let phase = Phase::Apply;
        let new = &credential.secret;
        let mut secrets: Vec<&str> = vec![new.expose(), self.admin.admin_password.expose()];
        secrets.extend(current.iter().map(SecretString::expose));
        let redactor = Redactor::new(secrets);
        let candidates = current
            .iter()
            .filter(|c| !c.is_empty() && c.expose() != new.expose())
            .map(|c| (c, false))
            .chain(std::iter::once((new, true)));
        let mut last_refusal = None;
        for (password, is_new) in candidates {
            let mut ldap = self.connect(phase, &redactor).await?;
            match self
                .bind(&mut ldap, phase, Login::Target, &credential.id, password, &redactor)
                .await
            {
                Ok(()) if is_new => {
                    let _ = ldap.unbind().await;
                    return Ok(());
                }
                Ok(()) => {
                    let result = async {
                        let dn = self.resolve(&mut ldap, phase, &credential.id, &redactor).await?;
                        self.change(&mut ldap, &dn, password, new, &redactor).await
                    }
                    .await;
                    let _ = ldap.unbind().await;
                    return match result {
                        // AD lets a replaced password bind for its "old password allowed
                        // period" (60 min by default), so after an interrupted change the old
                        // one may log in while the change from it is refused (19: it no longer
                        // matches). The candidate binding means it is already set.
                        Err(e) if e.kind() == DriverErrorKind::PasswordRejected => {
                            if self.binds(credential, &redactor).await {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        }
                        other => other,
                    };
                }
                Err(e) if e.kind() == DriverErrorKind::LoginRejected => last_refusal = Some(e),
                Err(e) => return Err(e),
            }
        }
        let hint = if current.iter().all(|c| c.is_empty()) {
            "; no current password is known: set the rotation's \
             temporary_parameters.password to the account's password"
        } else {
            ""
        };
        Err(DriverError::new(
            DriverErrorKind::LoginRejected,
            SYSTEM,
            phase,
            format!(
                "{} refused every password it may hold now ({} tried){}{hint}",
                credential.id,
                current.iter().filter(|c| !c.is_empty()).count() + 1,
                last_refusal.map_or(String::new(), |e| format!(": {}", e.detail())),
            ),
        )
        .before_sending())
    }
}

impl Driver for LdapDriver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        match self.method {
            RotationMethod::ConnectionPrincipal => {
                let redactor = Redactor::new([
                    credential.secret.expose(),
                    self.admin.admin_password.expose(),
                ]);
                self.reset(Phase::Apply, &credential.id, &credential.secret, &redactor)
                    .await
            }
            RotationMethod::TargetPrincipal => Err(invalid(
                SYSTEM,
                Phase::Apply,
                "target-principal changes the password as the account itself, which needs its \
                 current password: none is known (set the rotation's temporary_parameters.password)",
            )),
        }
    }

    async fn apply_with_current(
        &self,
        credential: &Credential,
        current: &[SecretString],
    ) -> Result<(), DriverError> {
        match self.method {
            RotationMethod::ConnectionPrincipal => self.apply(credential).await,
            RotationMethod::TargetPrincipal => self.apply_as_target(credential, current).await,
        }
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([
            credential.secret.expose(),
            self.admin.admin_password.expose(),
        ]);
        let mut ldap = self.connect(Phase::Verify, &redactor).await?;
        self.bind(
            &mut ldap,
            Phase::Verify,
            Login::Target,
            &credential.id,
            &credential.secret,
            &redactor,
        )
        .await?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        match self.method {
            RotationMethod::ConnectionPrincipal => {
                // A password nobody keeps; meets AD's complexity rules (three classes).
                let discarded = PasswordPolicy::default_for(RotationType::LdapPassword).generate();
                let redactor =
                    Redactor::new([discarded.expose(), self.admin.admin_password.expose()]);
                self.reset(Phase::Revoke, id, &discarded, &redactor).await
            }
            RotationMethod::TargetPrincipal => Err(invalid(
                SYSTEM,
                Phase::Revoke,
                "target-principal: the connection may not reset the account, so revoke cannot \
                 scramble its password",
            )),
        }
    }

    async fn probe(&self) -> Result<(), DriverError> {
        let redactor = Redactor::new([self.admin.admin_password.expose()]);
        let mut ldap = self.admin_session(Phase::Probe, &redactor).await?;
        let _ = ldap.unbind().await;
        Ok(())
    }
}

/// The `unicodePwd` value of `password`: `"password"` in UTF-16LE.
fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

// === classifying errors ===

/// The rustls error inside an ldap3 error, if the failure was TLS.
fn tls_failure(e: &LdapError) -> Option<String> {
    // `Error::Other` is the pinned verifier's advice: its text without the "other error" prefix.
    let text = |e: &rustls::Error| match e {
        rustls::Error::Other(other) => other.0.to_string(),
        e => e.to_string(),
    };
    match e {
        LdapError::Rustls { source } => Some(text(source)),
        LdapError::DNSName { source } => Some(format!("the host is not a valid TLS name: {source}")),
        LdapError::Io { source } => source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(text),
        _ => None,
    }
}

/// An error while connecting (TCP, TLS, StartTLS).
fn connect_error(e: &LdapError, phase: Phase, redactor: &Redactor<'_>) -> DriverError {
    if let Some(tls) = tls_failure(e) {
        return DriverError::new(
            DriverErrorKind::Tls,
            SYSTEM,
            phase,
            redactor.scrub(&format!("TLS handshake failed: {tls}")),
        );
    }
    match e {
        // The StartTLS request itself was answered with an error.
        LdapError::LdapResult { result } => DriverError::new(
            DriverErrorKind::Tls,
            SYSTEM,
            phase,
            redactor.scrub(&format!(
                "the server refused StartTLS (rc={} {}): {}",
                result.rc,
                rc_name(result.rc),
                result.text
            )),
        ),
        LdapError::Timeout { .. } => DriverError::new(
            DriverErrorKind::Timeout,
            SYSTEM,
            phase,
            "no connection within the connect timeout",
        ),
        other => DriverError::new(
            DriverErrorKind::Unreachable,
            SYSTEM,
            phase,
            redactor.scrub(&format!("cannot connect: {other}")),
        ),
    }
}

/// A refused or failed bind.
fn bind_error(e: &LdapError, phase: Phase, login: Login, redactor: &Redactor<'_>) -> DriverError {
    if let LdapError::LdapResult { result } = e
        && result.rc == 49
    {
        let (kind, who) = match login {
            Login::Admin => (DriverErrorKind::AdminLoginRejected, "the connection's bind DN"),
            Login::Target => (DriverErrorKind::LoginRejected, "the account"),
        };
        return DriverError::new(
            kind,
            SYSTEM,
            phase,
            redactor.scrub(&format!(
                "invalid credentials for {who} (rc=49): {}",
                result.text.trim()
            )),
        );
    }
    operation_error(e, phase, redactor)
}

/// An error of an operation on a connected session: the result code decides the kind.
fn operation_error(e: &LdapError, phase: Phase, redactor: &Redactor<'_>) -> DriverError {
    let (kind, detail) = match e {
        LdapError::LdapResult { result } => {
            let (kind, hint) = rc_kind(result.rc);
            let mut detail = format!("rc={} {}", result.rc, rc_name(result.rc));
            if !hint.is_empty() {
                detail.push_str(": ");
                detail.push_str(hint);
            }
            if !result.text.trim().is_empty() {
                detail.push_str(" (server: ");
                detail.push_str(result.text.trim());
                detail.push(')');
            }
            if !result.refs.is_empty() {
                detail.push_str(&format!("; referral to {} not followed", result.refs.join(" ")));
            }
            (kind, detail)
        }
        LdapError::Timeout { .. } => (
            DriverErrorKind::Timeout,
            "no answer within the operation timeout".to_owned(),
        ),
        other => match tls_failure(other) {
            Some(tls) => (DriverErrorKind::Tls, tls),
            None => (
                DriverErrorKind::Unreachable,
                format!("the connection failed: {other}"),
            ),
        },
    };
    DriverError::new(kind, SYSTEM, phase, redactor.scrub(&detail))
}

/// The kind of an LDAP result code, and what it usually means here.
fn rc_kind(rc: u32) -> (DriverErrorKind, &'static str) {
    use DriverErrorKind as K;
    match rc {
        3 => (K::Timeout, "the server's time limit was exceeded"),
        8 | 13 => (
            K::Tls,
            "the server requires an encrypted connection: use ldaps or starttls",
        ),
        19 => (
            K::PasswordRejected,
            "the password policy refused the change (complexity, length, history, minimum age, \
             or a wrong current password)",
        ),
        32 => (K::UserNotFound, "no such entry"),
        34 => (K::InvalidInput, "the DN is not valid"),
        49 => (K::LoginRejected, "invalid credentials"),
        50 => (
            K::PermissionDenied,
            "the bound identity may not change this password",
        ),
        51 | 52 => (K::ServerUnavailable, "the server is busy or unavailable"),
        53 => (
            K::Server,
            "the server is unwilling to perform the change (Active Directory: unicodePwd needs \
             an encrypted connection)",
        ),
        _ => (K::Server, ""),
    }
}

/// RFC 4511's name of a result code.
fn rc_name(rc: u32) -> &'static str {
    match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "",
    }
}

// === input checks (spec §10) ===

/// A DN: RDNs `attr=value` separated by `,`, multi-valued RDNs joined by `+`, values without
/// `, + = " < > # ; \`.
pub fn is_dn(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|rdn| {
            rdn.split('+').all(|pair| {
                let Some((attr, value)) = pair.split_once('=') else {
                    return false;
                };
                let (attr, value) = (attr.trim(), value.trim());
                !attr.is_empty()
                    && attr
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    && !value.is_empty()
                    && !value.chars().any(|c| "=\"<>#;\\".contains(c))
            })
        })
}

/// A UPN: `local@domain.tld`, local `[A-Za-z0-9._%+-]+`, domain `[A-Za-z0-9._-]+\.[A-Za-z]{2,}`.
pub fn is_upn(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let Some((name, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
}

/// Whether two identities are the same DN or UPN, ignoring case and spaces around separators.
fn same_dn(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split(',')
            .map(|rdn| {
                rdn.split('+')
                    .map(|p| {
                        p.split_once('=').map_or(p.trim().to_lowercase(), |(k, v)| {
                            format!("{}={}", k.trim().to_lowercase(), v.trim().to_lowercase())
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    norm(a) == norm(b)
}

fn string_option(options: &toml::Table, key: &str) -> Result<Option<String>, DriverError> {
    match options.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(invalid(
            SYSTEM,
            Phase::Build,
            format!("option {key} must be a string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_and_upn_follow_the_spec() {
        for dn in [
            "uid=alice,dc=example,dc=test",
            "CN=alice,CN=Users,DC=samdom,DC=test",
            "cn=a+sn=b, dc=x",
        ] {
            assert!(is_dn(dn), "{dn}");
        }
        for bad in ["alice", "cn=", "=x", "cn=a;b,dc=x", "cn=a\\,b", "cn=a,,dc=x"] {
            assert!(!is_dn(bad), "{bad}");
        }
        assert!(is_upn("alice@samdom.test"));
        assert!(is_upn("a.b-c%d+e@sub.example.COM"));
        for bad in ["@x.test", "a@test", "a@x.t", "a b@x.test", "a@x.t3st"] {
            assert!(!is_upn(bad), "{bad}");
        }
    }

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(unicode_pwd("Ab1"), b"\"\0A\0b\x001\0\"\0".to_vec());
    }

    #[test]
    fn the_bind_dn_is_recognised_whatever_its_case() {
        assert!(same_dn("CN=Admin, DC=x", "cn=admin,dc=X"));
        assert!(!same_dn("cn=admin,dc=x", "cn=alice,dc=x"));
    }

    #[test]
    fn result_codes_map_to_kinds_without_the_password() {
        let pw = "Secret-Password-123";
        let r = Redactor::new([pw]);
        let result = |rc: u32, text: &str| LdapError::LdapResult {
            result: ldap3::LdapResult {
                rc,
                matched: String::new(),
                text: text.to_owned(),
                refs: vec![],
                ctrls: vec![],
            },
        };
        let cases = [
            (19, DriverErrorKind::PasswordRejected),
            (50, DriverErrorKind::PermissionDenied),
            (53, DriverErrorKind::Server),
            (13, DriverErrorKind::Tls),
            (32, DriverErrorKind::UserNotFound),
            (51, DriverErrorKind::ServerUnavailable),
        ];
        for (rc, kind) in cases {
            let e = operation_error(&result(rc, &format!("echo {pw}")), Phase::Apply, &r);
            assert_eq!(e.kind(), kind, "rc {rc}");
            assert!(!e.to_string().contains(pw), "{e}");
        }
        let e = bind_error(&result(49, "data 52e"), Phase::Probe, Login::Admin, &r);
        assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected);
        assert!(!e.may_have_changed_target());
        let e = bind_error(&result(49, ""), Phase::Verify, Login::Target, &r);
        assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
    }
}
