//! `okta-client-secret`: the client secrets of one Okta OIDC app, through the Application
//! Client Secrets API (`/api/v1/apps/{appId}/credentials/secrets`).
//!
//! - **issue**: `POST …/secrets` with `{}`: Okta generates the secret and answers with its `id`
//!   and `client_secret`. Okta keeps at most two secrets per app and refuses a third with
//!   `E0000001` (the only validation a body of `{}` can fail), which is `LimitReached`: the
//!   engine then revokes the slot's replaced secret and asks again, so a rotation creates before
//!   it revokes whenever the app has room (upstream always revoked first, spec §14 item 5).
//! - **verify**: a `client_credentials` token request to the org authorization server
//!   (`/oauth2/v1/token`, or `/oauth2/<authorization_server_id>/v1/token`) with HTTP Basic
//!   `appId:secret`. A token proves the secret. So does `invalid_scope` or
//!   `unauthorized_client`: an authorization server authenticates the client before it looks at
//!   the grant (RFC 6749 §5.2), and an app rotated for its secret need not be allowed any Okta
//!   API scope. `invalid_client` is `LoginRejected`.
//! - **revoke**: `GET …/secrets/{id}` (404: already gone), `POST …/lifecycle/deactivate` when it
//!   is ACTIVE (Okta deletes only an inactive secret), then `DELETE`; a 404 at any step is
//!   success, so revoke is idempotent.
//! - **list**: `GET …/secrets`, the ids.
//!
//! The admin credential is an API token (`Authorization: SSWS <token>`) in the connection's
//! `password`; its admin needs the right to manage the app (`okta.apps.manage` for a scoped
//! token). The connection's `username` only names it in spans and logs.

use serde_json::Value;

use super::redact::Redactor;
use super::http::{self, Login, Reply, path_segment};
use super::{
    BuildContext, Built, Credential, DbSystem, Descriptor, DriverError, DriverErrorKind, Issuer,
    Operations, Phase, invalid,
};
use crate::proto::{RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("okta");

/// Okta's error code for a request that failed validation; at create with `{}`, "the app
/// already has two secrets".
const E_VALIDATION: &str = "E0000001";

/// `okta-client-secret` on Okta.
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "okta",
    default_port: 443,
    rotation_types: &[RotationType::OktaClientSecret],
    shape: CredentialShape::ClientSecretWithSecretId,
    source: SecretSource::Issued,
    system: SYSTEM,
    operations: Operations {
        apply: "POST /api/v1/apps/{appId}/credentials/secrets",
        verify: "POST /oauth2/v1/token",
        revoke: "DELETE /api/v1/apps/{appId}/credentials/secrets/{secretId}",
        probe: "GET /api/v1/apps/{appId}/credentials/secrets",
    },
    options: &["authorization_server_id", "verify_scope"],
    build,
};

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::OktaClientSecret(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let options = OktaOptions::from_table(ctx.options)?;
    let driver = OktaDriver::new(ctx.connection, parameters.client_id.trim(), options)?;
    Ok(Built::issued(driver))
}

/// The connection options of the Okta driver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OktaOptions {
    /// The custom authorization server whose token endpoint verifies a secret
    /// (`/oauth2/<id>/v1/token`); the org authorization server (`/oauth2/v1/token`) when absent.
    ///
    /// Since v0.1.
    pub authorization_server_id: Option<String>,
    /// The scope asked for when verifying; none when absent (an `invalid_scope` answer still
    /// proves the secret).
    ///
    /// Since v0.1.
    pub verify_scope: Option<String>,
}

/// The Okta driver of one rotation: the client secrets of app `app_id`.
#[derive(Debug, Clone)]
pub struct OktaDriver {
    http: reqwest::Client,
    /// `http(s)://host[:port]/`.
    base: reqwest::Url,
    /// The app id, which is also its OAuth `client_id`.
    app_id: String,
    /// The SSWS API token.
    api_token: SecretString,
    /// `/oauth2/v1/token` or `/oauth2/<id>/v1/token`.
    token_path: String,
    verify_scope: Option<String>,
}

/// An Okta error body (`{errorCode, errorSummary, errorLink, errorId, errorCauses}`).
#[derive(Debug, Default)]
struct OktaError {
    code: String,
    summary: String,
}

// === impl OktaOptions ===

impl OktaOptions {
    /// Reads the options from a connection's extra keys.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a value that is not a string or not a valid id.
    pub fn from_table(table: &toml::Table) -> Result<Self, DriverError> {
        let text = |key: &str| -> Result<Option<String>, DriverError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) if !s.trim().is_empty() => {
                    Ok(Some(s.trim().to_owned()))
                }
                Some(_) => Err(invalid(
                    SYSTEM,
                    Phase::Build,
                    format!("connection option {key} must be a non-empty string"),
                )),
            }
        };
        let authorization_server_id = text("authorization_server_id")?;
        if let Some(id) = &authorization_server_id {
            path_segment(id, "authorization_server_id", SYSTEM, Phase::Build)?;
        }
        Ok(Self {
            authorization_server_id,
            verify_scope: text("verify_scope")?,
        })
    }
}

// === impl OktaDriver ===

impl OktaDriver {
    /// A driver for the secrets of app `app_id` on the org at `connection.host`.
    ///
    /// # Errors
    ///
    /// `InvalidInput`: an app id that is not an Okta id, an empty API token, a bad host.
    pub fn new(
        connection: &super::ConnectionConfig,
        app_id: &str,
        options: OktaOptions,
    ) -> Result<Self, DriverError> {
        if app_id.is_empty() {
            return Err(invalid(SYSTEM, Phase::Build, "Client ID Required"));
        }
        path_segment(app_id, "clientId", SYSTEM, Phase::Build)?;
        if connection.admin_password.is_empty() {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                "the connection password (the Okta API token) is empty",
            ));
        }
        let token_path = match &options.authorization_server_id {
            Some(id) => format!("/oauth2/{id}/v1/token"),
            None => "/oauth2/v1/token".to_owned(),
        };
        Ok(Self {
            http: http::client(connection, SYSTEM)?,
            base: http::base_url(connection, SYSTEM)?,
            app_id: app_id.to_owned(),
            api_token: connection.admin_password.clone(),
            token_path,
            verify_scope: options.verify_scope,
        })
    }

    fn secrets_path(&self) -> String {
        format!("/api/v1/apps/{}/credentials/secrets", self.app_id)
    }

    /// One call of the management API with the API token.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> Result<Reply, DriverError> {
        let mut request = self
            .http
            .request(method, http::url(&self.base, path))
            .header("Authorization", format!("SSWS {}", self.api_token.expose()))
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        http::send(request, SYSTEM, phase, redactor).await
    }

    fn failure(
        &self,
        reply: &Reply,
        kind: Option<DriverErrorKind>,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> DriverError {
        let error = OktaError::parse(&reply.body);
        let kind = kind.unwrap_or_else(|| http::status_kind(reply.status));
        http::reply_error(kind, reply, &error.detail(), SYSTEM, phase, redactor)
    }
}

impl Issuer for OktaDriver {
    async fn issue(&self) -> Result<Credential, DriverError> {
        let redactor = Redactor::new([self.api_token.expose()]);
        let answer = self
            .call(
                reqwest::Method::POST,
                &self.secrets_path(),
                Some(&Value::Object(Default::default())),
                Phase::Issue,
                &redactor,
            )
            .await?;
        if !answer.is_success() {
            let error = OktaError::parse(&answer.body);
            let kind = (answer.status == reqwest::StatusCode::BAD_REQUEST
                && error.code == E_VALIDATION)
                .then_some(DriverErrorKind::LimitReached);
            return Err(self.failure(&answer, kind, Phase::Issue, &redactor));
        }
        http::issued_credential(
            &answer.body,
            "id",
            &["client_secret"],
            SYSTEM,
            "Invalid response from Okta: missing 'client_secret' or secret 'id'",
        )
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([credential.secret.expose(), self.api_token.expose()]);
        let scope = self.verify_scope.as_deref().map(|scope| ("scope", scope));
        let request = http::token_request(
            &self.http,
            http::url(&self.base, &self.token_path),
            http::ClientAuth::Basic,
            &self.app_id,
            &credential.secret,
            scope.as_slice(),
        );
        let answer = http::send(request, SYSTEM, Phase::Verify, &redactor).await?;
        // The client authenticated; only the grant or scope was refused.
        if answer.is_success()
            || matches!(
                http::text(&answer.body, "error"),
                "invalid_scope" | "unauthorized_client"
            )
        {
            return Ok(());
        }
        Err(http::token_error(
            &answer,
            Login::Target,
            &["invalid_client"],
            SYSTEM,
            Phase::Verify,
            &redactor,
        ))
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        let id = path_segment(id, "secret id", SYSTEM, Phase::Revoke)?;
        let redactor = Redactor::new([self.api_token.expose()]);
        let path = format!("{}/{id}", self.secrets_path());
        let found = self
            .call(reqwest::Method::GET, &path, None, Phase::Revoke, &redactor)
            .await?;
        if found.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        if !found.is_success() {
            return Err(self.failure(&found, None, Phase::Revoke, &redactor));
        }
        if http::text(&found.body, "status") != "INACTIVE" {
            let deactivated = self
                .call(
                    reqwest::Method::POST,
                    &format!("{path}/lifecycle/deactivate"),
                    None,
                    Phase::Revoke,
                    &redactor,
                )
                .await?;
            if deactivated.status == reqwest::StatusCode::NOT_FOUND {
                return Ok(());
            }
            if !deactivated.is_success() {
                return Err(self.failure(&deactivated, None, Phase::Revoke, &redactor));
            }
        }
        let deleted = self
            .call(reqwest::Method::DELETE, &path, None, Phase::Revoke, &redactor)
            .await?;
        if deleted.is_success() || deleted.status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.failure(&deleted, None, Phase::Revoke, &redactor))
        }
    }

    async fn list(&self) -> Result<Vec<String>, DriverError> {
        let redactor = Redactor::new([self.api_token.expose()]);
        let answer = self
            .call(
                reqwest::Method::GET,
                &self.secrets_path(),
                None,
                Phase::List,
                &redactor,
            )
            .await?;
        if !answer.is_success() {
            return Err(self.failure(&answer, None, Phase::List, &redactor));
        }
        let Some(secrets) = answer.body.as_array() else {
            return Err(DriverError::new(
                DriverErrorKind::Server,
                SYSTEM,
                Phase::List,
                "Invalid response from Okta: the secrets are not a list",
            ));
        };
        Ok(secrets
            .iter()
            .filter_map(|s| s.get("id").and_then(Value::as_str))
            .map(str::to_owned)
            .collect())
    }
}

// === impl OktaError ===

impl OktaError {
    fn parse(body: &Value) -> Self {
        let text = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let cause = body
            .get("errorCauses")
            .and_then(Value::as_array)
            .and_then(|causes| causes.first())
            .and_then(|c| c.get("errorSummary"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let summary = if cause.is_empty() {
            text("errorSummary")
        } else {
            format!("{}: {cause}", text("errorSummary"))
        };
        Self {
            code: text("errorCode"),
            summary,
        }
    }

    /// `E0000047 API call exceeded rate limit…`, or a placeholder for a body that is not one.
    fn detail(&self) -> String {
        if self.code.is_empty() && self.summary.is_empty() {
            "no Okta error body".to_owned()
        } else {
            format!("{} {}", self.code, self.summary)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_cause_is_kept() {
        let body = serde_json::json!({
            "errorCode": "E0000001",
            "errorSummary": "Api validation failed: client_secret",
            "errorLink": "E0000001",
            "errorId": "oaeMHrsk2WLTACvPU5T7yQ4yw",
            "errorCauses": [{"errorSummary": "too many secrets"}]
        });
        let e = OktaError::parse(&body);
        assert_eq!(e.code, "E0000001");
        assert_eq!(
            e.detail(),
            "E0000001 Api validation failed: client_secret: too many secrets"
        );
    }

    #[test]
    fn options_name_the_token_endpoint() {
        let table: toml::Table = toml::from_str("authorization_server_id = \"default\"")
            .expect("toml");
        let options = OktaOptions::from_table(&table).expect("valid");
        assert_eq!(options.authorization_server_id.as_deref(), Some("default"));
        let bad: toml::Table =
            toml::from_str("authorization_server_id = \"../x\"").expect("toml");
        assert!(OktaOptions::from_table(&bad).is_err());
    }
}
