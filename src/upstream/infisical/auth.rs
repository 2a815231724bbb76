//! Machine-identity tokens for Infisical: Universal Auth login, renewal before expiry, and
//! re-login when a token is rejected. Refreshes are single-flight: concurrent callers wait for one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::error::{HttpFailure, UpstreamError};
use crate::config::InfisicalAuth;
use crate::rotation::Classify as _;
use crate::secret::SecretString;
use crate::telemetry::health;
use crate::telemetry::upstream::ClientCall;

/// After a failed login, how long to wait before the next one (Infisical locks an identity after
/// three bad logins in 30 s).
const LOGIN_BACKOFF: Duration = Duration::from_secs(30);

/// A token handed to one request, with the generation that issued it.
#[derive(Debug, Clone)]
pub struct TokenLease {
    /// The bearer token.
    pub token: SecretString,
    /// Changes on every login or renewal; `invalidate` only drops the token it was given.
    pub generation: u64,
}

/// Obtains and caches the access token.
#[derive(Debug)]
pub struct TokenManager {
    http: reqwest::Client,
    base_url: reqwest::Url,
    auth: InfisicalAuth,
    organization_slug: Option<String>,
    state: Mutex<TokenState>,
    logins: AtomicU64,
    renewals: AtomicU64,
    /// Whether this is the service's identity, whose state `/healthz` shows (a sink's own
    /// identity is not).
    reports_health: bool,
}

#[derive(Debug, Default)]
struct TokenState {
    current: Option<CachedToken>,
    generation: u64,
    /// When the current chain of renewals began (the max TTL counts from there).
    session_started: Option<Instant>,
    /// No login before this instant.
    backoff_until: Option<Instant>,
}

#[derive(Debug)]
struct CachedToken {
    value: SecretString,
    obtained: Instant,
    /// `None`: never expires.
    ttl: Option<Duration>,
    /// `None`: no maximum.
    max_ttl: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
    #[serde(default)]
    access_token_max_ttl: u64,
}

// === impl CachedToken ===

impl CachedToken {
    /// Renew at 2/3 of the TTL, and never later than 5 s before expiry.
    fn needs_refresh(&self, now: Instant) -> bool {
        let Some(ttl) = self.ttl else { return false };
        let age = now.saturating_duration_since(self.obtained);
        age >= ttl * 2 / 3 || age + Duration::from_secs(5) >= ttl
    }

    /// Renewing helps only while the token lives and the max-TTL budget covers another TTL.
    fn can_renew(&self, now: Instant, session_started: Instant) -> bool {
        let Some(ttl) = self.ttl else { return false };
        if now.saturating_duration_since(self.obtained) >= ttl {
            return false;
        }
        match self.max_ttl {
            None => true,
            Some(max) => now.saturating_duration_since(session_started) + ttl <= max,
        }
    }
}

// === impl TokenManager ===

impl TokenManager {
    /// Creates a manager; no call is made until the first token is needed.
    pub fn new(
        http: reqwest::Client,
        base_url: reqwest::Url,
        auth: InfisicalAuth,
        organization_slug: Option<String>,
    ) -> Self {
        let state = match auth {
            InfisicalAuth::StaticToken(_) => "static",
            InfisicalAuth::UniversalAuth { .. } => "not_obtained",
        };
        health::report(health::INFISICAL_TOKEN, state, None);
        Self {
            http,
            base_url,
            auth,
            organization_slug,
            state: Mutex::new(TokenState::default()),
            logins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            reports_health: true,
        }
    }

    /// A manager for another identity of the same Infisical (same HTTP client, URL and
    /// organization), with its own token cache.
    pub fn for_identity(&self, auth: InfisicalAuth) -> Self {
        Self {
            http: self.http.clone(),
            base_url: self.base_url.clone(),
            auth,
            organization_slug: self.organization_slug.clone(),
            state: Mutex::new(TokenState::default()),
            logins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            reports_health: false,
        }
    }

    fn report_health(&self, state: &'static str, reason: Option<String>) {
        if self.reports_health {
            health::report(health::INFISICAL_TOKEN, state, reason);
        }
    }

    /// Whether a rejected token can be replaced (a static token cannot).
    pub fn can_relogin(&self) -> bool {
        matches!(self.auth, InfisicalAuth::UniversalAuth { .. })
    }

    /// How many logins and renewals were made.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.logins.load(Ordering::Relaxed),
            self.renewals.load(Ordering::Relaxed),
        )
    }

    /// Returns a valid token, renewing or logging in first when needed.
    ///
    /// # Errors
    ///
    /// The login's failure, or [`UpstreamError::LoginBackoff`] while waiting after one.
    pub async fn token(&self) -> Result<TokenLease, UpstreamError> {
        let (client_id, client_secret) = match &self.auth {
            InfisicalAuth::StaticToken(token) => {
                return Ok(TokenLease {
                    token: token.clone(),
                    generation: 0,
                });
            }
            InfisicalAuth::UniversalAuth {
                client_id,
                client_secret,
            } => (client_id, client_secret),
        };
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(current) = &state.current
            && !current.needs_refresh(now)
        {
            return Ok(TokenLease {
                token: current.value.clone(),
                generation: state.generation,
            });
        }
        if let Some(current) = state.current.take() {
            let started = state.session_started.unwrap_or(current.obtained);
            if current.can_renew(now, started) {
                self.report_health("renewing", None);
                match self.renew(&current.value).await {
                    Ok(renewed) => {
                        self.renewals.fetch_add(1, Ordering::Relaxed);
                        self.report_health("valid", None);
                        return Ok(install(&mut state, renewed, false));
                    }
                    Err(error) => {
                        self.report_health("renewing", Some(health_reason(&error)));
                        tracing::warn!(%error, "renewing the Infisical token failed; logging in again")
                    }
                }
            }
        }
        if let Some(until) = state.backoff_until
            && now < until
        {
            return Err(UpstreamError::LoginBackoff {
                retry_in: until - now,
            });
        }
        match self.login(client_id, client_secret).await {
            Ok(token) => {
                self.logins.fetch_add(1, Ordering::Relaxed);
                state.backoff_until = None;
                self.report_health("valid", None);
                Ok(install(&mut state, token, true))
            }
            Err(error) => {
                self.report_health("login_failing", Some(health_reason(&error)));
                if !error.is_transient() {
                    state.backoff_until = Some(now + LOGIN_BACKOFF);
                }
                Err(error)
            }
        }
    }

    /// Drops the token of `generation` after the upstream rejected it; a newer one is kept.
    pub async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.generation == generation {
            state.current = None;
            self.report_health("rejected", Some("UPSTREAM_UNAUTHENTICATED".into()));
        }
    }

    async fn login(
        &self,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<CachedToken, UpstreamError> {
        let mut body = json!({ "clientId": client_id, "clientSecret": client_secret.expose() });
        if let Some(slug) = &self.organization_slug {
            body["organizationSlug"] = json!(slug);
        }
        self.token_call("api/v1/auth/universal-auth/login", body)
            .await
    }

    async fn renew(&self, token: &SecretString) -> Result<CachedToken, UpstreamError> {
        self.token_call(
            "api/v1/auth/token/renew",
            json!({ "accessToken": token.expose() }),
        )
        .await
    }

    async fn token_call(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<CachedToken, UpstreamError> {
        let url = self
            .base_url
            .join(path)
            .map_err(|e| UpstreamError::Decode(e.to_string()))?;
        let call = ClientCall::start(&http::Method::POST, &url, &[], None);
        let request = self
            .http
            .post(url)
            .timeout(Duration::from_secs(30))
            .headers(call.trace_headers())
            .json(&body);
        let (status, answer) = token_exchange(request)
            .instrument(call.span().clone())
            .await;
        super::client::finish_call(call, status, &answer);
        let answer = answer?;
        let seconds = |n: u64| (n > 0).then(|| Duration::from_secs(n));
        let ttl = seconds(answer.expires_in);
        if ttl.is_some_and(|t| t < Duration::from_secs(60)) {
            tracing::warn!(
                ttl_seconds = answer.expires_in,
                "the Infisical token TTL is under 60 s; renewals may hit rate limits"
            );
        }
        Ok(CachedToken {
            value: SecretString::new(answer.access_token),
            obtained: Instant::now(),
            ttl,
            max_ttl: seconds(answer.access_token_max_ttl),
        })
    }
}

/// The `/healthz` reason of a failed login or renewal: the stable `ErrorInfo.reason` and the
/// HTTP status, never the answer's text.
fn health_reason(error: &UpstreamError) -> String {
    let reason = error.classify().reason;
    match error {
        UpstreamError::Http(failure) => format!("{reason} (HTTP {})", failure.status),
        _ => reason.to_owned(),
    }
}

/// Sends a login or renewal and reads the token answer; returns the status when one came back.
/// The answer holds the token, so nothing of it is logged or traced.
async fn token_exchange(
    request: reqwest::RequestBuilder,
) -> (Option<u16>, Result<TokenAnswer, UpstreamError>) {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return (None, Err(super::client::transport_error(&e))),
    };
    let status = response.status().as_u16();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => return (Some(status), Err(super::client::transport_error(&e))),
    };
    let answer = if status == 200 {
        serde_json::from_slice(&bytes)
            .map_err(|e| UpstreamError::Decode(format!("token answer: {e}")))
    } else {
        Err(UpstreamError::Http(HttpFailure::from_body(
            status, &bytes, None,
        )))
    };
    (Some(status), answer)
}

fn install(state: &mut TokenState, token: CachedToken, new_session: bool) -> TokenLease {
    state.generation += 1;
    if new_session || state.session_started.is_none() {
        state.session_started = Some(token.obtained);
    }
    let lease = TokenLease {
        token: token.value.clone(),
        generation: state.generation,
    };
    state.current = Some(token);
    lease
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(ttl: u64, max: Option<u64>, obtained: Instant) -> CachedToken {
        CachedToken {
            value: SecretString::new("t"),
            obtained,
            ttl: (ttl > 0).then(|| Duration::from_secs(ttl)),
            max_ttl: max.map(Duration::from_secs),
        }
    }

    #[test]
    fn refresh_at_two_thirds_of_the_ttl_and_never_for_a_token_without_expiry() {
        let start = Instant::now();
        let t = token(300, None, start);
        assert!(!t.needs_refresh(start + Duration::from_secs(199)));
        assert!(t.needs_refresh(start + Duration::from_secs(200)));
        assert!(!token(0, None, start).needs_refresh(start + Duration::from_secs(1_000_000)));
        // A short TTL still refreshes 5 s before expiry.
        assert!(token(6, None, start).needs_refresh(start + Duration::from_secs(1)));
    }

    #[test]
    fn renewal_stops_when_the_max_ttl_budget_is_spent() {
        let start = Instant::now();
        let t = token(300, Some(900), start + Duration::from_secs(500));
        assert!(t.can_renew(start + Duration::from_secs(600), start));
        assert!(!t.can_renew(start + Duration::from_secs(601), start));
        assert!(!token(300, None, start).can_renew(start + Duration::from_secs(300), start));
    }
}
