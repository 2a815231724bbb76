//! The security sections of the configuration: `[tls]` (server TLS and mutual TLS), `[auth]`
//! (caller identities and their permissions) and `[network]` (outbound address policy).
//! Raw (as written) structs reject unknown keys; `validate_*` turns them into typed values and
//! reports every problem by key, never by value.

use std::net::SocketAddr;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::ConfigProblem;
use crate::net::AddressPolicy;
use crate::policy::{Action, Grant, Pattern, Policy, TokenHash, TypeScope};
use crate::secret::SecretString;

/// Largest certificate, key or CA file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// Longest identity name or certificate identity.
const MAX_NAME_LEN: usize = 256;

/// Keys that hold booleans, for typing `ROTATOR_*` values.
pub(super) const BOOL_KEYS: &[&str] = &[
    "tls.client_auth_optional",
    "auth.open_health",
    "auth.open_reflection",
    "auth.allow_plaintext_tokens",
    "network.deny_private_addresses",
];

// === raw (as written) ===

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_ca_file: Option<String>,
    client_auth_optional: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    mode: Option<String>,
    open_health: Option<bool>,
    open_reflection: Option<bool>,
    allow_plaintext_tokens: Option<bool>,
    identities: Option<Vec<RawIdentity>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    name: Option<String>,
    token_sha256: Option<String>,
    cert_identity: Option<String>,
    permissions: Option<Vec<RawGrant>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    actions: Option<Vec<String>>,
    types: Option<Vec<String>>,
    rotations: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    deny_private_addresses: Option<bool>,
}

// === typed (validated) ===

/// Server TLS; mutual TLS when a client CA is set.
#[derive(Clone)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The server's private key, PEM.
    pub key_pem: SecretString,
    /// CA certificate(s), PEM, that client certificates must chain to. Set: mutual TLS.
    pub client_ca_pem: Option<Vec<u8>>,
    /// With a client CA: also accept clients without a certificate (they may use a token).
    pub client_auth_optional: bool,
}

/// Whether callers must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every rotation call needs an identity with the permission for it.
    Enforce,
    /// Nobody is asked. Loopback listen addresses only; for local development.
    Open,
}

/// Caller authentication and authorization.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Enforce or open. Default: open on a loopback listen address with no identities
    /// configured, enforce otherwise.
    pub mode: AuthMode,
    /// Health checks need no identity. Default true.
    pub open_health: bool,
    /// Server reflection needs no identity. Default true.
    pub open_reflection: bool,
    /// The callers.
    pub identities: Vec<IdentityConfig>,
}

/// One caller.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The name in logs and denials.
    pub name: String,
    /// SHA-256 of the caller's bearer token.
    pub token_sha256: Option<TokenHash>,
    /// The client certificate's SAN URI, SAN DNS name or subject CN.
    pub cert_identity: Option<String>,
    /// What the caller may do.
    pub policy: Policy,
}

/// Outbound connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkConfig {
    /// Which resolved addresses remote targets may have.
    pub address_policy: AddressPolicy,
}

// === impl TlsConfig ===

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("key_pem", &self.key_pem)
            .field("mutual", &self.client_ca_pem.is_some())
            .field("client_auth_optional", &self.client_auth_optional)
            .finish_non_exhaustive()
    }
}

// === validation ===

struct Problems<'a>(&'a mut Vec<ConfigProblem>);

impl Problems<'_> {
    fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            reason: reason.into(),
        });
    }
}

/// Reads a PEM file of at most 1 MiB.
fn read_pem(key: &str, path: &str, problems: &mut Problems<'_>) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    let read =
        std::fs::File::open(path).and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes));
    match read {
        Ok(n) if n as u64 > MAX_PEM_BYTES => {
            problems.push(key, format!("{path} is larger than {MAX_PEM_BYTES} bytes"));
            None
        }
        Ok(_) => Some(bytes),
        Err(e) => {
            problems.push(key, format!("cannot read {path}: {e}"));
            None
        }
    }
}

fn has_certificates(pem: &[u8]) -> bool {
    let mut certs = CertificateDer::pem_slice_iter(pem);
    matches!(certs.next(), Some(Ok(_))) && certs.all(|c| c.is_ok())
}

pub(super) fn validate_tls(raw: RawTls, problems: &mut Vec<ConfigProblem>) -> Option<TlsConfig> {
    let mut problems = Problems(problems);
    let (cert_file, key_file) = match (raw.cert_file, raw.key_file) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            if raw.client_ca_file.is_some() {
                problems.push("tls.client_ca_file", "needs tls.cert_file and tls.key_file");
            }
            if raw.client_auth_optional.is_some() {
                problems.push("tls.client_auth_optional", "needs tls.client_ca_file");
            }
            return None;
        }
        (Some(_), None) => {
            problems.push("tls.key_file", "is required with tls.cert_file");
            return None;
        }
        (None, Some(_)) => {
            problems.push("tls.cert_file", "is required with tls.key_file");
            return None;
        }
    };
    let cert_pem = read_pem("tls.cert_file", &cert_file, &mut problems);
    if cert_pem
        .as_deref()
        .is_some_and(|pem| !has_certificates(pem))
    {
        problems.push("tls.cert_file", "holds no PEM certificate");
    }
    let key_pem = read_pem("tls.key_file", &key_file, &mut problems);
    let key_pem = key_pem.and_then(|pem| {
        let usable = PrivateKeyDer::from_pem_slice(&pem).is_ok();
        match String::from_utf8(pem) {
            Ok(text) if usable => Some(SecretString::new(text)),
            _ => {
                problems.push("tls.key_file", "holds no PEM private key");
                None
            }
        }
    });
    let client_ca_pem = raw
        .client_ca_file
        .and_then(|path| read_pem("tls.client_ca_file", &path, &mut problems));
    if client_ca_pem
        .as_deref()
        .is_some_and(|pem| !has_certificates(pem))
    {
        problems.push("tls.client_ca_file", "holds no PEM certificate");
    }
    if raw.client_auth_optional.is_some() && client_ca_pem.is_none() {
        problems.push("tls.client_auth_optional", "needs tls.client_ca_file");
    }
    Some(TlsConfig {
        cert_pem: cert_pem?,
        key_pem: key_pem?,
        client_ca_pem,
        client_auth_optional: raw.client_auth_optional.unwrap_or(false),
    })
}

pub(super) fn validate_auth(
    raw: RawAuth,
    listen: SocketAddr,
    tls: Option<&TlsConfig>,
    problems: &mut Vec<ConfigProblem>,
) -> AuthConfig {
    let mut problems = Problems(problems);
    let identities: Vec<IdentityConfig> = raw
        .identities
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, raw)| validate_identity(i, raw, tls, &mut problems))
        .collect();
    check_unique(&identities, &mut problems);
    let loopback = listen.ip().is_loopback();
    let mode = match raw.mode.as_deref() {
        Some("enforce") => AuthMode::Enforce,
        Some("open") => {
            if !loopback {
                problems.push(
                    "auth.mode",
                    "\"open\" is refused on a non-loopback listen address; configure \
                     [[auth.identities]] (see docs/security.md)",
                );
            }
            AuthMode::Open
        }
        Some(_) => {
            problems.push("auth.mode", "must be \"enforce\" or \"open\"");
            AuthMode::Enforce
        }
        None if identities.is_empty() && loopback => AuthMode::Open,
        None if identities.is_empty() => {
            problems.push(
                "auth.identities",
                "none configured, and the listen address is not loopback: configure \
                 [[auth.identities]] (see docs/security.md) or listen on 127.0.0.1 for an \
                 open development server",
            );
            AuthMode::Enforce
        }
        None => AuthMode::Enforce,
    };
    let has_tokens = identities.iter().any(|i| i.token_sha256.is_some());
    let allow_plaintext = raw.allow_plaintext_tokens.unwrap_or(false);
    if mode == AuthMode::Enforce && has_tokens && tls.is_none() && !loopback && !allow_plaintext {
        problems.push(
            "auth.allow_plaintext_tokens",
            "bearer tokens would cross the network in plaintext: configure [tls], or set this \
             to true when a TLS-terminating proxy or mesh sits in front",
        );
    }
    AuthConfig {
        mode,
        open_health: raw.open_health.unwrap_or(true),
        open_reflection: raw.open_reflection.unwrap_or(true),
        identities,
    }
}

fn validate_identity(
    index: usize,
    raw: RawIdentity,
    tls: Option<&TlsConfig>,
    problems: &mut Problems<'_>,
) -> Option<IdentityConfig> {
    let key = format!("auth.identities[{index}]");
    let name = match raw.name {
        Some(n) if is_name(&n) => n,
        Some(_) => {
            problems.push(
                format!("{key}.name"),
                "must be 1 to 256 printable ASCII characters without spaces",
            );
            return None;
        }
        None => {
            problems.push(format!("{key}.name"), "is required");
            return None;
        }
    };
    let token_sha256 = raw.token_sha256.and_then(|hex| {
        let hash = TokenHash::from_hex(&hex);
        if hash.is_none() {
            problems.push(
                format!("{key}.token_sha256"),
                "must be 64 hex digits: the output of `rotator token hash`",
            );
        }
        hash
    });
    let cert_identity = raw.cert_identity.filter(|c| {
        let ok = !c.is_empty() && c.len() <= MAX_NAME_LEN && !c.chars().any(char::is_control);
        if !ok {
            problems.push(
                format!("{key}.cert_identity"),
                "must be 1 to 256 characters without control characters",
            );
        }
        ok
    });
    if cert_identity.is_some() && tls.is_none_or(|t| t.client_ca_pem.is_none()) {
        problems.push(
            format!("{key}.cert_identity"),
            "needs mutual TLS: set tls.cert_file, tls.key_file and tls.client_ca_file",
        );
    }
    if token_sha256.is_none() && cert_identity.is_none() {
        problems.push(key.clone(), "needs token_sha256 or cert_identity (or both)");
    }
    let grants = raw
        .permissions
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(j, g)| validate_grant(&format!("{key}.permissions[{j}]"), g, problems))
        .collect();
    Some(IdentityConfig {
        name,
        token_sha256,
        cert_identity,
        policy: Policy { grants },
    })
}

fn validate_grant(key: &str, raw: RawGrant, problems: &mut Problems<'_>) -> Option<Grant> {
    let mut ok = true;
    let mut list = |field: &str, values: Option<Vec<String>>| -> Vec<String> {
        match values {
            Some(v) if !v.is_empty() => v,
            _ => {
                problems.push(format!("{key}.{field}"), "is required and may not be empty");
                ok = false;
                Vec::new()
            }
        }
    };
    let actions = list("actions", raw.actions);
    let types = list("types", raw.types);
    let rotations = list("rotations", raw.rotations);
    let actions: Vec<Action> = actions
        .iter()
        .filter_map(|a| {
            let parsed = Action::parse(a);
            if parsed.is_none() {
                problems.push(
                    format!("{key}.actions"),
                    format!("unknown action {a:?}: use rotate, read or read-credentials"),
                );
                ok = false;
            }
            parsed
        })
        .collect();
    let types: Vec<TypeScope> = types
        .iter()
        .filter_map(|t| {
            let parsed = TypeScope::parse(t);
            if parsed.is_none() {
                problems.push(
                    format!("{key}.types"),
                    format!("unknown rotation type {t:?}: use a slug such as postgres-credentials, or \"*\""),
                );
                ok = false;
            }
            parsed
        })
        .collect();
    let rotations: Vec<Pattern> = rotations
        .iter()
        .filter_map(|r| {
            let parsed = Pattern::parse(r);
            if parsed.is_none() {
                problems.push(
                    format!("{key}.rotations"),
                    "patterns are 1 to 256 printable ASCII characters without spaces",
                );
                ok = false;
            }
            parsed
        })
        .collect();
    ok.then_some(Grant {
        actions,
        types,
        rotations,
    })
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Two identities with one token or one certificate name would make a caller ambiguous.
fn check_unique(identities: &[IdentityConfig], problems: &mut Problems<'_>) {
    for (i, a) in identities.iter().enumerate() {
        for b in &identities[..i] {
            if a.name == b.name {
                problems.push(format!("auth.identities[{i}].name"), "is used twice");
            }
            if a.token_sha256.is_some() && a.token_sha256 == b.token_sha256 {
                problems.push(
                    format!("auth.identities[{i}].token_sha256"),
                    "is the same as another identity's",
                );
            }
            if a.cert_identity.is_some() && a.cert_identity == b.cert_identity {
                problems.push(
                    format!("auth.identities[{i}].cert_identity"),
                    "is the same as another identity's",
                );
            }
        }
    }
}

pub(super) fn validate_network(raw: RawNetwork) -> NetworkConfig {
    NetworkConfig {
        address_policy: if raw.deny_private_addresses.unwrap_or(false) {
            AddressPolicy::PublicOnly
        } else {
            AddressPolicy::Any
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError, Env};
    use super::*;

    const HASH: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn load(toml: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(toml, &Env::new())
    }

    fn keys(err: &ConfigError) -> Vec<&str> {
        err.0.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn the_embedded_defaults_are_open_on_loopback_only() {
        let config = load("").expect("defaults");
        assert_eq!(config.auth.mode, AuthMode::Open);
        assert!(config.auth.open_health && config.auth.open_reflection);
        assert!(config.tls.is_none());
        assert_eq!(config.network.address_policy, AddressPolicy::Any);
        let err = load("listen = \"0.0.0.0:50051\"").expect_err("no identities");
        assert_eq!(keys(&err), ["auth.identities"]);
        let err = load("listen = \"0.0.0.0:50051\"\n[auth]\nmode = \"open\"").expect_err("open");
        assert_eq!(keys(&err), ["auth.mode"]);
    }

    #[test]
    fn identities_switch_enforcement_on() {
        let config = load(&format!(
            r#"
            [[auth.identities]]
            name = "ci"
            token_sha256 = "{HASH}"
            [[auth.identities.permissions]]
            actions = ["rotate", "read"]
            types = ["postgres-credentials", "*"]
            rotations = ["pg-*"]
            "#
        ))
        .expect("valid");
        assert_eq!(config.auth.mode, AuthMode::Enforce);
        let identity = &config.auth.identities[0];
        assert_eq!(identity.name, "ci");
        assert_eq!(
            identity.policy.grants[0].actions,
            [Action::Rotate, Action::Read]
        );
        assert!(!format!("{config:?}").contains(HASH));
    }

    #[test]
    fn every_identity_problem_is_reported_by_key() {
        let err = load(
            r#"
            listen = "0.0.0.0:50051"
            [[auth.identities]]
            name = "a"
            token_sha256 = "not-hex"
            [[auth.identities.permissions]]
            actions = ["rotate", "delete"]
            types = ["nosuch-type"]
            rotations = []
            [[auth.identities]]
            name = "b b"
            [[auth.identities]]
            name = "c"
            cert_identity = "spiffe://example.test/c"
            "#,
        )
        .expect_err("invalid");
        assert_eq!(
            keys(&err),
            [
                "auth.identities[0].token_sha256",
                "auth.identities[0]",
                "auth.identities[0].permissions[0].rotations",
                "auth.identities[0].permissions[0].actions",
                "auth.identities[0].permissions[0].types",
                "auth.identities[1].name",
                "auth.identities[2].cert_identity",
            ]
        );
        assert!(!err.to_string().contains("not-hex"));
    }

    #[test]
    fn duplicate_tokens_and_names_are_refused() {
        let err = load(&format!(
            r#"
            [[auth.identities]]
            name = "a"
            token_sha256 = "{HASH}"
            [[auth.identities]]
            name = "a"
            token_sha256 = "{}"
            "#,
            HASH.to_uppercase()
        ))
        .expect_err("duplicates");
        assert_eq!(
            keys(&err),
            ["auth.identities[1].name", "auth.identities[1].token_sha256"]
        );
    }

    #[test]
    fn tokens_never_cross_a_network_in_plaintext_unless_allowed() {
        let toml = |allow: bool| {
            format!(
                "listen = \"0.0.0.0:1\"\n[auth]\nallow_plaintext_tokens = {allow}\n\
                 [[auth.identities]]\nname = \"a\"\ntoken_sha256 = \"{HASH}\"\n"
            )
        };
        let err = load(&toml(false)).expect_err("plaintext");
        assert_eq!(keys(&err), ["auth.allow_plaintext_tokens"]);
        load(&toml(true)).expect("explicitly allowed");
    }

    #[test]
    fn environment_booleans_are_typed() {
        let env: Env = [
            ("ROTATOR_AUTH_OPEN_HEALTH", "false"),
            ("ROTATOR_NETWORK_DENY_PRIVATE_ADDRESSES", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = Config::from_toml_str("", &env).expect("valid");
        assert!(!config.auth.open_health);
        assert_eq!(config.network.address_policy, AddressPolicy::PublicOnly);
    }

    #[test]
    fn tls_files_are_read_checked_and_the_key_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.display().to_string()
        };
        let cert_file = write("cert.pem", &cert.pem());
        let key_file = write("key.pem", &key.serialize_pem());
        let junk = write("junk.pem", "not pem");
        let config = load(&format!(
            "[tls]\ncert_file = \"{cert_file}\"\nkey_file = \"{key_file}\"\n\
             client_ca_file = \"{cert_file}\"\nclient_auth_optional = true\n"
        ))
        .expect("valid");
        let tls = config.tls.as_ref().expect("tls");
        assert!(tls.client_auth_optional && tls.client_ca_pem.is_some());
        let secret_line = key.serialize_pem();
        let secret_line = secret_line.lines().nth(1).expect("a base64 line");
        assert!(!format!("{config:?}").contains(secret_line));

        let err = load(&format!(
            "[tls]\ncert_file = \"{junk}\"\nkey_file = \"{junk}\"\nclient_ca_file = \"{junk}\"\n"
        ))
        .expect_err("junk");
        assert_eq!(
            keys(&err),
            ["tls.cert_file", "tls.key_file", "tls.client_ca_file"]
        );
        let err = load(&format!("[tls]\ncert_file = \"{cert_file}\"\n")).expect_err("no key");
        assert_eq!(keys(&err), ["tls.key_file"]);
        let err = load("[tls]\nclient_auth_optional = true\n").expect_err("alone");
        assert_eq!(keys(&err), ["tls.client_auth_optional"]);
    }

    #[test]
    fn a_mistyped_secret_is_named_by_key_and_never_quoted() {
        let err = load("[infisical]\nurl = \"http://x\"\nclient_id = \"a\"\nclient_secret = 982451653\n[nats]\nurl = \"nats://x\"\ntoken = [\"s3cr3t-in-a-list\"]\n")
            .expect_err("mistyped");
        assert_eq!(keys(&err), ["infisical.client_secret", "nats.token"]);
        let shown = err.to_string();
        assert!(
            !shown.contains("982451653") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_keys_in_the_security_sections_are_refused() {
        for toml in [
            "[auth]\nmodee = \"open\"",
            "[tls]\ncert = \"x\"",
            "[network]\ndeny_private = true",
            "[[auth.identities]]\nname = \"a\"\ntoken = \"x\"",
        ] {
            assert!(load(toml).is_err(), "{toml}");
        }
    }
}
