//! `auth0-client-secret`: an Auth0 application's client secret, chosen by rotator and set through
//! the Management API v2. Single-phase: the application has one secret, replaced in place.
//!
//! - **token**: `POST https://<domain>/oauth/token`, `grant_type=client_credentials` with the
//!   M2M app's client id and secret (the connection's `username` and `password`) and the
//!   Management API `audience`; cached per connection until 5 minutes before it expires.
//! - **apply**: `PATCH /api/v2/clients/{clientId}` `{"client_secret": "<48 alphanumerics>"}`.
//!   Setting the same secret again is harmless, so a resumed attempt applies again.
//! - **verify**: a token request as the rotated app with the new secret, for the same audience,
//!   retried within `propagation_wait_seconds` (Auth0: a new secret "may be delayed up to
//!   thirty seconds"). 403 `access_denied` or `invalid_scope` means the secret authenticated
//!   but the app has no grant for the audience, which is expected: valid. A 401 is a refused
//!   secret. (Upstream counted `access_denied` as valid whatever the status; Auth0 answers a
//!   wrong secret with 401 `access_denied`, so that check passed every secret.)
//! - **revoke**: `POST /api/v2/clients/{clientId}/rotate-secret`: Auth0 draws a secret nobody
//!   keeps; the answer, which shows it, is dropped unread.
//! - **probe**: a token request as the M2M app.

use std::time::Duration;

use reqwest::Url;
use serde_json::json;

use super::http::{self, ClientAuth, Login, Reply, TokenCache};
use super::redact::Redactor;
use super::{
    BuildContext, Built, ConnectionConfig, Credential, DbSystem, Descriptor, Driver, DriverError,
    DriverErrorKind, Operations, Phase, invalid,
};
use crate::proto::{PasswordRequirements, RequiredCharacters, RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("auth0");

/// The generated secret (spec §5): 48 characters of `[A-Za-z0-9]`, at least one of each class.
pub const SECRET_LENGTH: u32 = 48;

/// `auth0-client-secret` on the Auth0 Management API v2.
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "auth0",
    default_port: 443,
    rotation_types: &[RotationType::Auth0ClientSecret],
    shape: CredentialShape::ClientSecret,
    source: SecretSource::Chosen,
    system: SYSTEM,
    operations: Operations {
        apply: "PATCH client_secret",
        verify: "oauth/token",
        revoke: "rotate-secret",
        probe: "oauth/token",
    },
    options: &["audience", http::PROPAGATION_OPTION],
    build,
};

/// The M2M app's Management API token of one connection, shared by its rotations.
#[derive(Clone, Default, Debug)]
struct AdminToken(TokenCache);

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::Auth0ClientSecret(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let client_id = parameters.client_id.trim().to_owned();
    if client_id.is_empty() {
        return Err(invalid(SYSTEM, Phase::Build, "Client ID Required"));
    }
    if !http::is_path_safe(&client_id) {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "clientId must be an Auth0 client id (letters and digits)",
        ));
    }
    let c = ctx.connection;
    if c.admin_password.is_empty() {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "the connection password (the M2M app's client secret) is empty",
        ));
    }
    let base = http::base_url(c, SYSTEM)?;
    let audience = http::string_option(ctx.options, "audience", SYSTEM)?
        .unwrap_or_else(|| format!("https://{}/api/v2/", c.host.trim()));
    if !audience.ends_with('/') || Url::parse(&audience).is_err() {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "option audience must be the Management API identifier, a URL ending with /",
        ));
    }
    let join = |path: &str| {
        base.join(path)
            .map_err(|e| invalid(SYSTEM, Phase::Build, format!("connection host: {e}")))
    };
    let http = ctx
        .shared
        .get_or_init(|| http::client(c, SYSTEM).map_err(|e| e.detail().to_owned()))
        .map_err(|e| DriverError::new(DriverErrorKind::Tls, SYSTEM, Phase::Build, e))?;
    let driver = Auth0Driver {
        http,
        token: ctx.shared.get_or_init(AdminToken::default),
        token_url: join("oauth/token")?,
        clients: join("api/v2/clients/")?,
        audience,
        admin: ConnectionConfig::clone(c),
        propagation: http::propagation_wait(ctx.options, SYSTEM)?,
    };
    let requirements = PasswordRequirements {
        length: SECRET_LENGTH,
        required: Some(RequiredCharacters {
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols: 0,
        }),
        allowed_symbols: None,
    };
    Ok(Built::chosen(
        driver,
        [client_id.clone(), client_id],
        Some(&requirements),
    ))
}

/// The Auth0 driver of one rotation.
#[derive(Debug)]
pub struct Auth0Driver {
    http: reqwest::Client,
    /// The M2M app's Management API token, shared by the connection's rotations.
    token: AdminToken,
    /// `https://<domain>/oauth/token`.
    token_url: Url,
    /// `https://<domain>/api/v2/clients/`.
    clients: Url,
    /// The Management API identifier, e.g. `https://<tenant>.us.auth0.com/api/v2/`.
    audience: String,
    /// The connection: the M2M app's client id and secret.
    admin: ConnectionConfig,
    /// How long verify waits for a new secret to work.
    propagation: Duration,
}

// === impl Auth0Driver ===

impl Auth0Driver {
    /// A client-credentials token request for the Management API audience; `None` when the
    /// rotated app authenticated but has no grant for it.
    async fn request_token(
        &self,
        phase: Phase,
        login: Login,
        client_id: &str,
        secret: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<Option<(SecretString, Duration)>, DriverError> {
        let request = http::token_request(
            &self.http,
            self.token_url.clone(),
            ClientAuth::Form,
            client_id,
            secret,
            &[("audience", self.audience.as_str())],
        );
        let reply = http::send(request, SYSTEM, phase, redactor).await?;
        if reply.is_success() {
            return http::bearer_token(
                &reply,
                SYSTEM,
                phase,
                "Unhandled token type: /oauth/token answered without a bearer token",
            )
            .map(Some);
        }
        let error = http::text(&reply.body, "error");
        // Authenticated, but not granted this audience or scope: the secret is right.
        if login == Login::Target
            && reply.status.as_u16() == 403
            && matches!(error, "access_denied" | "invalid_scope")
        {
            return Ok(None);
        }
        Err(token_error(&reply, phase, login, redactor))
    }

    /// A Management API token for the M2M app (not cached: see [`Self::management`]).
    async fn admin_token(
        &self,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> Result<(SecretString, Duration), DriverError> {
        self.request_token(
            phase,
            Login::Admin,
            &self.admin.admin_username,
            &self.admin.admin_password,
            redactor,
        )
        .await?
        .ok_or_else(|| {
            DriverError::new(
                DriverErrorKind::PermissionDenied,
                SYSTEM,
                phase,
                "the M2M app is not authorised for the Management API",
            )
        })
    }

    /// One Management API call as the M2M app, with its cached token (see
    /// [`http::with_bearer`]).
    async fn management(
        &self,
        phase: Phase,
        request: impl Fn() -> reqwest::RequestBuilder,
        redactor: &Redactor<'_>,
    ) -> Result<Reply, DriverError> {
        let fetch = || self.admin_token(phase, redactor);
        let (reply, token) =
            http::with_bearer(&self.token.0, fetch, request, SYSTEM, phase, redactor).await?;
        if reply.is_success() {
            Ok(reply)
        } else {
            Err(management_error(&reply, phase, &redactor.also(token.expose())))
        }
    }

    fn client_url(&self, id: &str, action: Option<&str>) -> Url {
        let mut url = self.clients.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(id);
            if let Some(action) = action {
                segments.push(action);
            }
        }
        url
    }
}

impl Driver for Auth0Driver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([
            credential.secret.expose(),
            self.admin.admin_password.expose(),
        ]);
        let url = self.client_url(&credential.id, None);
        let body = json!({ "client_secret": credential.secret.expose() });
        let request = || self.http.patch(url.clone()).json(&body);
        self.management(Phase::Apply, request, &redactor)
            .await
            .map(drop)
            .map_err(|e| match e.kind() {
                // A body Auth0 refused: the secret, since nothing else is sent.
                DriverErrorKind::InvalidInput => DriverError::new(
                    DriverErrorKind::PasswordRejected,
                    SYSTEM,
                    Phase::Apply,
                    e.detail().to_owned(),
                ),
                _ => e,
            })
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
                &credential.id,
                &credential.secret,
                &redactor,
            )
            .await
            .map(drop)
        })
        .await
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        let redactor = Redactor::new([self.admin.admin_password.expose()]);
        let url = self.client_url(id, Some("rotate-secret"));
        let request = || self.http.post(url.clone());
        match self.management(Phase::Revoke, request, &redactor).await {
            // The answer shows the new secret: dropped unread.
            Ok(_) => Ok(()),
            // No such client: it has no secret left to revoke.
            Err(e) if e.kind() == DriverErrorKind::UserNotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn probe(&self) -> Result<(), DriverError> {
        let redactor = Redactor::new([self.admin.admin_password.expose()]);
        // A fresh token: the probe proves the credentials, not the cache.
        self.token.0.clear().await;
        let fetch = self.admin_token(Phase::Probe, &redactor);
        self.token.0.get_or_fetch(fetch).await.map(drop)
    }
}

/// Classifies a Management API error: `{statusCode, error, message, errorCode}`.
fn management_error(reply: &Reply, phase: Phase, redactor: &Redactor<'_>) -> DriverError {
    let code = http::text(&reply.body, "errorCode");
    let message = http::text(&reply.body, "message");
    let kind = match code {
        "inexistent_client" => DriverErrorKind::UserNotFound,
        "insufficient_scope" => DriverErrorKind::PermissionDenied,
        "too_many_requests" => DriverErrorKind::ServerUnavailable,
        _ => http::status_kind(reply.status),
    };
    let text = if code.is_empty() {
        message.to_owned()
    } else {
        format!("{code}: {message}")
    };
    http::reply_error(kind, reply, &text, SYSTEM, phase, redactor)
}

/// Classifies an `/oauth/token` error: `{error, error_description}`. 401 or `invalid_client`
/// is a refused secret; a 403 of the M2M app is a missing grant.
fn token_error(reply: &Reply, phase: Phase, login: Login, redactor: &Redactor<'_>) -> DriverError {
    http::token_error(reply, login, &["invalid_client"], SYSTEM, phase, redactor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status: reqwest::StatusCode::from_u16(status).expect("status"),
            retry_after: Some(3),
            body,
        }
    }

    #[test]
    fn management_errors_classify_by_error_code() {
        let r = Redactor::default();
        let e = management_error(
            &reply(404, json!({"statusCode": 404, "error": "Not Found", "message": "The client does not exist", "errorCode": "inexistent_client"})),
            Phase::Apply,
            &r,
        );
        assert_eq!(e.kind(), DriverErrorKind::UserNotFound);
        let e = management_error(
            &reply(429, json!({"statusCode": 429, "error": "Too Many Requests", "message": "Global limit has been reached", "errorCode": "too_many_requests"})),
            Phase::Apply,
            &r,
        );
        assert!(e.is_transient());
        assert!(e.detail().contains("retry after 3 s"), "{e}");
    }

    #[test]
    fn a_wrong_secret_is_refused_even_as_access_denied() {
        let r = Redactor::default();
        let wrong = reply(401, json!({"error": "access_denied", "error_description": "Unauthorized"}));
        assert_eq!(
            token_error(&wrong, Phase::Verify, Login::Target, &r).kind(),
            DriverErrorKind::LoginRejected
        );
        assert_eq!(
            token_error(&wrong, Phase::Probe, Login::Admin, &r).kind(),
            DriverErrorKind::AdminLoginRejected
        );
    }
}
