//! `databricks-service-principal-secret`: the OAuth secrets of one Databricks service principal.
//!
//! The admin is itself a service principal (the connection's `username`/`password` are its
//! OAuth client id and secret). It gets an OAuth M2M token (`client_credentials`,
//! `scope=all-apis`, HTTP Basic) and reuses it until a minute before it expires. With the
//! `account_id` option the driver uses the account API and token endpoint
//! (`/api/2.0/accounts/{account_id}/servicePrincipals/{id}/credentials/secrets`,
//! `/oidc/accounts/{account_id}/v1/token`); without it, the workspace proxy
//! (`/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets`, `/oidc/v1/token`), as
//! upstream.
//!
//! - **issue**: lists the secrets first; when the principal already holds `max_secrets` (5,
//!   Databricks' current limit) the answer is `LimitReached` and nothing is created, so the
//!   engine revokes the slot's replaced secret and asks again. Otherwise
//!   `POST …/secrets {"lifetime": "<n>s"}`; Databricks shows the value only in this answer.
//! - **verify**: an OAuth M2M token request as the service principal with the new secret.
//! - **revoke**: `DELETE …/secrets/{id}`; 404 is success.
//! - **list**: `GET …/secrets`, every page.
//!
//! The lifetime (`secret_lifetime_seconds`, default (2·30 + 3) days as upstream for a 30-day
//! interval) must be at most 730 days, Databricks' maximum; it is checked when the driver is
//! built, before any call (spec §9).

use std::time::Duration;

use serde_json::Value;

use super::http::{self, ClientAuth, Login, Reply, TokenCache, path_segment};
use super::redact::Redactor;
use super::{
    BuildContext, Built, ConnectionConfig, Credential, DbSystem, Descriptor, DriverError,
    DriverErrorKind, Issuer, Operations, Phase, invalid,
};
use crate::proto::{RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("databricks");

/// One day in seconds.
const DAY: u64 = 86_400;
/// The longest lifetime Databricks gives a secret: 730 days.
pub const MAX_LIFETIME_SECONDS: u64 = 730 * DAY;
/// The default lifetime: (2·30 + 3) days, upstream's padding for a 30-day interval.
pub const DEFAULT_LIFETIME_SECONDS: u64 = (2 * 30 + 3) * DAY;
/// Secrets a service principal may hold. Databricks' documentation says five ("A service
/// principal can have up to five OAuth secrets"); upstream assumed four. The option
/// `max_secrets` lowers it for an account with the older limit.
pub const DEFAULT_MAX_SECRETS: usize = 5;
/// A cached admin token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Pages read at most when listing (100 secrets a page; a principal holds five).
const MAX_PAGES: usize = 20;

/// `databricks-service-principal-secret` on Databricks.
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "databricks",
    default_port: 443,
    rotation_types: &[RotationType::DatabricksServicePrincipalSecret],
    shape: CredentialShape::ClientSecretWithSecretId,
    source: SecretSource::Issued,
    system: SYSTEM,
    operations: Operations {
        apply: "POST servicePrincipals/{id}/credentials/secrets",
        verify: "POST oidc token",
        revoke: "DELETE servicePrincipals/{id}/credentials/secrets/{secretId}",
        probe: "GET servicePrincipals/{id}/credentials/secrets",
    },
    options: &["account_id", "secret_lifetime_seconds", "max_secrets"],
    build,
};

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::DatabricksServicePrincipalSecret(parameters) = ctx.parameters
    else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let options = DatabricksOptions::from_table(ctx.options)?;
    let driver = DatabricksDriver::new(
        ctx.connection,
        parameters.service_principal_id.trim(),
        parameters.client_id.trim(),
        options,
    )?;
    Ok(Built::issued(driver))
}

/// The connection options of the Databricks driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabricksOptions {
    /// The account id: use the account API and token endpoint on an accounts host. The
    /// workspace proxy API of the host when absent.
    ///
    /// Since v0.1.
    pub account_id: Option<String>,
    /// The lifetime of each new secret, in seconds; at most 730 days.
    ///
    /// Since v0.1.
    pub secret_lifetime_seconds: u64,
    /// Secrets the principal may hold (1–5).
    ///
    /// Since v0.1.
    pub max_secrets: usize,
}

/// The Databricks driver of one rotation: the secrets of one service principal.
#[derive(Debug, Clone)]
pub struct DatabricksDriver {
    http: reqwest::Client,
    /// `http(s)://host[:port]/`.
    base: reqwest::Url,
    /// The service principal's numeric id (in paths).
    principal_id: String,
    /// The service principal's application id (its OAuth client id), for verify.
    client_id: String,
    admin_client_id: String,
    admin_secret: SecretString,
    /// `/api/2.0/accounts[/{account_id}]/servicePrincipals/{id}/credentials/secrets`.
    secrets_path: String,
    /// `/oidc/v1/token` or `/oidc/accounts/{account_id}/v1/token`.
    token_path: String,
    lifetime_seconds: u64,
    max_secrets: usize,
    /// The admin's token, shared by clones; renewed [`TOKEN_MARGIN`] before expiry.
    token: TokenCache,
}

// === impl DatabricksOptions ===

impl Default for DatabricksOptions {
    fn default() -> Self {
        Self {
            account_id: None,
            secret_lifetime_seconds: DEFAULT_LIFETIME_SECONDS,
            max_secrets: DEFAULT_MAX_SECRETS,
        }
    }
}

impl DatabricksOptions {
    /// Reads the options from a connection's extra keys.
    ///
    /// # Errors
    ///
    /// `InvalidInput`: a lifetime of 0 or over 730 days, `max_secrets` outside 1–5, an account
    /// id that is not an id, a value of the wrong type.
    pub fn from_table(table: &toml::Table) -> Result<Self, DriverError> {
        let mut options = Self::default();
        let integer = |key: &str| -> Result<Option<u64>, DriverError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::Integer(n)) if *n > 0 => Ok(u64::try_from(*n).ok()),
                Some(_) => Err(invalid(
                    SYSTEM,
                    Phase::Build,
                    format!("connection option {key} must be a positive integer"),
                )),
            }
        };
        match table.get("account_id") {
            None => {}
            Some(toml::Value::String(id)) => {
                let id = path_segment(id.trim(), "account_id", SYSTEM, Phase::Build)?;
                options.account_id = Some(id.to_owned());
            }
            Some(_) => {
                return Err(invalid(
                    SYSTEM,
                    Phase::Build,
                    "connection option account_id must be a string",
                ));
            }
        }
        if let Some(seconds) = integer("secret_lifetime_seconds")? {
            options.secret_lifetime_seconds = seconds;
        }
        if options.secret_lifetime_seconds > MAX_LIFETIME_SECONDS {
            // Upstream's text, typo included (spec §9).
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                "Databricks does not support OAuth secret duration over 730 days. Rotation interval must be less than or equal to 363 to accomodate this.",
            ));
        }
        if let Some(max) = integer("max_secrets")? {
            options.max_secrets = usize::try_from(max)
                .ok()
                .filter(|m| (1..=DEFAULT_MAX_SECRETS).contains(m))
                .ok_or_else(|| {
                    invalid(
                        SYSTEM,
                        Phase::Build,
                        "connection option max_secrets must be between 1 and 5",
                    )
                })?;
        }
        Ok(options)
    }
}

// === impl DatabricksDriver ===

impl DatabricksDriver {
    /// A driver for the secrets of service principal `principal_id` (application id
    /// `client_id`).
    ///
    /// # Errors
    ///
    /// `InvalidInput`: an empty or malformed id, an empty admin secret, a bad host.
    pub fn new(
        connection: &ConnectionConfig,
        principal_id: &str,
        client_id: &str,
        options: DatabricksOptions,
    ) -> Result<Self, DriverError> {
        if principal_id.is_empty() {
            return Err(invalid(SYSTEM, Phase::Build, "Service Principal ID Required"));
        }
        if client_id.is_empty() {
            return Err(invalid(SYSTEM, Phase::Build, "Client ID Required"));
        }
        path_segment(principal_id, "servicePrincipalId", SYSTEM, Phase::Build)?;
        if connection.admin_password.is_empty() {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                "the connection password (the admin service principal's OAuth secret) is empty",
            ));
        }
        let (secrets_path, token_path) = match &options.account_id {
            Some(account) => (
                format!(
                    "/api/2.0/accounts/{account}/servicePrincipals/{principal_id}/credentials/secrets"
                ),
                format!("/oidc/accounts/{account}/v1/token"),
            ),
            None => (
                format!("/api/2.0/accounts/servicePrincipals/{principal_id}/credentials/secrets"),
                "/oidc/v1/token".to_owned(),
            ),
        };
        Ok(Self {
            http: http::client(connection, SYSTEM)?,
            base: http::base_url(connection, SYSTEM)?,
            principal_id: principal_id.to_owned(),
            client_id: client_id.to_owned(),
            admin_client_id: connection.admin_username.clone(),
            admin_secret: connection.admin_password.clone(),
            secrets_path,
            token_path,
            lifetime_seconds: options.secret_lifetime_seconds,
            max_secrets: options.max_secrets,
            token: TokenCache::with_margin(TOKEN_MARGIN),
        })
    }

    /// An OAuth M2M token for `client_id`/`secret`: the access token and its lifetime.
    async fn request_token(
        &self,
        client_id: &str,
        secret: &SecretString,
        phase: Phase,
        login: Login,
        redactor: &Redactor<'_>,
    ) -> Result<(SecretString, Duration), DriverError> {
        let request = http::token_request(
            &self.http,
            http::url(&self.base, &self.token_path),
            ClientAuth::Basic,
            client_id,
            secret,
            &[("scope", "all-apis")],
        );
        let answer = http::send(request, SYSTEM, phase, redactor).await?;
        if !answer.is_success() {
            return Err(http::token_error(
                &answer,
                login,
                &["invalid_client"],
                SYSTEM,
                phase,
                redactor,
            ));
        }
        http::bearer_token(
            &answer,
            SYSTEM,
            phase,
            "Invalid response from Databricks: the token answer has no access_token",
        )
    }

    /// One call of the secrets API as the admin, with its token (cached until
    /// [`TOKEN_MARGIN`] before it expires). A 401 with a cached token drops it and tries once
    /// more with a new one (the token may have been revoked early).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> Result<Reply, DriverError> {
        let fetch = || {
            self.request_token(
                &self.admin_client_id,
                &self.admin_secret,
                phase,
                Login::Admin,
                redactor,
            )
        };
        let request = || {
            let request = self
                .http
                .request(method.clone(), http::url(&self.base, path))
                .header("Accept", "application/json");
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        };
        let (reply, _) =
            http::with_bearer(&self.token, fetch, request, SYSTEM, phase, redactor).await?;
        Ok(reply)
    }

    fn failure(
        &self,
        answer: &Reply,
        kind: Option<DriverErrorKind>,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> DriverError {
        let code = http::text(&answer.body, "error_code");
        let message = http::text(&answer.body, "message");
        let kind = kind.unwrap_or_else(|| {
            if matches!(code, "RESOURCE_LIMIT_EXCEEDED" | "QUOTA_EXCEEDED") {
                DriverErrorKind::LimitReached
            } else {
                http::status_kind(answer.status)
            }
        });
        http::reply_error(
            kind,
            answer,
            &format!(
                "service principal {}: {code} {message}",
                self.principal_id
            ),
            SYSTEM,
            phase,
            redactor,
        )
    }

    fn admin_redactor(&self) -> Redactor<'_> {
        Redactor::new([self.admin_secret.expose()])
    }
}

impl Issuer for DatabricksDriver {
    async fn issue(&self) -> Result<Credential, DriverError> {
        let held = self.list_as(Phase::Issue).await?;
        if held.len() >= self.max_secrets {
            return Err(DriverError::new(
                DriverErrorKind::LimitReached,
                SYSTEM,
                Phase::Issue,
                format!(
                    "service principal {} already has {} secrets; Databricks allows {}",
                    self.principal_id,
                    held.len(),
                    self.max_secrets
                ),
            ));
        }
        let redactor = self.admin_redactor();
        let body = serde_json::json!({ "lifetime": format!("{}s", self.lifetime_seconds) });
        let answer = self
            .call(
                reqwest::Method::POST,
                &self.secrets_path,
                Some(&body),
                Phase::Issue,
                &redactor,
            )
            .await?;
        if !answer.is_success() {
            return Err(self.failure(&answer, None, Phase::Issue, &redactor));
        }
        http::issued_credential(
            &answer.body,
            "id",
            &["secret", "client_secret"],
            SYSTEM,
            "Invalid response from Databricks: missing 'secret' or 'id'",
        )
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([credential.secret.expose(), self.admin_secret.expose()]);
        let (token, _) = self
            .request_token(
                &self.client_id,
                &credential.secret,
                Phase::Verify,
                Login::Target,
                &redactor,
            )
            .await?;
        drop(token);
        Ok(())
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        let id = path_segment(id, "secret id", SYSTEM, Phase::Revoke)?;
        let redactor = self.admin_redactor();
        let answer = self
            .call(
                reqwest::Method::DELETE,
                &format!("{}/{id}", self.secrets_path),
                None,
                Phase::Revoke,
                &redactor,
            )
            .await?;
        if answer.is_success() || answer.status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.failure(&answer, None, Phase::Revoke, &redactor))
        }
    }

    async fn list(&self) -> Result<Vec<String>, DriverError> {
        self.list_as(Phase::List).await
    }
}

impl DatabricksDriver {
    /// Every secret id of the principal, page by page.
    async fn list_as(&self, phase: Phase) -> Result<Vec<String>, DriverError> {
        let redactor = self.admin_redactor();
        let mut ids = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let path = match &page_token {
                Some(token) => {
                    let mut url = reqwest::Url::parse("http://x/").map_err(|_| {
                        invalid(SYSTEM, phase, "the page token cannot be encoded")
                    })?;
                    url.query_pairs_mut().append_pair("page_token", token);
                    format!("{}?{}", self.secrets_path, url.query().unwrap_or_default())
                }
                None => self.secrets_path.clone(),
            };
            let answer = self
                .call(reqwest::Method::GET, &path, None, phase, &redactor)
                .await?;
            if !answer.is_success() {
                return Err(self.failure(&answer, None, phase, &redactor));
            }
            let json = &answer.body;
            if let Some(secrets) = json.get("secrets").and_then(Value::as_array) {
                ids.extend(
                    secrets
                        .iter()
                        .filter_map(|s| s.get("id").and_then(Value::as_str))
                        .map(str::to_owned),
                );
            }
            page_token = json
                .get("next_page_token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if page_token.is_none() {
                return Ok(ids);
            }
        }
        Err(DriverError::new(
            DriverErrorKind::Server,
            SYSTEM,
            phase,
            format!("the list of secrets has more than {MAX_PAGES} pages"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn the_default_lifetime_is_two_intervals_and_three_days() {
        let options = DatabricksOptions::from_table(&table("")).expect("valid");
        assert_eq!(options.secret_lifetime_seconds, 63 * 86_400);
        assert_eq!(options.max_secrets, 5);
        assert_eq!(options.account_id, None);
    }

    #[test]
    fn a_lifetime_over_730_days_is_refused_before_any_call() {
        let ok = DatabricksOptions::from_table(&table("secret_lifetime_seconds = 63072000"))
            .expect("730 days is the maximum");
        assert_eq!(ok.secret_lifetime_seconds, MAX_LIFETIME_SECONDS);
        let e = DatabricksOptions::from_table(&table("secret_lifetime_seconds = 63072001"))
            .expect_err("over 730 days");
        assert_eq!(e.kind(), DriverErrorKind::InvalidInput);
        assert_eq!(e.phase(), Phase::Build);
        for bad in [
            "secret_lifetime_seconds = 0",
            "secret_lifetime_seconds = \"1d\"",
            "max_secrets = 6",
            "max_secrets = 0",
            "account_id = \"a/b\"",
        ] {
            assert!(DatabricksOptions::from_table(&table(bad)).is_err(), "{bad}");
        }
    }
}
