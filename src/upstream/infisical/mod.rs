//! The Infisical upstream: token manager, REST client, JSON model and reconciliation of
//! ambiguous rotate outcomes.

pub mod auth;
pub mod client;
pub mod error;
pub mod secrets;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prost_types::Timestamp;

use chrono::Utc;
use reqwest::Method;
use serde_json::Value;

use self::auth::TokenManager;
use self::client::{Idempotency, RestClient};
pub use self::error::{HttpFailure, UpstreamError};
use crate::config::InfisicalConfig;
use crate::context::CallContext;
use crate::proto::{
    GetGeneratedCredentialsResponse, RotationName, RotationStatus, RotationType, SecretRotation,
};
use crate::rotation::json;

/// How many rotations' last-seen `lastRotatedAt` are remembered as reconciliation baselines.
const MAX_BASELINES: usize = 100_000;
/// How long reading a rotation back after an ambiguous rotate may take.
const RECONCILE_BUDGET: Duration = Duration::from_secs(10);

/// What reading a rotation back says about a rotate call whose answer was lost.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It rotated: the rotation as it stands now.
    Rotated(Box<SecretRotation>),
    /// It failed upstream, with Infisical's message.
    Failed(HttpFailure),
    /// Still unknown (no later attempt shown yet, or the read failed).
    Unknown,
}

/// The Infisical backend.
#[derive(Debug)]
pub struct Infisical {
    rest: RestClient,
    tokens: TokenManager,
    /// The last `lastRotatedAt` seen per rotation id: the baseline that tells, after an ambiguous
    /// rotate, whether the rotation happened. Without one, the send time is the baseline.
    last_rotated: Mutex<HashMap<String, Timestamp>>,
}

/// Errors building the upstream client.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The HTTP client could not be built (e.g. a bad CA certificate).
    #[error("cannot build the Infisical HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// `infisical.ca_file` cannot be used to verify the server.
    #[error(transparent)]
    Tls(#[from] crate::net::pinned::PinnedError),
    /// `infisical.url` names an address `network.deny_private_addresses` refuses.
    #[error("infisical.url: {0}")]
    Address(#[from] crate::net::GuardError),
}

// === impl Infisical ===

impl Infisical {
    /// Builds the client from its configuration. No call is made.
    ///
    /// # Errors
    ///
    /// A CA file that is not PEM, or a TLS setup failure.
    pub fn new(config: &InfisicalConfig) -> Result<Self, BuildError> {
        Self::with_address_policy(config, crate::net::AddressPolicy::Any)
    }

    /// Builds the client; every address it connects to must pass `policy` (checked on the
    /// resolved addresses, so DNS rebinding cannot slip past it).
    ///
    /// # Errors
    ///
    /// As [`Infisical::new`], and [`BuildError::Address`] for a refused IP-literal URL.
    pub fn with_address_policy(
        config: &InfisicalConfig,
        policy: crate::net::AddressPolicy,
    ) -> Result<Self, BuildError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("rotator/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(pem) = &config.ca_pem {
            let tls = crate::net::pinned::PinnedVerifier::new("infisical.ca_file", pem)?
                .client_config()?;
            builder = builder.use_preconfigured_tls(tls);
        }
        if policy != crate::net::AddressPolicy::Any {
            policy.check_literal(config.base_url.host_str().unwrap_or_default())?;
            builder = builder.dns_resolver(crate::net::guarded_resolver(policy));
        }
        let http = builder.build()?;
        Ok(Self {
            rest: RestClient::new(
                http.clone(),
                config.base_url.clone(),
                config.request_timeout,
            ),
            tokens: TokenManager::new(
                http,
                config.base_url.clone(),
                config.auth.clone(),
                config.organization_slug.clone(),
            ),
            last_rotated: Mutex::new(HashMap::new()),
        })
    }

    /// How many logins and token renewals were made.
    pub fn token_counts(&self) -> (u64, u64) {
        self.tokens.counts()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        ctx: &CallContext,
        idempotency: Idempotency,
    ) -> Result<Value, UpstreamError> {
        self.rest
            .call(&self.tokens, method, path, query, ctx, idempotency)
            .await
    }

    /// `POST /{type}/{id}/rotate-secrets`, reconciling an ambiguous outcome by reading the
    /// rotation back.
    ///
    /// # Errors
    ///
    /// The upstream failure; [`UpstreamError::OutcomeUnknown`] when reading back could not tell.
    pub async fn rotate(
        &self,
        rotation_type: RotationType,
        id: &str,
        ctx: &CallContext,
    ) -> Result<SecretRotation, UpstreamError> {
        let path = rotation_path(rotation_type, id, "/rotate-secrets");
        let baseline = self.baseline(id);
        match self
            .call(Method::POST, &path, &[], ctx, Idempotency::NotIdempotent)
            .await
        {
            Ok(body) => secret_rotation(body).inspect(|r| self.remember(r)),
            Err(error) if error.is_ambiguous_for_rotate() => {
                tracing::warn!(%error, "rotate-secrets outcome is ambiguous; reading the rotation back");
                self.reconcile(rotation_type, id, ctx, baseline, error)
                    .await
            }
            Err(error) => Err(error),
        }
    }

    /// What `lastRotatedAt` was before this call: the last value seen, else now.
    fn baseline(&self, id: &str) -> Timestamp {
        let seen = self
            .last_rotated
            .lock()
            .ok()
            .and_then(|m| m.get(id).cloned());
        seen.unwrap_or_else(|| {
            let now = Utc::now();
            Timestamp {
                seconds: now.timestamp(),
                nanos: now.timestamp_subsec_nanos() as i32,
            }
        })
    }

    fn remember(&self, rotation: &SecretRotation) {
        let (Some(at), Ok(mut seen)) = (rotation.last_rotated_at, self.last_rotated.lock()) else {
            return;
        };
        if seen.len() >= MAX_BASELINES {
            seen.clear();
        }
        seen.insert(rotation.id.clone(), at);
    }

    async fn reconcile(
        &self,
        rotation_type: RotationType,
        id: &str,
        ctx: &CallContext,
        baseline: Timestamp,
        cause: UpstreamError,
    ) -> Result<SecretRotation, UpstreamError> {
        match self
            .read_outcome(rotation_type, id, &ctx.request_id, baseline)
            .await
        {
            Outcome::Rotated(rotation) => {
                tracing::info!("the ambiguous rotation did happen");
                Ok(*rotation)
            }
            Outcome::Failed(failure) => Err(failure.with_req_id(cause.req_id())),
            Outcome::Unknown => Err(UpstreamError::OutcomeUnknown {
                cause: Box::new(cause),
                baseline,
            }),
        }
    }

    /// Reads rotation `id` back to learn what a rotate call whose answer was lost did:
    /// `lastRotatedAt` after `baseline` means it rotated; a failed status attempted after
    /// `baseline` means it failed; anything else (including a failed read) is still unknown.
    pub async fn read_outcome(
        &self,
        rotation_type: RotationType,
        id: &str,
        request_id: &str,
        baseline: Timestamp,
    ) -> Outcome {
        let read_ctx = CallContext {
            request_id: request_id.to_owned(),
            deadline: Some(tokio::time::Instant::now() + RECONCILE_BUDGET),
            idempotency_key: None,
        };
        let Ok(current) = self.get(rotation_type, id, &read_ctx).await else {
            return Outcome::Unknown;
        };
        let after = |t: &Option<Timestamp>| {
            t.as_ref()
                .is_some_and(|t| (t.seconds, t.nanos) > (baseline.seconds, baseline.nanos))
        };
        if after(&current.last_rotated_at) {
            self.remember(&current);
            return Outcome::Rotated(Box::new(current));
        }
        if after(&current.last_rotation_attempted_at)
            && current.rotation_status() == RotationStatus::Failed
        {
            return Outcome::Failed(HttpFailure {
                status: 500,
                error_name: Some("InternalServerError".into()),
                message: current
                    .last_rotation_message
                    .unwrap_or_else(|| "the rotation failed".into()),
                req_id: None,
                retry_after: None,
            });
        }
        Outcome::Unknown
    }

    /// `GET /{type}/{id}`.
    ///
    /// # Errors
    ///
    /// The upstream failure.
    pub async fn get(
        &self,
        rotation_type: RotationType,
        id: &str,
        ctx: &CallContext,
    ) -> Result<SecretRotation, UpstreamError> {
        let body = self
            .call(
                Method::GET,
                &rotation_path(rotation_type, id, ""),
                &[],
                ctx,
                Idempotency::Idempotent,
            )
            .await?;
        secret_rotation(body).inspect(|r| self.remember(r))
    }

    /// `GET /{type}/rotation-name/{name}`.
    ///
    /// # Errors
    ///
    /// The upstream failure.
    pub async fn get_by_name(
        &self,
        rotation_type: RotationType,
        name: &RotationName,
        ctx: &CallContext,
    ) -> Result<SecretRotation, UpstreamError> {
        let path = format!(
            "api/v2/secret-rotations/{}/rotation-name/{}",
            slug(rotation_type),
            urlencode(&name.name)
        );
        let query = [
            ("projectId", name.project_id.as_str()),
            ("environment", name.environment.as_str()),
            ("secretPath", name.secret_path.as_str()),
        ];
        let body = self
            .call(Method::GET, &path, &query, ctx, Idempotency::Idempotent)
            .await?;
        secret_rotation(body)
    }

    /// `GET /{type}?projectId=` or, for `Unspecified`, every type.
    ///
    /// # Errors
    ///
    /// The upstream failure.
    pub async fn list(
        &self,
        rotation_type: RotationType,
        project_id: &str,
        ctx: &CallContext,
    ) -> Result<Vec<SecretRotation>, UpstreamError> {
        let path = match rotation_type.slug() {
            Some(slug) => format!("api/v2/secret-rotations/{slug}"),
            None => "api/v2/secret-rotations".to_owned(),
        };
        let body = self
            .call(
                Method::GET,
                &path,
                &[("projectId", project_id)],
                ctx,
                Idempotency::Idempotent,
            )
            .await?;
        let Some(Value::Array(items)) = body.get("secretRotations").cloned() else {
            return Err(UpstreamError::Decode("no secretRotations array".into()));
        };
        // A type rotator does not know is skipped rather than failing the whole list.
        Ok(items
            .into_iter()
            .filter_map(|item| match json::rotation_from_json(item) {
                Ok(r) => Some(r),
                Err(error) => {
                    tracing::warn!(%error, "skipping a listed rotation rotator cannot read");
                    None
                }
            })
            .collect())
    }

    /// `GET /{type}/{id}/generated-credentials`.
    ///
    /// # Errors
    ///
    /// The upstream failure.
    pub async fn generated_credentials(
        &self,
        rotation_type: RotationType,
        id: &str,
        ctx: &CallContext,
    ) -> Result<GetGeneratedCredentialsResponse, UpstreamError> {
        let path = rotation_path(rotation_type, id, "/generated-credentials");
        let body = self
            .call(Method::GET, &path, &[], ctx, Idempotency::Idempotent)
            .await?;
        json::generated_credentials_from_json(body)
            .map_err(|e| UpstreamError::Decode(e.to_string()))
    }
}

fn slug(rotation_type: RotationType) -> &'static str {
    rotation_type.slug().unwrap_or("unspecified")
}

fn rotation_path(rotation_type: RotationType, id: &str, suffix: &str) -> String {
    format!(
        "api/v2/secret-rotations/{}/{}{suffix}",
        slug(rotation_type),
        urlencode(id)
    )
}

/// Percent-encodes a path segment (ids are validated UUIDs; names are slugs, but be safe).
fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn secret_rotation(mut body: Value) -> Result<SecretRotation, UpstreamError> {
    let inner = body
        .get_mut("secretRotation")
        .map(Value::take)
        .ok_or_else(|| UpstreamError::Decode("no secretRotation object".into()))?;
    json::rotation_from_json(inner).map_err(|e| UpstreamError::Decode(e.to_string()))
}
