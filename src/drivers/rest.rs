//! HTTP plumbing shared by the drivers of vendor REST APIs (Okta, Databricks): the base URL of a
//! connection, the client, sending one request, and classifying an HTTP answer that is not a
//! success. Each driver reads its vendor's error body itself and picks the detail; this file
//! only decides what a status means.
//!
//! `tls = "disable"` is the explicit opt-in to plain `http://` (a fake on loopback in tests);
//! every other mode speaks `https://`, `require` without certificate checks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode, Url};

use super::redact::Redactor;
use super::{
    CONNECT_TIMEOUT, ConnectionConfig, DbSystem, DriverError, DriverErrorKind, OPERATION_TIMEOUT,
    Phase, TlsMode, invalid,
};

/// The largest answer body read from a vendor, in bytes.
const MAX_BODY: usize = 1 << 20;

/// A vendor API reached over HTTP(S): its base URL and the client that talks to it.
#[derive(Debug, Clone)]
pub(crate) struct Rest {
    /// The client: connect and request timeouts, the connection's CA, no redirects.
    pub(crate) http: reqwest::Client,
    /// `http(s)://host[:port]/`.
    pub(crate) base: Url,
    /// The system, for errors.
    pub(crate) system: DbSystem,
}

/// A vendor's answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The headers (rate-limit hints).
    pub(crate) headers: HeaderMap,
    /// The body, at most [`MAX_BODY`] bytes.
    pub(crate) body: Vec<u8>,
}

// === impl Rest ===

impl Rest {
    /// The base URL and client of `connection`. Sends nothing.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a host that is not a bare host name (a scheme, path, user or query in
    /// it), a CA that is not PEM, or a client that cannot be built.
    pub(crate) fn new(
        connection: &ConnectionConfig,
        system: DbSystem,
    ) -> Result<Self, DriverError> {
        let host = connection.host.trim();
        if host.is_empty()
            || host
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#' | '\\'))
        {
            return Err(invalid(
                system,
                Phase::Build,
                "the connection host must be a bare host name (no scheme, path or user)",
            ));
        }
        let scheme = match connection.tls.mode {
            TlsMode::Disable => "http",
            TlsMode::Require | TlsMode::VerifyFull => "https",
        };
        let base = Url::parse(&format!("{scheme}://{host}:{}/", connection.port))
            .ok()
            .filter(|u| u.path() == "/" && u.host_str().is_some())
            .ok_or_else(|| {
                invalid(
                    system,
                    Phase::Build,
                    "the connection host is not a valid host name",
                )
            })?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("rotator/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(OPERATION_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        match connection.tls.mode {
            TlsMode::Disable => {}
            TlsMode::Require => builder = builder.danger_accept_invalid_certs(true),
            TlsMode::VerifyFull => {
                if let Some(pem) = connection.ca_pem() {
                    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                        .map_err(|_| invalid(system, Phase::Build, "the CA file is not PEM"))?;
                    for cert in certs {
                        builder = builder.add_root_certificate(cert);
                    }
                }
            }
        }
        let http = builder.build().map_err(|e| {
            invalid(
                system,
                Phase::Build,
                format!("the HTTP client cannot be built: {e}"),
            )
        })?;
        Ok(Self { http, base, system })
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// Sends `request` and reads the answer, whatever its status.
    ///
    /// # Errors
    ///
    /// `Timeout` when no answer came in time, `Unreachable` when none could come (refused,
    /// reset, DNS), `Tls` for a refused certificate.
    pub(crate) async fn send(
        &self,
        request: RequestBuilder,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> Result<Answer, DriverError> {
        let mut response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&e, phase, redactor))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_BODY.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error(&e, phase, redactor)),
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn transport_error(
        &self,
        e: &reqwest::Error,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> DriverError {
        let kind = if e.is_timeout() {
            DriverErrorKind::Timeout
        } else if is_tls(e) {
            DriverErrorKind::Tls
        } else {
            DriverErrorKind::Unreachable
        };
        DriverError::new(kind, self.system, phase, redactor.scrub(&error_chain(e)))
    }

    /// An error for a non-success `answer`, of the kind its status means (see [`status_kind`])
    /// unless the driver knows better, with the vendor's scrubbed `detail`.
    pub(crate) fn failure(
        &self,
        answer: &Answer,
        kind: Option<DriverErrorKind>,
        phase: Phase,
        detail: &str,
        redactor: &Redactor<'_>,
    ) -> DriverError {
        let kind = kind.unwrap_or_else(|| status_kind(answer.status));
        let mut text = format!("HTTP {}: {detail}", answer.status.as_u16());
        if answer.status == StatusCode::TOO_MANY_REQUESTS
            && let Some(wait) = retry_after(&answer.headers)
        {
            text.push_str(&format!(
                " (rate limited; retry after {} s)",
                wait.as_secs()
            ));
        }
        DriverError::new(kind, self.system, phase, redactor.scrub(&text))
    }
}

// === impl Answer ===

impl Answer {
    /// Whether the status is 2xx.
    pub(crate) fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body as JSON, `Null` when it is not JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What an HTTP status means for a call made with the admin's credential: 401 the admin
/// credential is refused, 403 it lacks a permission, 404 the principal (or app) does not exist,
/// 408/429/5xx the vendor cannot serve now (transient), anything else a permanent refusal.
pub(crate) fn status_kind(status: StatusCode) -> DriverErrorKind {
    match status.as_u16() {
        401 => DriverErrorKind::AdminLoginRejected,
        403 => DriverErrorKind::PermissionDenied,
        404 => DriverErrorKind::UserNotFound,
        408 => DriverErrorKind::Timeout,
        429 | 500..=599 => DriverErrorKind::ServerUnavailable,
        _ => DriverErrorKind::Server,
    }
}

/// How long a 429 asks to wait: `Retry-After` (seconds), or Okta's `X-Rate-Limit-Reset` (the
/// UTC epoch second when the window resets).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    let reset = number("x-rate-limit-reset")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

/// Checks that `value` can be one path segment: letters, digits, `-`, `_`, `.` (vendor ids are
/// all of this form). Anything else could change the path it is put in.
pub(crate) fn path_segment<'a>(
    value: &'a str,
    what: &str,
    system: DbSystem,
    phase: Phase,
) -> Result<&'a str, DriverError> {
    let ok = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value)
    } else {
        Err(invalid(
            system,
            phase,
            format!("{what} {value:?} is not a valid id (letters, digits, - _ . only)"),
        ))
    }
}

/// Whether a transport error is a TLS failure (rustls reports them as `InvalidData` I/O
/// errors or in its own error type).
fn is_tls(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        let text = s.to_string();
        if text.contains("certificate") || text.contains("tls") || text.contains("TLS") {
            return true;
        }
        source = s.source();
    }
    false
}

/// The error and its causes, without the URL (it holds ids only, but the text is shorter).
fn error_chain(e: &reqwest::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::TlsConfig;
    use crate::secret::SecretString;

    const SYSTEM: DbSystem = DbSystem::new("test.rest");

    fn connection(host: &str, mode: TlsMode) -> ConnectionConfig {
        ConnectionConfig {
            host: host.into(),
            port: 8443,
            database: String::new(),
            admin_username: "rotator".into(),
            admin_password: SecretString::new("x"),
            tls: TlsConfig { mode, ca_pem: None },
        }
    }

    #[test]
    fn plain_http_needs_tls_disable() {
        let https =
            Rest::new(&connection("org.example.com", TlsMode::VerifyFull), SYSTEM).expect("valid");
        assert_eq!(https.base.as_str(), "https://org.example.com:8443/");
        let http = Rest::new(&connection("127.0.0.1", TlsMode::Disable), SYSTEM).expect("valid");
        assert_eq!(http.url("/api/v1/x"), "http://127.0.0.1:8443/api/v1/x");
    }

    #[test]
    fn a_host_with_a_scheme_path_or_user_is_refused() {
        for bad in [
            "https://org.example.com",
            "org.example.com/api",
            "user@org.example.com",
            "org.example.com?x",
            "",
        ] {
            let e = Rest::new(&connection(bad, TlsMode::VerifyFull), SYSTEM).expect_err(bad);
            assert_eq!(e.kind(), DriverErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn ids_that_would_change_the_path_are_refused() {
        for bad in ["", "..", "a/b", "a?b", "a%2Fb", "a b"] {
            assert!(
                path_segment(bad, "id", SYSTEM, Phase::Revoke).is_err(),
                "{bad}"
            );
        }
        assert!(path_segment("ocs2f4zrZbs8nUa7p0g4", "id", SYSTEM, Phase::Revoke).is_ok());
    }

    #[test]
    fn statuses_are_classified() {
        use DriverErrorKind as K;
        for (status, kind) in [
            (401, K::AdminLoginRejected),
            (403, K::PermissionDenied),
            (404, K::UserNotFound),
            (429, K::ServerUnavailable),
            (500, K::ServerUnavailable),
            (503, K::ServerUnavailable),
            (400, K::Server),
        ] {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(status_kind(status), kind, "{status}");
        }
    }

    #[test]
    fn retry_after_reads_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().expect("value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let mut okta = HeaderMap::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        okta.insert(
            "x-rate-limit-reset",
            (now + 30).to_string().parse().expect("value"),
        );
        let wait = retry_after(&okta).expect("a wait");
        assert!(wait <= Duration::from_secs(30) && wait >= Duration::from_secs(28));
    }
}
