//! Authentication: who is calling. A caller proves an identity with a client certificate
//! (mutual TLS, verified against `tls.client_ca_file` by rustls before any request is read) or
//! a bearer token (`authorization: Bearer …`), which is hashed with SHA-256 and compared in
//! constant time with the configured hashes. In `auth.mode = "open"` nobody is asked.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Status};
use x509_cert::der::Decode;
use x509_cert::der::asn1::Ia5String;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::authz::{Action, Policy, Target};
use super::error::ServiceError;
use crate::config::{AuthConfig, AuthMode};
use crate::context::CallContext;
pub use crate::policy::TokenHash;
use crate::proto::RotationType;

/// The longest bearer token read from a request.
const MAX_TOKEN_LEN: usize = 4096;

/// A configured identity and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name in configuration and logs.
    pub name: String,
    /// Its permissions.
    pub policy: Policy,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub enum Caller {
    /// `auth.mode = "open"`: nobody was asked, everything is allowed.
    Open,
    /// A configured identity.
    Identity(Arc<Identity>),
}

/// Why a caller could not be authenticated. The messages never contain the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token and no client certificate.
    #[error(
        "this call needs an identity: send `authorization: Bearer <token>` or a client certificate"
    )]
    NoCredentials,
    /// The authorization header is not a single `Bearer <token>`.
    #[error("the authorization header must be a single `Bearer <token>` of printable ASCII")]
    MalformedAuthorization,
    /// The token's hash matches no configured identity.
    #[error("the bearer token is not valid")]
    UnknownToken,
    /// The client certificate names no configured identity.
    #[error("the client certificate does not name a configured identity")]
    UnknownCertificate,
    /// The client certificate could not be parsed.
    #[error("the client certificate could not be read")]
    UnreadableCertificate,
    /// The token and the certificate name different identities.
    #[error("the bearer token and the client certificate belong to different identities")]
    ConflictingCredentials,
}

/// Authenticates calls against the configured identities.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    tokens: Vec<(TokenHash, Arc<Identity>)>,
    certs: HashMap<String, Arc<Identity>>,
}

/// A tonic interceptor that lets a call through only with an identity (any identity: health
/// and reflection carry no per-rotation permission). Open when built with `None`.
#[derive(Debug, Clone)]
pub struct RequireIdentity(Option<Arc<Authenticator>>);

// === impl Caller ===

impl Caller {
    /// Whether the caller may do `action` on the target.
    pub fn allows(&self, action: Action, rotation_type: RotationType, target: Target<'_>) -> bool {
        match self {
            Self::Open => true,
            Self::Identity(identity) => identity.policy.allows(action, rotation_type, target),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("anonymous (auth.mode=open)"),
            Self::Identity(identity) => f.write_str(&identity.name),
        }
    }
}

// === impl Authenticator ===

impl Authenticator {
    /// An authenticator that asks nobody: every caller is [`Caller::Open`].
    pub fn open() -> Self {
        Self {
            mode: AuthMode::Open,
            tokens: Vec::new(),
            certs: HashMap::new(),
        }
    }

    /// Builds the authenticator of a validated configuration.
    pub fn new(config: &AuthConfig) -> Self {
        let mut tokens = Vec::new();
        let mut certs = HashMap::new();
        for configured in &config.identities {
            let identity = Arc::new(Identity {
                name: configured.name.clone(),
                policy: configured.policy.clone(),
            });
            if let Some(hash) = configured.token_sha256 {
                tokens.push((hash, Arc::clone(&identity)));
            }
            if let Some(name) = &configured.cert_identity {
                certs.insert(name.clone(), identity);
            }
        }
        Self {
            mode: config.mode,
            tokens,
            certs,
        }
    }

    /// Whether this authenticator asks nobody.
    pub fn is_open(&self) -> bool {
        self.mode == AuthMode::Open
    }

    /// Authenticates a call from its metadata and the verified client certificate chain
    /// (leaf first), if the connection is mutual TLS.
    ///
    /// # Errors
    ///
    /// [`AuthError`] in enforce mode when no valid credential names an identity.
    pub fn authenticate(
        &self,
        metadata: &MetadataMap,
        peer_certs: Option<&[tonic::transport::CertificateDer<'static>]>,
    ) -> Result<Caller, AuthError> {
        if self.mode == AuthMode::Open {
            return Ok(Caller::Open);
        }
        let by_token = match bearer_token(metadata)? {
            Some(token) => Some(self.identity_of_token(&TokenHash::of(token))?),
            None => None,
        };
        let leaf = peer_certs.and_then(|chain| chain.first());
        let by_cert = match leaf {
            Some(leaf) => self.identity_of_cert(leaf.as_ref())?,
            None => None,
        };
        match (by_token, by_cert) {
            (Some(t), Some(c)) if Arc::ptr_eq(&t, &c) => Ok(Caller::Identity(t)),
            (Some(_), Some(_)) => Err(AuthError::ConflictingCredentials),
            (Some(identity), None) | (None, Some(identity)) => Ok(Caller::Identity(identity)),
            (None, None) if leaf.is_some() => Err(AuthError::UnknownCertificate),
            (None, None) => Err(AuthError::NoCredentials),
        }
    }

    /// Compares against every configured hash, without stopping at a match.
    fn identity_of_token(&self, presented: &TokenHash) -> Result<Arc<Identity>, AuthError> {
        let mut found = None;
        for (hash, identity) in &self.tokens {
            if hash.ct_matches(presented) {
                found = Some(identity);
            }
        }
        found.cloned().ok_or(AuthError::UnknownToken)
    }

    /// The identity a certificate names, by SAN URI, SAN DNS name or subject CN, in that order.
    /// `None` when it names none: a token may still identify the caller.
    fn identity_of_cert(&self, der: &[u8]) -> Result<Option<Arc<Identity>>, AuthError> {
        let names = certificate_names(der).ok_or(AuthError::UnreadableCertificate)?;
        Ok(names.iter().find_map(|n| self.certs.get(n).cloned()))
    }

    /// Logs, loudly, how this server authenticates; call once at start.
    pub fn log_startup(&self, config: &AuthConfig, tls: bool) {
        match self.mode {
            AuthMode::Open => tracing::warn!(
                "AUTHENTICATION IS OFF (auth.mode = open): any process that can reach this \
                 loopback address may rotate secrets and read generated credentials. \
                 For local development only; see docs/security.md"
            ),
            AuthMode::Enforce => tracing::info!(
                identities = config.identities.len(),
                tokens = self.tokens.len(),
                certificates = self.certs.len(),
                tls,
                open_health = config.open_health,
                open_reflection = config.open_reflection,
                "caller authentication enforced"
            ),
        }
        if self.mode == AuthMode::Enforce && config.identities.is_empty() {
            tracing::warn!(
                "auth.mode = enforce with no identities: every rotation call is refused"
            );
        }
    }
}

/// Reads `authorization: Bearer <token>`; `None` when absent.
fn bearer_token(metadata: &MetadataMap) -> Result<Option<&str>, AuthError> {
    let mut values = metadata.get_all("authorization").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::MalformedAuthorization);
    }
    let text = value
        .to_str()
        .map_err(|_| AuthError::MalformedAuthorization)?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or(AuthError::MalformedAuthorization)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::MalformedAuthorization);
    }
    Ok(Some(token))
}

/// The names a certificate could be known by: SAN URIs, SAN DNS names, then the subject CNs.
/// `None` when the DER is not a certificate.
pub fn certificate_names(der: &[u8]) -> Option<Vec<String>> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = &cert.tbs_certificate;
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id != x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME {
            continue;
        }
        let san = SubjectAltName::from_der(ext.extn_value.as_bytes()).ok()?;
        for name in san.0 {
            match name {
                GeneralName::UniformResourceIdentifier(s) => uris.push(ia5(&s)),
                GeneralName::DnsName(s) => dns.push(ia5(&s)),
                _ => {}
            }
        }
    }
    let mut names = uris;
    names.append(&mut dns);
    for rdn in &tbs.subject.0 {
        for atv in rdn.0.iter() {
            if atv.oid == x509_cert::der::oid::db::rfc4519::CN {
                // PrintableString, UTF8String and IA5String all carry their text as bytes.
                if let Ok(text) = std::str::from_utf8(atv.value.value()) {
                    names.push(text.to_owned());
                }
            }
        }
    }
    Some(names)
}

fn ia5(s: &Ia5String) -> String {
    s.as_str().to_owned()
}

// === impl RequireIdentity ===

impl RequireIdentity {
    /// Requires an identity from `auth`, unless `open` (or `auth` asks nobody).
    pub fn new(auth: &Arc<Authenticator>, open: bool) -> Self {
        if open || auth.is_open() {
            Self(None)
        } else {
            Self(Some(Arc::clone(auth)))
        }
    }
}

impl tonic::service::Interceptor for RequireIdentity {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(auth) = &self.0 else {
            return Ok(request);
        };
        let certs = request.peer_certs();
        match auth.authenticate(request.metadata(), certs.as_deref().map(Vec::as_slice)) {
            Ok(_) => Ok(request),
            Err(error) => {
                let ctx = CallContext::generated();
                tracing::warn!(request_id = %ctx.request_id, %error, "unauthenticated call refused");
                Err(super::status::to_status(
                    &ServiceError::Unauthenticated(error),
                    &ctx,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IdentityConfig;

    const TOKEN: &str = "rtr_0123456789abcdef0123456789abcdef";

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthConfig {
            mode: AuthMode::Enforce,
            open_health: true,
            open_reflection: true,
            identities: vec![
                IdentityConfig {
                    name: "ci".into(),
                    token_sha256: Some(TokenHash::of(TOKEN)),
                    cert_identity: None,
                    policy: Policy::default(),
                },
                IdentityConfig {
                    name: "ops".into(),
                    token_sha256: Some(TokenHash::of("another-token-another-token-1234")),
                    cert_identity: Some("ops.example.test".into()),
                    policy: Policy::default(),
                },
            ],
        })
    }

    fn metadata(authorization: &[&str]) -> MetadataMap {
        let mut md = MetadataMap::new();
        for value in authorization {
            md.append("authorization", value.parse().expect("ascii"));
        }
        md
    }

    fn name_of(caller: Caller) -> String {
        caller.to_string()
    }

    #[test]
    fn a_configured_token_names_its_identity() {
        let auth = authenticator();
        let caller = auth
            .authenticate(&metadata(&[&format!("Bearer {TOKEN}")]), None)
            .expect("authenticated");
        assert_eq!(name_of(caller), "ci");
        let caller = auth
            .authenticate(&metadata(&[&format!("bearer  {TOKEN} ")]), None)
            .expect("scheme is case-insensitive");
        assert_eq!(name_of(caller), "ci");
    }

    #[test]
    fn bad_or_missing_credentials_are_refused_by_kind() {
        let auth = authenticator();
        let cases: [(&[&str], AuthError); 6] = [
            (&[], AuthError::NoCredentials),
            (&["Bearer wrong-token"], AuthError::UnknownToken),
            (&["Basic dXNlcjpwdw=="], AuthError::MalformedAuthorization),
            (&["Bearer"], AuthError::MalformedAuthorization),
            (&["Bearer "], AuthError::MalformedAuthorization),
            (&["Bearer a", "Bearer b"], AuthError::MalformedAuthorization),
        ];
        for (values, expected) in cases {
            assert_eq!(
                auth.authenticate(&metadata(values), None)
                    .map(name_of)
                    .expect_err("refused"),
                expected,
                "{values:?}"
            );
        }
    }

    #[test]
    fn open_mode_asks_nobody() {
        let caller = Authenticator::open()
            .authenticate(&metadata(&["Bearer whatever"]), None)
            .expect("open");
        assert!(matches!(caller, Caller::Open));
    }

    #[test]
    fn token_hashes_round_trip_through_hex_and_never_print() {
        let hash = TokenHash::of("abc");
        assert_eq!(
            hash.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            TokenHash::from_hex(&hash.to_hex().to_uppercase()),
            Some(hash)
        );
        assert_eq!(TokenHash::from_hex("abcd"), None);
        assert_eq!(format!("{hash:?}"), "TokenHash(..)");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(certificate_names(b"not a certificate"), None);
        assert_eq!(certificate_names(&[]), None);
    }
}
