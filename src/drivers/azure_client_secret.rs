//! `azure-client-secret`: client secrets (password credentials) of a Microsoft Entra application,
//! issued by Microsoft Graph.
//!
//! - **token**: `POST <authority>/<tenant>/oauth2/v2.0/token`, `grant_type=client_credentials`
//!   with the admin app's client id and secret (the connection's `username` and `password`),
//!   scope `https://<graph host>/.default`; cached per connection until 5 minutes before it
//!   expires.
//! - **issue**: `POST /v1.0/applications/{objectId}/addPassword` with a `displayName` naming
//!   rotator and the rotation, and `endDateTime` = now + (2·interval + 3) days, so a secret
//!   outlives the rotation after next by three days; the answer's `keyId` and `secretText`
//!   are the credential (Graph shows `secretText` only here).
//! - **list**: `GET /v1.0/applications/{objectId}?$select=passwordCredentials`, the `keyId`s.
//! - **revoke**: `POST /v1.0/applications/{objectId}/removePassword` `{"keyId"}`, only when
//!   the list still holds the id, so revoking twice is harmless.
//! - **verify**: a token request as the rotated app (`clientId` of the parameters) with the new
//!   secret, retried while Entra answers `invalid_client` within `propagation_wait_seconds`
//!   (new credentials take a while to replicate).
//!
//! Unlike upstream, which created the secret first and only then refused an interval over 909
//! days (orphaning that secret, spec §14 item 5), the interval is checked when the driver is
//! built: a rotation that cannot work never sends anything.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::Url;
use serde_json::json;

use super::http::{self, ClientAuth, Login, Reply, TokenCache};
use super::redact::Redactor;
use super::{
    BuildContext, Built, ConnectionConfig, Credential, DbSystem, Descriptor, DriverError,
    DriverErrorKind, Issuer, Operations, Phase, invalid,
};
use crate::proto::{RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("azure.graph");

/// The longest rotation interval: Graph refuses a password credential living over 5 years,
/// and (2·909 + 3) = 1821 days is the longest lifetime under that (spec §7).
pub const MAX_INTERVAL_DAYS: u32 = 909;

/// The interval assumed when the driver is built outside a registry (the registry's default).
pub const DEFAULT_INTERVAL_DAYS: u32 = 30;

/// The authority of the global cloud; US Government: `https://login.microsoftonline.us`,
/// China (21Vianet): `https://login.chinacloudapi.cn`.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Graph's error code for an application holding as many passwords as it may.
const TOO_MANY_PASSWORDS: &str = "TooManyAppPasswords";

/// `azure-client-secret` on Microsoft Graph.
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "azure-client-secrets",
    default_port: 443,
    rotation_types: &[RotationType::AzureClientSecret],
    shape: CredentialShape::ClientSecretWithKeyId,
    source: SecretSource::Issued,
    system: SYSTEM,
    operations: Operations {
        apply: "addPassword",
        verify: "token",
        revoke: "removePassword",
        probe: "passwordCredentials",
    },
    options: &["tenant_id", "authority_url", http::PROPAGATION_OPTION],
    build,
};

/// The admin token of one connection, shared by its rotations.
#[derive(Clone, Default, Debug)]
struct AdminToken(TokenCache);

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::AzureClientSecret(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let object_id = parameters.object_id.trim();
    let client_id = parameters.client_id.trim();
    if object_id.is_empty() {
        return Err(invalid(SYSTEM, Phase::Build, "Object ID Required"));
    }
    if client_id.is_empty() {
        return Err(invalid(SYSTEM, Phase::Build, "Client ID Required"));
    }
    if !http::is_path_safe(object_id) {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "objectId must be the application's object id (a GUID)",
        ));
    }
    let interval = ctx.interval_days.unwrap_or(DEFAULT_INTERVAL_DAYS);
    if interval > MAX_INTERVAL_DAYS {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            format!(
                "Azure does not support token duration over 5 years: rotation_interval_days must be at most {MAX_INTERVAL_DAYS}"
            ),
        ));
    }
    let c = ctx.connection;
    let tenant = http::string_option(ctx.options, "tenant_id", SYSTEM)?.unwrap_or_default();
    if !http::is_path_safe(&tenant) {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "option tenant_id is required: the directory (tenant) id or its domain",
        ));
    }
    if c.admin_password.is_empty() {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "the connection password (the admin app's client secret) is empty",
        ));
    }
    let authority = http::string_option(ctx.options, "authority_url", SYSTEM)?
        .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned());
    let authority = http::option_url(&authority, "authority_url", c.tls.mode, SYSTEM)?;
    let token_url = authority
        .join(&format!("{tenant}/oauth2/v2.0/token"))
        .map_err(|e| invalid(SYSTEM, Phase::Build, format!("authority_url: {e}")))?;
    let graph = http::base_url(c, SYSTEM)?;
    let application = graph
        .join(&format!("v1.0/applications/{object_id}"))
        .map_err(|e| invalid(SYSTEM, Phase::Build, format!("object id: {e}")))?;
    let http = ctx
        .shared
        .get_or_init(|| http::client(c, SYSTEM).map_err(|e| e.detail().to_owned()))
        .map_err(|e| DriverError::new(DriverErrorKind::Tls, SYSTEM, Phase::Build, e))?;
    Ok(Built::issued(AzureDriver {
        http,
        token: ctx.shared.get_or_init(AdminToken::default),
        token_url,
        scope: format!("https://{}/.default", c.host.trim()),
        application,
        client_id: client_id.to_owned(),
        admin: ConnectionConfig::clone(c),
        display_name: format!("rotator rotation {}", ctx.rotation_id),
        lifetime: chrono::Duration::days(2 * i64::from(interval) + 3),
        propagation: http::propagation_wait(ctx.options, SYSTEM)?,
    }))
}

/// The Azure driver of one rotation.
#[derive(Debug)]
pub struct AzureDriver {
    http: reqwest::Client,
    /// The admin app's Graph token, shared by the connection's rotations.
    token: AdminToken,
    /// `<authority>/<tenant>/oauth2/v2.0/token`.
    token_url: Url,
    /// `https://<graph host>/.default`.
    scope: String,
    /// `<graph>/v1.0/applications/<objectId>` (no trailing slash).
    application: Url,
    /// The rotated app's client id, for verify.
    client_id: String,
    /// The connection: the admin app's client id and secret.
    admin: ConnectionConfig,
    /// `displayName` of every secret this rotation creates.
    display_name: String,
    /// How long a new secret lives: 2·interval + 3 days.
    lifetime: chrono::Duration,
    /// How long verify waits for a new secret to work.
    propagation: Duration,
}

// === impl AzureDriver ===

impl AzureDriver {
    /// A client-credentials token request; the token and its lifetime.
    async fn request_token(
        &self,
        phase: Phase,
        login: Login,
        client_id: &str,
        secret: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<(SecretString, Duration), DriverError> {
        let request = http::token_request(
            &self.http,
            self.token_url.clone(),
            ClientAuth::Form,
            client_id,
            secret,
            &[("scope", self.scope.as_str())],
        );
        let reply = http::send(request, SYSTEM, phase, redactor).await?;
        if reply.is_success() {
            return http::bearer_token(
                &reply,
                SYSTEM,
                phase,
                "the token endpoint answered without a bearer token",
            );
        }
        Err(token_error(&reply, phase, login, redactor))
    }

    /// One Graph call as the admin, with its cached token (see [`http::with_bearer`]).
    async fn graph(
        &self,
        phase: Phase,
        request: impl Fn() -> reqwest::RequestBuilder,
        redactor: &Redactor<'_>,
    ) -> Result<Reply, DriverError> {
        let fetch = || {
            self.request_token(
                phase,
                Login::Admin,
                &self.admin.admin_username,
                &self.admin.admin_password,
                redactor,
            )
        };
        let (reply, token) =
            http::with_bearer(&self.token.0, fetch, request, SYSTEM, phase, redactor).await?;
        if reply.is_success() {
            Ok(reply)
        } else {
            Err(graph_error(&reply, phase, &redactor.also(token.expose())))
        }
    }

    fn redactor(&self) -> Redactor<'_> {
        Redactor::new([self.admin.admin_password.expose()])
    }

    fn action(&self, name: &str) -> Url {
        let mut url = self.application.clone();
        url.path_segments_mut()
            .map(|mut s| {
                s.push(name);
            })
            .ok();
        url
    }
}

impl Issuer for AzureDriver {
    async fn issue(&self) -> Result<Credential, DriverError> {
        let redactor = self.redactor();
        let end = (Utc::now() + self.lifetime).to_rfc3339_opts(SecondsFormat::Secs, true);
        let display_name = format!(
            "{} ({})",
            self.display_name,
            Utc::now().format("%Y-%m-%d")
        );
        let body = json!({
            "passwordCredential": { "displayName": display_name, "endDateTime": end }
        });
        let url = self.action("addPassword");
        let request = || self.http.post(url.clone()).json(&body);
        let reply = self.graph(Phase::Issue, request, &redactor).await?;
        http::issued_credential(
            &reply.body,
            "keyId",
            &["secretText"],
            SYSTEM,
            "Invalid response from Azure: missing secretText or keyId",
        )
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([
            credential.secret.expose(),
            self.admin.admin_password.expose(),
        ]);
        http::while_propagating(self.propagation, || async {
            self.request_token(
                Phase::Verify,
                Login::Target,
                &self.client_id,
                &credential.secret,
                &redactor,
            )
            .await
            .map(drop)
        })
        .await
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        // removePassword of an unknown keyId is an error, and a missing id is what revoke
        // promises: look first.
        if !self.list_with(Phase::Revoke).await?.iter().any(|k| k == id) {
            return Ok(());
        }
        let redactor = self.redactor();
        let url = self.action("removePassword");
        let body = json!({ "keyId": id });
        let request = || self.http.post(url.clone()).json(&body);
        self.graph(Phase::Revoke, request, &redactor).await.map(drop)
    }

    async fn list(&self) -> Result<Vec<String>, DriverError> {
        self.list_with(Phase::List).await
    }
}

impl AzureDriver {
    async fn list_with(&self, phase: Phase) -> Result<Vec<String>, DriverError> {
        let redactor = self.redactor();
        let mut url = self.application.clone();
        url.query_pairs_mut()
            .append_pair("$select", "passwordCredentials");
        let reply = self
            .graph(phase, || self.http.get(url.clone()), &redactor)
            .await?;
        let Some(credentials) = reply
            .body
            .get("passwordCredentials")
            .and_then(serde_json::Value::as_array)
        else {
            return Err(DriverError::new(
                DriverErrorKind::Server,
                SYSTEM,
                phase,
                "Graph answered without passwordCredentials",
            ));
        };
        Ok(credentials
            .iter()
            .map(|c| http::text(c, "keyId").to_owned())
            .filter(|k| !k.is_empty())
            .collect())
    }
}

/// Classifies a Graph error: `{"error": {"code", "message"}}`.
fn graph_error(reply: &Reply, phase: Phase, redactor: &Redactor<'_>) -> DriverError {
    let error = reply.body.get("error").unwrap_or(&serde_json::Value::Null);
    let code = http::text(error, "code");
    let message = http::text(error, "message");
    let kind = if code == TOO_MANY_PASSWORDS {
        DriverErrorKind::LimitReached
    } else {
        http::status_kind(reply.status)
    };
    let text = if code.is_empty() {
        message.to_owned()
    } else {
        format!("{code}: {message}")
    };
    http::reply_error(kind, reply, &text, SYSTEM, phase, redactor)
}

/// Classifies an identity platform error: `{"error", "error_description", "error_codes", ...}`.
/// `invalid_client` (a wrong, expired or not yet replicated secret) and `unauthorized_client`
/// (no such app in the tenant) refuse the login; who logged in decides the kind.
fn token_error(reply: &Reply, phase: Phase, login: Login, redactor: &Redactor<'_>) -> DriverError {
    http::token_error(
        reply,
        login,
        &["invalid_client", "unauthorized_client"],
        SYSTEM,
        phase,
        redactor,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status: reqwest::StatusCode::from_u16(status).expect("status"),
            retry_after: None,
            body,
        }
    }

    #[test]
    fn graph_errors_classify_by_code_then_status() {
        let r = Redactor::default();
        let too_many = reply(
            400,
            json!({"error": {"code": "TooManyAppPasswords", "message": "Not allowed to add 3 passwords."}}),
        );
        assert_eq!(
            graph_error(&too_many, Phase::Issue, &r).kind(),
            DriverErrorKind::LimitReached
        );
        let missing = reply(404, json!({"error": {"code": "Request_ResourceNotFound", "message": "x"}}));
        assert_eq!(
            graph_error(&missing, Phase::Issue, &r).kind(),
            DriverErrorKind::UserNotFound
        );
        let throttled = reply(429, json!({"error": {"code": "TooManyRequests", "message": "x"}}));
        assert!(graph_error(&throttled, Phase::Issue, &r).is_transient());
    }

    #[test]
    fn a_refused_secret_is_the_target_s_or_the_admin_s() {
        let r = Redactor::default();
        let body = json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x", "error_codes": [7000215]});
        let refused = reply(401, body);
        let target = token_error(&refused, Phase::Verify, Login::Target, &r);
        assert_eq!(target.kind(), DriverErrorKind::LoginRejected);
        assert!(!target.detail().contains("Trace ID"), "{target}");
        assert_eq!(
            token_error(&refused, Phase::Issue, Login::Admin, &r).kind(),
            DriverErrorKind::AdminLoginRejected
        );
    }
}
