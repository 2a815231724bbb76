//! The client span and duration metric of one upstream HTTP request (Infisical, and later the
//! SaaS targets of local drivers).
//!
//! ```text
//! let call = ClientCall::start(&method, &url, query, Some(&ctx.request_id));
//! let request = request.headers(call.trace_headers());      // traceparent of the client span
//! let outcome = send(request).instrument(call.span().clone()).await;
//! call.answered(status, infisical_req_id, error_message);   // or call.failed(..)
//! ```

use tokio::time::Instant;
use tracing::Span;
use tracing::field::Empty;

use super::{metrics, propagation, redact, spans};

/// One upstream HTTP request in flight.
#[derive(Debug)]
pub struct ClientCall {
    span: Span,
    method: String,
    server_address: String,
    started: Instant,
}

/// How a request that produced no usable answer failed, as a bounded `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection could be made.
    Connect,
    /// No answer in time.
    Timeout,
    /// The connection broke mid-request.
    Transport,
    /// The answer could not be read.
    Decode,
}

// === impl FailureKind ===

impl FailureKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Transport => "transport",
            Self::Decode => "decode",
        }
    }
}

// === impl ClientCall ===

impl ClientCall {
    /// Starts the client span for `method url?query`, as a child of the current span.
    /// `url.full` is recorded without user info and with secret-looking query values redacted.
    /// Without a `request_id`, the span inherits its call's from the current context.
    pub fn start(
        method: &http::Method,
        url: &reqwest::Url,
        query: &[(&str, &str)],
        request_id: Option<&str>,
    ) -> Self {
        let server_address = url.host_str().unwrap_or_default().to_owned();
        let span = tracing::info_span!(
            target: "rotator::upstream",
            "http request",
            otel.name = %method,
            otel.kind = "client",
            http.request.method = %method,
            url.full = %redact::url_full(url, query),
            server.address = %server_address,
            server.port = url.port_or_known_default().map(i64::from),
            http.response.status_code = Empty,
            infisical.req_id = Empty,
            rotator.request_id = request_id,
            error.type = Empty,
        );
        Self {
            span,
            method: method.as_str().to_owned(),
            server_address,
            started: Instant::now(),
        }
    }

    /// The client span; the request's future runs inside it.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The W3C headers to send, naming this client span as the upstream's parent.
    pub fn trace_headers(&self) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        propagation::inject_http(&self.span, &mut headers);
        headers
    }

    /// Records an answer: its status and, for an error body, Infisical's `reqId` and message.
    /// Per the HTTP conventions for clients, a status of 400 or more marks the span as failed
    /// (`error.type` = the status code, `exception.message` = the redacted `message`).
    pub fn answered(self, status: u16, req_id: Option<&str>, message: Option<&str>) {
        self.span
            .record("http.response.status_code", i64::from(status));
        if let Some(req_id) = req_id {
            self.span.record("infisical.req_id", req_id);
        }
        let error_type = (status >= 400).then(|| {
            let kind = status_text(status);
            let fallback = format!("HTTP {status}");
            spans::record_error(&self.span, kind, message.unwrap_or(&fallback));
            kind
        });
        self.record_duration(Some(status), error_type);
    }

    /// Records a request that produced no usable answer (`status` is set when an answer came
    /// but its body could not be read).
    pub fn failed(self, status: Option<u16>, kind: FailureKind, message: &str) {
        if let Some(status) = status {
            self.span
                .record("http.response.status_code", i64::from(status));
        }
        spans::record_error(&self.span, kind.as_str(), message);
        self.record_duration(status, Some(kind.as_str()));
    }

    fn record_duration(&self, status: Option<u16>, error_type: Option<&'static str>) {
        metrics::upstream_request_finished(
            &self.method,
            &self.server_address,
            status,
            error_type,
            self.started.elapsed(),
        );
    }
}

/// `error.type` for an HTTP status: the status code itself, as the conventions recommend.
fn status_text(status: u16) -> &'static str {
    match status {
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        405..=499 => "4xx",
        _ => "5xx",
    }
}
