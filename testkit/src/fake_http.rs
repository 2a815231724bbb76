//! Plumbing shared by the fakes of vendor HTTP APIs ([`fake_okta`](crate::fake_okta),
//! [`fake_databricks`](crate::fake_databricks), [`fake_azure`](crate::fake_azure),
//! [`fake_auth0`](crate::fake_auth0)): a server on a loopback port stopped on drop, queues of
//! injected failures (by kind, or by status per endpoint), `Retry-After`, and the parsing of
//! Basic and bearer auth and form bodies.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;

/// A failure a fake answers with instead of serving a request, in its vendor's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 429 with the vendor's rate-limit headers; the window resets in this many seconds.
    RateLimited {
        /// Seconds until the client may try again.
        retry_after_secs: u64,
    },
    /// A 5xx status (500, 502, 503, 504).
    ServerError(u16),
    /// 403: the admin credential lacks the permission.
    Forbidden,
    /// 404: the app or principal does not exist.
    NotFound,
}

/// Statuses queued for the next calls of an endpoint `E` (a fake's own enum), each with an
/// optional `Retry-After`; the fake answers them in its vendor's error format.
#[derive(Debug)]
pub struct StatusFaults<E> {
    faults: Vec<StatusFault<E>>,
}

#[derive(Debug)]
struct StatusFault<E> {
    endpoint: E,
    status: u16,
    retry_after: Option<u64>,
    left: usize,
}

/// A server on `127.0.0.1:0`, aborted on drop.
pub struct Served {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

/// Failures queued for the next requests of one kind.
#[derive(Debug, Default)]
pub struct Injected {
    queue: Mutex<VecDeque<Failure>>,
}

// === impl Served ===

impl Served {
    /// Serves `router` on a fresh loopback port. Panics when no port can be bound.
    pub async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, server }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// === impl Injected ===

impl Injected {
    /// Queues `failure` for the next `times` requests.
    pub fn push(&self, failure: Failure, times: usize) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.extend(std::iter::repeat_n(failure, times));
    }

    /// The failure for this request, if one is queued.
    pub fn take(&self) -> Option<Failure> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

// === impl StatusFaults ===

impl<E> Default for StatusFaults<E> {
    fn default() -> Self {
        Self { faults: Vec::new() }
    }
}

impl<E: Copy + PartialEq> StatusFaults<E> {
    /// Answers the next `times` calls of `endpoint` with `status` (and `Retry-After`).
    pub fn push(&mut self, endpoint: E, status: u16, retry_after: Option<u64>, times: usize) {
        self.faults.push(StatusFault {
            endpoint,
            status,
            retry_after,
            left: times,
        });
    }

    /// The status (500 for one that is not a status) and `Retry-After` queued for this call
    /// of `endpoint`, if any.
    pub fn take(&mut self, endpoint: E) -> Option<(StatusCode, Option<u64>)> {
        let fault = self
            .faults
            .iter_mut()
            .find(|f| f.endpoint == endpoint && f.left > 0)?;
        fault.left -= 1;
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = fault.retry_after;
        self.faults.retain(|f| f.left > 0);
        Some((status, retry_after))
    }
}

/// `response` with `Retry-After: <seconds>` when `seconds` is given.
pub fn with_retry_after(mut response: Response, seconds: Option<u64>) -> Response {
    if let Some(value) = seconds.and_then(|s| s.to_string().parse().ok()) {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

/// The token of an `Authorization: Bearer <token>` header; "" when there is none.
pub fn bearer(headers: &axum::http::HeaderMap) -> &str {
    auth_value(headers, "Bearer").unwrap_or_default()
}

/// The `(user, password)` of an `Authorization: Basic …` header.
pub fn basic_auth(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The value of an `Authorization: <scheme> <value>` header.
pub fn auth_value<'a>(headers: &'a axum::http::HeaderMap, scheme: &str) -> Option<&'a str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix(scheme)?
        .strip_prefix(' ')
}

/// An `application/x-www-form-urlencoded` body (or query) as a map.
pub fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A random string of `len` characters from `[A-Za-z0-9]`.
pub fn random_token(len: usize) -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Seconds since the Unix epoch.
pub fn epoch_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An RFC 3339 UTC timestamp of `epoch` seconds.
pub fn rfc3339(epoch: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(epoch).unwrap_or(0), 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S.000Z").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let f = form(b"grant_type=client_credentials&scope=all-apis+x%2Fy&bad=%zz");
        assert_eq!(f["grant_type"], "client_credentials");
        assert_eq!(f["scope"], "all-apis x/y");
        assert_eq!(f["bad"], "%zz");
    }
}
