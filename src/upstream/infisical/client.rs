//! The REST client for Infisical's secret-rotation v2 routes.
//!
//! Retry rules follow the upstream's non-idempotency (`spec/infisical-api.md` §8): reads retry
//! transient failures; rotate-secrets is sent again only after a 429's wait, after a connection
//! error that happened before any byte was sent, or once after the token was rejected (the
//! upstream checks the token before the route runs, so nothing rotated).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::auth::TokenManager;
use super::error::{HttpFailure, UpstreamError};
use crate::context::CallContext;
use crate::telemetry::upstream::{ClientCall, FailureKind};

/// How many times one logical call may be sent at most.
const MAX_SENDS: u32 = 3;

/// Whether a call may be repeated after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// A read: retry transient failures with backoff.
    Idempotent,
    /// rotate-secrets: never repeat unless the failure proves nothing happened.
    NotIdempotent,
}

/// A call to Infisical and its answer.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base_url: reqwest::Url,
    request_timeout: Duration,
}

// === impl RestClient ===

impl RestClient {
    /// Creates the client.
    pub fn new(http: reqwest::Client, base_url: reqwest::Url, request_timeout: Duration) -> Self {
        Self {
            http,
            base_url,
            request_timeout,
        }
    }

    /// Sends one logical call with the retry rules of its idempotency; returns the JSON body.
    ///
    /// # Errors
    ///
    /// The last failure, classified.
    pub async fn call(
        &self,
        tokens: &TokenManager,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        ctx: &CallContext,
        idempotency: Idempotency,
    ) -> Result<Value, UpstreamError> {
        self.call_with_body(tokens, method, path, query, None, ctx, idempotency)
            .await
    }

    /// [`RestClient::call`] with a JSON request body. The body may hold secret values: it is
    /// never logged or traced.
    ///
    /// # Errors
    ///
    /// The last failure, classified.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_with_body(
        &self,
        tokens: &TokenManager,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        ctx: &CallContext,
        idempotency: Idempotency,
    ) -> Result<Value, UpstreamError> {
        let mut token_retried = false;
        let mut sends = 0;
        loop {
            sends += 1;
            let lease = tokens.token().await?;
            let error = match self
                .send_once(&method, path, query, body, ctx, lease.token.expose())
                .await
            {
                Ok(body) => return Ok(body),
                Err(error) => error,
            };
            let delay = match &error {
                UpstreamError::Http(f)
                    if f.is_token_rejection() && !token_retried && tokens.can_relogin() =>
                {
                    tokens.invalidate(lease.generation).await;
                    token_retried = true;
                    sends -= 1;
                    Duration::ZERO
                }
                UpstreamError::Http(f) if f.status == 429 => {
                    f.retry_after.unwrap_or(Duration::from_secs(60))
                }
                UpstreamError::Connect(_) => backoff(sends),
                e if idempotency == Idempotency::Idempotent && e.is_transient() => backoff(sends),
                _ => return Err(error),
            };
            let fits = ctx.remaining().is_none_or(|left| left > delay);
            if sends >= MAX_SENDS || !fits {
                return Err(error);
            }
            tracing::debug!(%error, delay_ms = delay.as_millis() as u64, "retrying Infisical call");
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        ctx: &CallContext,
        token: &str,
    ) -> Result<Value, UpstreamError> {
        let timeout = match ctx.remaining() {
            Some(left) if left.is_zero() => return Err(UpstreamError::Timeout { sent: false }),
            Some(left) => left.min(self.request_timeout),
            None => self.request_timeout,
        };
        let url = self
            .base_url
            .join(path)
            .map_err(|e| UpstreamError::Decode(e.to_string()))?;
        let mut auth = http::HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
            UpstreamError::Decode("the access token is not a valid header value".into())
        })?;
        auth.set_sensitive(true);
        let call = ClientCall::start(method, &url, query, Some(&ctx.request_id));
        let mut request = self.http.request(method.clone(), url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let request = request
            .query(query)
            .timeout(timeout)
            .headers(call.trace_headers())
            .header(http::header::AUTHORIZATION, auth)
            .header(http::header::ACCEPT, "application/json")
            .header("request-id", &ctx.request_id)
            .header("x-request-id", &ctx.request_id);
        let (status, result) = exchange(request).instrument(call.span().clone()).await;
        finish_call(call, status, &result);
        result
    }
}

/// Sends the request and reads the answer; returns the status when one came back.
async fn exchange(request: reqwest::RequestBuilder) -> (Option<u16>, Result<Value, UpstreamError>) {
    let started = Instant::now();
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return (None, Err(transport_error(&e))),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => return (Some(status.as_u16()), Err(transport_error(&e))),
    };
    tracing::debug!(%status, elapsed_ms = started.elapsed().as_millis() as u64, "Infisical answered");
    let result = if status == StatusCode::OK {
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Decode(e.to_string()))
    } else {
        Err(UpstreamError::Http(HttpFailure::from_body(
            status.as_u16(),
            &bytes,
            retry_after.as_deref(),
        )))
    };
    (Some(status.as_u16()), result)
}

/// Closes the request's client span and records its duration.
pub(super) fn finish_call<T>(
    call: ClientCall,
    status: Option<u16>,
    result: &Result<T, UpstreamError>,
) {
    match (status, result.as_ref().err()) {
        (Some(status), Some(UpstreamError::Http(f))) => {
            call.answered(status, f.req_id.as_deref(), Some(&f.message));
        }
        (Some(status), None) => call.answered(status, None, None),
        (status, Some(error)) => {
            let kind = match error {
                UpstreamError::Connect(_) => FailureKind::Connect,
                UpstreamError::Timeout { .. } => FailureKind::Timeout,
                UpstreamError::Decode(_) => FailureKind::Decode,
                _ => FailureKind::Transport,
            };
            call.failed(status, kind, &error.to_string());
        }
        (None, None) => call.failed(None, FailureKind::Transport, "no answer"),
    }
}

/// Classifies a reqwest error by whether the request can have been sent.
pub(super) fn transport_error(e: &reqwest::Error) -> UpstreamError {
    if e.is_connect() {
        UpstreamError::Connect(without_url(e))
    } else if e.is_timeout() {
        UpstreamError::Timeout { sent: true }
    } else {
        UpstreamError::Transport(without_url(e))
    }
}

/// reqwest errors print the URL; ours carry no credentials, but the query may carry ids only.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// 200 ms, 400 ms, … with ±50 % jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 200u64 << attempt.min(6);
    let jitter = rand::random_range(base / 2..=base + base / 2);
    Duration::from_millis(jitter)
}
