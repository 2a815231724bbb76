//! What the drivers of HTTP APIs share ([`azure_client_secret`](super::azure_client_secret),
//! [`auth0_client_secret`](super::auth0_client_secret)): the client and its TLS mode, URLs that
//! refuse plain HTTP unless `tls = "disable"` says so, one send that classifies transport
//! failures and HTTP statuses, an OAuth client-credentials token cache, and the wait for a new
//! secret to propagate.
//!
//! Status classes every vendor here agrees on: 401 is the admin's token or credential, 403 a
//! missing permission, 404 the target principal, 429 and 5xx the vendor being busy or down
//! (transient). A vendor's own codes (Azure's `TooManyAppPasswords`) are mapped by its driver
//! before this fallback.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::redact::Redactor;
use super::{
    CONNECT_TIMEOUT, ConnectionConfig, DbSystem, DriverError, DriverErrorKind, OPERATION_TIMEOUT,
    Phase, TlsMode, invalid,
};
use crate::secret::SecretString;

/// A cached token is used while more than this remains of its life (as upstream).
pub const TOKEN_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long a driver keeps asking for a token with a new secret before it calls the secret
/// refused, when `propagation_wait_seconds` is not set. Auth0 documents that a new secret "may
/// be delayed up to thirty seconds"; Microsoft Entra replicates new credentials in seconds to
/// minutes.
pub const DEFAULT_PROPAGATION_WAIT: Duration = Duration::from_secs(30);

/// The connection option that overrides [`DEFAULT_PROPAGATION_WAIT`].
pub const PROPAGATION_OPTION: &str = "propagation_wait_seconds";

/// One answer of an HTTP API: status, `Retry-After` seconds and the body as JSON (`Null` when
/// empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// `Retry-After`, in seconds, when given as a number.
    pub retry_after: Option<u64>,
    /// The body; `Null` when empty or not JSON.
    pub body: serde_json::Value,
}

/// A bearer token obtained with OAuth client credentials, reused until [`TOKEN_MARGIN`] before
/// it expires. Cheap to clone: clones share the token. One per connection (its admin
/// credentials), kept in [`ConnectionShared`](super::shared::ConnectionShared).
#[derive(Clone, Default)]
pub struct TokenCache {
    inner: Arc<Mutex<Option<(SecretString, Instant)>>>,
}

// === impl TokenCache ===

impl TokenCache {
    /// The cached token, or a new one from `fetch` (token, lifetime) when none is cached or
    /// less than [`TOKEN_MARGIN`] remains. Calls wait for one another, so a burst of rotations
    /// asks for one token.
    ///
    /// # Errors
    ///
    /// `fetch`'s error.
    pub async fn get_or_fetch<F>(&self, fetch: F) -> Result<SecretString, DriverError>
    where
        F: Future<Output = Result<(SecretString, Duration), DriverError>>,
    {
        let mut cached = self.inner.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && expires.saturating_duration_since(Instant::now()) > TOKEN_MARGIN
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = fetch.await?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Forgets the token (the API refused it: revoked, or the admin's permissions changed).
    pub async fn clear(&self) {
        *self.inner.lock().await = None;
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache([redacted])")
    }
}

/// The HTTP client of a connection: connect and request timeouts, the CA file, and no
/// certificate check under `tls = "require"`.
///
/// # Errors
///
/// [`DriverErrorKind::Tls`] when the CA file is not PEM or the TLS setup fails.
pub fn client(
    connection: &ConnectionConfig,
    system: DbSystem,
) -> Result<reqwest::Client, DriverError> {
    let tls_error = |e: reqwest::Error| {
        DriverError::new(DriverErrorKind::Tls, system, Phase::Build, e.to_string())
    };
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("rotator/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(OPERATION_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = connection.ca_pem() {
        for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(tls_error)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if connection.tls.mode == TlsMode::Require {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build().map_err(tls_error)
}

/// `https://<host>:<port>/` of the connection, or `http://` under `tls = "disable"`.
///
/// # Errors
///
/// [`DriverErrorKind::InvalidInput`] for a host that does not make a URL.
pub fn base_url(connection: &ConnectionConfig, system: DbSystem) -> Result<Url, DriverError> {
    let scheme = match connection.tls.mode {
        TlsMode::Disable => "http",
        TlsMode::Require | TlsMode::VerifyFull => "https",
    };
    let host = connection.host.trim();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let url = Url::parse(&format!("{scheme}://{host}:{}/", connection.port))
        .map_err(|e| invalid(system, Phase::Build, format!("connection host: {e}")))?;
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(invalid(
            system,
            Phase::Build,
            "the connection host must be a host name, without a path",
        ));
    }
    Ok(url)
}

/// A URL from option `key`, with a trailing `/`: `https` always, `http` only under
/// `tls = "disable"` (a test endpoint must be an explicit choice).
///
/// # Errors
///
/// [`DriverErrorKind::InvalidInput`] naming the option, never its value.
pub fn option_url(
    text: &str,
    key: &str,
    tls: TlsMode,
    system: DbSystem,
) -> Result<Url, DriverError> {
    let mut text = text.trim().to_owned();
    if !text.ends_with('/') {
        text.push('/');
    }
    let url = Url::parse(&text).map_err(|e| {
        invalid(
            system,
            Phase::Build,
            format!("option {key} is not a URL: {e}"),
        )
    })?;
    match (url.scheme(), tls) {
        ("https", _) | ("http", TlsMode::Disable) => {}
        ("http", _) => {
            return Err(invalid(
                system,
                Phase::Build,
                format!("option {key} is plain http: allowed only with tls = \"disable\""),
            ));
        }
        _ => {
            return Err(invalid(
                system,
                Phase::Build,
                format!("option {key} must be an https URL"),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(invalid(
            system,
            Phase::Build,
            format!("option {key} must not hold credentials or a query"),
        ));
    }
    Ok(url)
}

/// A string option, trimmed; `None` when absent.
///
/// # Errors
///
/// [`DriverErrorKind::InvalidInput`] when it is not a string.
pub fn string_option(
    options: &toml::Table,
    key: &str,
    system: DbSystem,
) -> Result<Option<String>, DriverError> {
    match options.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(invalid(
            system,
            Phase::Build,
            format!("option {key} must be a string"),
        )),
    }
}

/// `propagation_wait_seconds` (0–600), or [`DEFAULT_PROPAGATION_WAIT`].
///
/// # Errors
///
/// [`DriverErrorKind::InvalidInput`] when it is not an integer in range.
pub fn propagation_wait(options: &toml::Table, system: DbSystem) -> Result<Duration, DriverError> {
    match options.get(PROPAGATION_OPTION) {
        None => Ok(DEFAULT_PROPAGATION_WAIT),
        Some(toml::Value::Integer(s)) if (0..=600).contains(s) => {
            Ok(Duration::from_secs(s.unsigned_abs()))
        }
        Some(_) => Err(invalid(
            system,
            Phase::Build,
            format!("option {PROPAGATION_OPTION} must be an integer from 0 to 600"),
        )),
    }
}

/// Whether `id` may go into a URL path as is: ASCII letters, digits, `-`, `_` and `.`, not
/// only dots.
pub fn is_path_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.bytes().all(|b| b == b'.')
}

/// Sends `request` and reads the answer. Never fails on an HTTP status: the caller classifies
/// it (see [`status_kind`]).
///
/// # Errors
///
/// `Unreachable`, `Timeout` or `Tls` when no answer came; the detail is scrubbed and holds no
/// URL.
pub async fn send(
    request: reqwest::RequestBuilder,
    system: DbSystem,
    phase: Phase,
    redactor: &Redactor<'_>,
) -> Result<Reply, DriverError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, system, phase, redactor))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(&e, system, phase, redactor))?;
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// The kind of an HTTP error status that the vendor's own codes did not decide.
pub fn status_kind(status: StatusCode) -> DriverErrorKind {
    match status.as_u16() {
        401 => DriverErrorKind::AdminLoginRejected,
        403 => DriverErrorKind::PermissionDenied,
        404 => DriverErrorKind::UserNotFound,
        408 => DriverErrorKind::Timeout,
        409 | 423 | 425 | 429 => DriverErrorKind::ServerUnavailable,
        s if s >= 500 => DriverErrorKind::ServerUnavailable,
        400 | 422 => DriverErrorKind::InvalidInput,
        _ => DriverErrorKind::Server,
    }
}

/// The error of a refused call: `kind`, with the status, the vendor's message (scrubbed) and
/// `Retry-After` in the detail.
pub fn reply_error(
    kind: DriverErrorKind,
    reply: &Reply,
    message: &str,
    system: DbSystem,
    phase: Phase,
    redactor: &Redactor<'_>,
) -> DriverError {
    let mut detail = format!("HTTP {}", reply.status.as_u16());
    if !message.is_empty() {
        detail.push_str(": ");
        detail.push_str(message);
    }
    if let Some(seconds) = reply.retry_after {
        detail.push_str(&format!(" (retry after {seconds} s)"));
    }
    DriverError::new(kind, system, phase, redactor.scrub(&detail))
}

/// A string field of a JSON object, or "".
pub fn text<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    value.get(key).and_then(|v| v.as_str()).unwrap_or_default()
}

fn transport_error(
    e: &reqwest::Error,
    system: DbSystem,
    phase: Phase,
    redactor: &Redactor<'_>,
) -> DriverError {
    let mut detail = e.to_string();
    if let Some(url) = e.url() {
        detail = detail.replace(url.as_str(), "<url>");
    }
    let mut tls = false;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        // rustls reports handshake and certificate failures as InvalidData.
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            tls = true;
        }
        source = s.source();
    }
    let kind = if e.is_timeout() {
        DriverErrorKind::Timeout
    } else if tls {
        DriverErrorKind::Tls
    } else {
        DriverErrorKind::Unreachable
    };
    DriverError::new(kind, system, phase, redactor.scrub(&detail))
}

/// Retries `attempt` while it fails with `LoginRejected`, for at most `wait` after the first
/// try (1 s, 2 s, 4 s … apart): a new secret may not be usable everywhere at once.
///
/// # Errors
///
/// The last error.
pub async fn while_propagating<F, Fut>(wait: Duration, mut attempt: F) -> Result<(), DriverError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), DriverError>>,
{
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_secs(1);
    loop {
        match attempt().await {
            Err(e) if e.kind() == DriverErrorKind::LoginRejected && Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(Duration::from_secs(8));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: DbSystem = DbSystem::new("test");

    #[test]
    fn plain_http_needs_tls_disable() {
        assert!(
            option_url(
                "http://127.0.0.1:1",
                "authority_url",
                TlsMode::VerifyFull,
                SYSTEM
            )
            .is_err()
        );
        assert!(
            option_url(
                "http://127.0.0.1:1",
                "authority_url",
                TlsMode::Disable,
                SYSTEM
            )
            .is_ok()
        );
        let url = option_url(
            "https://login.microsoftonline.us",
            "k",
            TlsMode::VerifyFull,
            SYSTEM,
        )
        .expect("https");
        assert_eq!(url.as_str(), "https://login.microsoftonline.us/");
        assert!(option_url("https://u:p@x/", "k", TlsMode::VerifyFull, SYSTEM).is_err());
        assert!(option_url("ftp://x/", "k", TlsMode::Disable, SYSTEM).is_err());
    }

    #[test]
    fn ids_in_paths_cannot_escape_them() {
        for ok in ["8a1b2c3d-0000-4000-8000-000000000001", "abcDEF123_x.y"] {
            assert!(is_path_safe(ok), "{ok}");
        }
        for bad in ["", "..", "a/b", "a?b", "a%2fb", "a b", "é"] {
            assert!(!is_path_safe(bad), "{bad}");
        }
    }

    #[test]
    fn statuses_classify_as_documented() {
        use DriverErrorKind::*;
        let k = |s: u16| status_kind(StatusCode::from_u16(s).expect("status"));
        assert_eq!(k(401), AdminLoginRejected);
        assert_eq!(k(403), PermissionDenied);
        assert_eq!(k(404), UserNotFound);
        assert!(k(429).is_transient() && k(500).is_transient() && k(503).is_transient());
        assert!(!k(400).is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_token_is_reused_until_five_minutes_before_it_expires() {
        let cache = TokenCache::default();
        let fetches = std::sync::atomic::AtomicU32::new(0);
        let fetch = || async {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok((SecretString::new("t"), Duration::from_secs(3600)))
        };
        cache.get_or_fetch(fetch()).await.expect("token");
        tokio::time::advance(Duration::from_secs(3600 - 301)).await;
        cache.get_or_fetch(fetch()).await.expect("token");
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.get_or_fetch(fetch()).await.expect("token");
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
        cache.clear().await;
        cache.get_or_fetch(fetch()).await.expect("token");
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
