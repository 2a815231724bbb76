//! What the drivers of vendor HTTP APIs share ([`okta_client_secret`](super::okta_client_secret),
//! [`databricks_sp_secret`](super::databricks_sp_secret),
//! [`azure_client_secret`](super::azure_client_secret),
//! [`auth0_client_secret`](super::auth0_client_secret)): the client and its TLS mode, the base
//! URL of a connection, URLs that refuse plain HTTP unless `tls = "disable"` says so, one send
//! that classifies transport failures and reads the answer, the classes of HTTP statuses and
//! OAuth token errors, an OAuth client-credentials token cache and the calls made with it, and
//! the wait for a new secret to propagate.
//!
//! `tls = "disable"` is the explicit opt-in to plain `http://` (a fake on loopback in tests);
//! every other mode speaks `https://`, `require` without certificate checks.
//!
//! Status classes every vendor here agrees on: 401 is the admin's token or credential, 403 a
//! missing permission, 404 the target principal, 429 and 5xx the vendor being busy or down
//! (transient). A vendor's own codes (Azure's `TooManyAppPasswords`, Okta's `E0000001`) are
//! mapped by its driver before this fallback.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode, Url};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::redact::Redactor;
use super::{
    CONNECT_TIMEOUT, ConnectionConfig, Credential, DbSystem, DriverError, DriverErrorKind,
    OPERATION_TIMEOUT, Phase, TlsMode, invalid,
};
use crate::secret::SecretString;

/// The largest answer body read from a vendor, in bytes.
const MAX_BODY: usize = 1 << 20;

/// A cached token is used while more than this remains of its life (as upstream), unless the
/// cache is made [`TokenCache::with_margin`].
pub const TOKEN_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long a driver keeps asking for a token with a new secret before it calls the secret
/// refused, when `propagation_wait_seconds` is not set. Auth0 documents that a new secret "may
/// be delayed up to thirty seconds"; Microsoft Entra replicates new credentials in seconds to
/// minutes.
pub const DEFAULT_PROPAGATION_WAIT: Duration = Duration::from_secs(30);

/// The connection option that overrides [`DEFAULT_PROPAGATION_WAIT`].
pub const PROPAGATION_OPTION: &str = "propagation_wait_seconds";

/// One answer of an HTTP API, read whole: status, how long a throttled caller should wait and
/// the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// `Retry-After` in seconds when given as a number; for a 429, else Okta's
    /// `X-Rate-Limit-Reset` (the UTC epoch second when the window resets).
    pub retry_after: Option<u64>,
    /// The body (at most [`MAX_BODY`] bytes of it); `Null` when empty or not JSON.
    pub body: serde_json::Value,
}

/// Who asks for a token: decides which kind a refused request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The connection's admin credential: a refusal is `AdminLoginRejected`.
    Admin,
    /// The rotated credential: a refusal is `LoginRejected`.
    Target,
}

/// How a token request authenticates the client (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic `client_id:client_secret` (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the form (`client_secret_post`).
    Form,
}

/// Whether a token came from the cache (and may be stale) or was just issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Reused from the cache.
    Cached,
    /// Just issued.
    New,
}

/// A bearer token obtained with OAuth client credentials, reused until its margin
/// ([`TOKEN_MARGIN`] by default) before it expires. Cheap to clone: clones share the token.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Mutex<Option<(SecretString, Instant)>>>,
    margin: Duration,
}

// === impl Reply ===

impl Reply {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

// === impl Login ===

impl Login {
    /// The kind of a refused login.
    pub fn refused(self) -> DriverErrorKind {
        match self {
            Self::Admin => DriverErrorKind::AdminLoginRejected,
            Self::Target => DriverErrorKind::LoginRejected,
        }
    }
}

// === impl TokenCache ===

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_margin(TOKEN_MARGIN)
    }
}

impl TokenCache {
    /// An empty cache that renews a token `margin` before it expires.
    pub fn with_margin(margin: Duration) -> Self {
        Self {
            inner: Arc::default(),
            margin,
        }
    }

    /// The cached token, or a new one from `fetch` (token, lifetime) when none is cached or
    /// no more than the margin remains. Calls wait for one another, so a burst of rotations
    /// asks for one token.
    ///
    /// # Errors
    ///
    /// `fetch`'s error.
    pub async fn get_or_fetch<F>(&self, fetch: F) -> Result<(SecretString, Freshness), DriverError>
    where
        F: Future<Output = Result<(SecretString, Duration), DriverError>>,
    {
        let mut cached = self.inner.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && expires.saturating_duration_since(Instant::now()) > self.margin
        {
            return Ok((token.clone(), Freshness::Cached));
        }
        let (token, lifetime) = fetch.await?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok((token, Freshness::New))
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

/// The HTTP client of a connection: connect and request timeouts, the CA file under
/// `verify-full`, no certificate check under `require`, no redirects.
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
    match connection.tls.mode {
        TlsMode::Disable => {}
        TlsMode::Require => builder = builder.danger_accept_invalid_certs(true),
        TlsMode::VerifyFull => {
            // The CA file's certificates are trusted beside the system roots, and a server
            // certificate that is exactly one of them is accepted as is (pinning: a self-signed
            // certificate made with `openssl req -x509` is a CA, which webpki refuses as a
            // server's own); everything else is verified fully, with a message saying what to
            // fix.
            if let Some(pem) = connection.ca_pem() {
                let tls = crate::net::pinned::PinnedVerifier::new("ca_file", pem.as_bytes())
                    .and_then(crate::net::pinned::PinnedVerifier::client_config)
                    .map_err(|e| {
                        DriverError::new(DriverErrorKind::Tls, system, Phase::Build, e.to_string())
                    })?;
                builder = builder.use_preconfigured_tls(tls);
            }
        }
    }
    builder.build().map_err(tls_error)
}

/// `https://<host>:<port>/` of the connection, or `http://` under `tls = "disable"`. An IPv6
/// address is put in brackets.
///
/// # Errors
///
/// [`DriverErrorKind::InvalidInput`] for a host that is not a bare host name (a scheme, path,
/// user, query or fragment in it) or does not make a URL.
pub fn base_url(connection: &ConnectionConfig, system: DbSystem) -> Result<Url, DriverError> {
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
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Url::parse(&format!("{scheme}://{host}:{}/", connection.port))
        .ok()
        .filter(|u| {
            u.path() == "/"
                && u.host_str().is_some()
                && u.query().is_none()
                && u.username().is_empty()
        })
        .ok_or_else(|| {
            invalid(
                system,
                Phase::Build,
                "the connection host is not a valid host name",
            )
        })
}

/// The absolute URL of `path` (which starts with `/`) under `base`.
pub fn url(base: &Url, path: &str) -> String {
    format!("{}{}", base.as_str().trim_end_matches('/'), path)
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

/// Whether `id` may go into a URL path as is: 1–128 ASCII letters, digits, `-`, `_` and `.`,
/// not only dots (vendor ids are all of this form). Anything else could change the path.
pub fn is_path_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.bytes().all(|b| b == b'.')
}

/// `value`, checked by [`is_path_safe`].
///
/// # Errors
///
/// [`DriverErrorKind::InvalidInput`] naming `what`.
pub fn path_segment<'a>(
    value: &'a str,
    what: &str,
    system: DbSystem,
    phase: Phase,
) -> Result<&'a str, DriverError> {
    if is_path_safe(value) {
        Ok(value)
    } else {
        Err(invalid(
            system,
            phase,
            format!("{what} {value:?} is not a valid id (letters, digits, - _ . only)"),
        ))
    }
}

/// Sends `request` and reads the answer (at most [`MAX_BODY`] bytes). Never fails on an HTTP
/// status: the caller classifies it (see [`status_kind`]).
///
/// # Errors
///
/// `Unreachable`, `Timeout` or `Tls` when no answer came (see [`transport_error`]).
pub async fn send(
    request: RequestBuilder,
    system: DbSystem,
    phase: Phase,
    redactor: &Redactor<'_>,
) -> Result<Reply, DriverError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, system, phase, redactor))?;
    let status = response.status();
    let retry_after = retry_after(status, response.headers());
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(&e, system, phase, redactor))?
    {
        let room = MAX_BODY.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// Sends `request()` with the bearer token of `cache` (a new one from `fetch` when none is
/// cached) and reads the answer, whatever its status; returns it with the token, for the
/// redactor of an error made of it. A 401 forgets the token; when it came from the cache
/// (revoked early, or the admin's grant changed) the call is made once more with a new one. A
/// 401 means the call did nothing, so repeating it is safe.
///
/// # Errors
///
/// `fetch`'s error, or [`send`]'s.
pub async fn with_bearer<F, Fut>(
    cache: &TokenCache,
    fetch: F,
    request: impl Fn() -> RequestBuilder,
    system: DbSystem,
    phase: Phase,
    redactor: &Redactor<'_>,
) -> Result<(Reply, SecretString), DriverError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(SecretString, Duration), DriverError>>,
{
    loop {
        let (token, freshness) = cache.get_or_fetch(fetch()).await?;
        let redactor = redactor.also(token.expose());
        let reply = send(
            request().bearer_auth(token.expose()),
            system,
            phase,
            &redactor,
        )
        .await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            cache.clear().await;
            if freshness == Freshness::Cached {
                continue;
            }
        }
        return Ok((reply, token));
    }
}

/// An OAuth `client_credentials` token request to `url` as `client_id` with `secret`, and the
/// extra form `params` (`scope`, `audience`).
pub fn token_request(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    auth: ClientAuth,
    client_id: &str,
    secret: &SecretString,
    params: &[(&str, &str)],
) -> RequestBuilder {
    let mut form = vec![("grant_type", "client_credentials")];
    let request = http.post(url).header("Accept", "application/json");
    let request = match auth {
        ClientAuth::Basic => request.basic_auth(client_id, Some(secret.expose())),
        ClientAuth::Form => {
            form.extend([("client_id", client_id), ("client_secret", secret.expose())]);
            request
        }
    };
    form.extend_from_slice(params);
    request.form(&form)
}

/// The bearer token of a successful token answer and its lifetime (`expires_in`, 0 when
/// absent).
///
/// # Errors
///
/// [`DriverErrorKind::Server`] with `missing` when there is no `access_token`, or a
/// `token_type` other than `Bearer`.
pub fn bearer_token(
    reply: &Reply,
    system: DbSystem,
    phase: Phase,
    missing: &'static str,
) -> Result<(SecretString, Duration), DriverError> {
    let token = text(&reply.body, "access_token");
    if token.is_empty() || !text(&reply.body, "token_type").eq_ignore_ascii_case("bearer") {
        return Err(DriverError::new(
            DriverErrorKind::Server,
            system,
            phase,
            missing,
        ));
    }
    let seconds = reply
        .body
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Ok((SecretString::new(token), Duration::from_secs(seconds)))
}

/// Classifies a refused token request, `{error, error_description}` (RFC 6749 §5.2): a 401 or
/// an `error` among `refused_codes` (`invalid_client`, and whatever else the vendor uses for a
/// wrong secret) refuses the login, whose kind `login` decides; `temporarily_unavailable` is
/// transient; anything else goes by status. The detail holds the error and the first line of
/// its description (the rest is trace ids).
pub fn token_error(
    reply: &Reply,
    login: Login,
    refused_codes: &[&str],
    system: DbSystem,
    phase: Phase,
    redactor: &Redactor<'_>,
) -> DriverError {
    let error = text(&reply.body, "error");
    let description = text(&reply.body, "error_description");
    let description = description.lines().next().unwrap_or_default();
    let kind = if refused_codes.contains(&error) || reply.status == StatusCode::UNAUTHORIZED {
        login.refused()
    } else if error == "temporarily_unavailable" {
        DriverErrorKind::ServerUnavailable
    } else {
        status_kind(reply.status)
    };
    reply_error(
        kind,
        reply,
        &format!("{error}: {description}"),
        system,
        phase,
        redactor,
    )
}

/// The kind of an HTTP error status that the vendor's own codes did not decide: 401 the
/// admin credential is refused, 403 it lacks a permission, 404 the principal (or app) does not
/// exist, 408/409/423/425/429/5xx the vendor cannot serve now (transient), 400/422 a refused
/// request, anything else a permanent refusal.
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
/// the wait it asked for in the detail.
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

/// The credential an issue answered with: its id from field `id`, its secret from the first
/// of `secret` present.
///
/// # Errors
///
/// [`DriverErrorKind::Server`] with `missing` when either is absent or empty.
pub fn issued_credential(
    body: &serde_json::Value,
    id: &str,
    secret: &[&str],
    system: DbSystem,
    missing: &'static str,
) -> Result<Credential, DriverError> {
    let id = text(body, id);
    let secret = secret
        .iter()
        .map(|key| text(body, key))
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    if id.is_empty() || secret.is_empty() {
        return Err(DriverError::new(
            DriverErrorKind::Server,
            system,
            Phase::Issue,
            missing,
        ));
    }
    Ok(Credential {
        id: id.to_owned(),
        secret: SecretString::new(secret),
    })
}

/// A string field of a JSON object, or "".
pub fn text<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    value.get(key).and_then(|v| v.as_str()).unwrap_or_default()
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

/// A transport failure (no answer): `Timeout`, `Tls` (see [`is_tls`]) or `Unreachable`, with
/// the scrubbed [`error_chain`].
pub fn transport_error(
    e: &reqwest::Error,
    system: DbSystem,
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
    DriverError::new(kind, system, phase, redactor.scrub(&error_chain(e)))
}

/// How long a reply asks to wait: `Retry-After` (seconds), or for a 429 Okta's
/// `X-Rate-Limit-Reset` (the UTC epoch second when the window resets; Okta sends it on every
/// answer, so it means a wait only on a 429).
fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<u64> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(seconds) = number("retry-after") {
        return Some(seconds);
    }
    if status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let reset = number("x-rate-limit-reset")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(reset.saturating_sub(now))
}

/// Whether a transport error is a TLS failure: rustls reports handshake and certificate
/// failures as `InvalidData` I/O errors or in its own error type.
pub(crate) fn is_tls(e: &reqwest::Error) -> bool {
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

/// A reqwest error and its causes, without the URL (it holds ids only, but the text is
/// shorter).
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
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

    const SYSTEM: DbSystem = DbSystem::new("test.http");

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

    fn reply(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).expect("status"),
            retry_after: None,
            body,
        }
    }

    #[test]
    fn plain_http_needs_tls_disable() {
        let https =
            base_url(&connection("org.example.com", TlsMode::VerifyFull), SYSTEM).expect("valid");
        assert_eq!(https.as_str(), "https://org.example.com:8443/");
        let http = base_url(&connection("127.0.0.1", TlsMode::Disable), SYSTEM).expect("valid");
        assert_eq!(url(&http, "/api/v1/x"), "http://127.0.0.1:8443/api/v1/x");
        let v6 = base_url(&connection("::1", TlsMode::Disable), SYSTEM).expect("valid");
        assert_eq!(v6.as_str(), "http://[::1]:8443/");

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
    fn a_host_with_a_scheme_path_or_user_is_refused() {
        for bad in [
            "https://org.example.com",
            "org.example.com/api",
            "user@org.example.com",
            "org.example.com?x",
            "org.example.com#x",
            "",
        ] {
            let e = base_url(&connection(bad, TlsMode::VerifyFull), SYSTEM).expect_err(bad);
            assert_eq!(e.kind(), DriverErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn ids_in_paths_cannot_escape_them() {
        for ok in [
            "8a1b2c3d-0000-4000-8000-000000000001",
            "abcDEF123_x.y",
            "ocs2f4zrZbs8nUa7p0g4",
        ] {
            assert!(is_path_safe(ok), "{ok}");
            assert!(
                path_segment(ok, "id", SYSTEM, Phase::Revoke).is_ok(),
                "{ok}"
            );
        }
        for bad in ["", "..", "...", "a/b", "a?b", "a%2fb", "a b", "é"] {
            assert!(!is_path_safe(bad), "{bad}");
            assert!(
                path_segment(bad, "id", SYSTEM, Phase::Revoke).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn statuses_classify_as_documented() {
        use DriverErrorKind as K;
        for (status, kind) in [
            (401, K::AdminLoginRejected),
            (403, K::PermissionDenied),
            (404, K::UserNotFound),
            (429, K::ServerUnavailable),
            (500, K::ServerUnavailable),
            (503, K::ServerUnavailable),
            (400, K::InvalidInput),
            (418, K::Server),
        ] {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(status_kind(status), kind, "{status}");
        }
    }

    #[test]
    fn retry_after_reads_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().expect("value"));
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(7)
        );
        let mut okta = HeaderMap::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        okta.insert(
            "x-rate-limit-reset",
            (now + 30).to_string().parse().expect("value"),
        );
        let wait = retry_after(StatusCode::TOO_MANY_REQUESTS, &okta).expect("a wait");
        assert!((28..=30).contains(&wait), "{wait}");
        assert_eq!(retry_after(StatusCode::OK, &okta), None, "not throttled");
    }

    #[test]
    fn token_errors_refuse_the_login_that_asked() {
        let r = Redactor::default();
        let wrong = reply(
            401,
            serde_json::json!({"error": "access_denied", "error_description": "Unauthorized\r\nTrace ID: x"}),
        );
        let e = token_error(
            &wrong,
            Login::Target,
            &["invalid_client"],
            SYSTEM,
            Phase::Verify,
            &r,
        );
        assert_eq!(e.kind(), DriverErrorKind::LoginRejected);
        assert!(!e.detail().contains("Trace ID"), "{e}");
        let e = token_error(
            &wrong,
            Login::Admin,
            &["invalid_client"],
            SYSTEM,
            Phase::Probe,
            &r,
        );
        assert_eq!(e.kind(), DriverErrorKind::AdminLoginRejected);
        let busy = reply(400, serde_json::json!({"error": "temporarily_unavailable"}));
        let e = token_error(
            &busy,
            Login::Admin,
            &["invalid_client"],
            SYSTEM,
            Phase::Probe,
            &r,
        );
        assert!(e.is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_token_is_reused_until_five_minutes_before_it_expires() {
        let cache = TokenCache::default();
        let fetches = std::sync::atomic::AtomicU32::new(0);
        let fetch = || async {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok((SecretString::new("t"), Duration::from_secs(3600)))
        };
        let (_, fresh) = cache.get_or_fetch(fetch()).await.expect("token");
        assert_eq!(fresh, Freshness::New);
        tokio::time::advance(Duration::from_secs(3600 - 301)).await;
        let (_, fresh) = cache.get_or_fetch(fetch()).await.expect("token");
        assert_eq!(fresh, Freshness::Cached);
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.get_or_fetch(fetch()).await.expect("token");
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
        cache.clear().await;
        cache.get_or_fetch(fetch()).await.expect("token");
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
