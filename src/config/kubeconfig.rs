//! kubeconfig files (`kubectl config view` format): the chosen context's cluster (server, CA
//! file or data) and user (token, token file, or client certificate and key, as files or data).
//! Relative file names are relative to the kubeconfig's directory, as kubectl reads them.
//! Users that run a plugin (`exec`, `auth-provider`) or send a password are refused by name.
//!
//! The YAML is parsed into a tree (yaml-rust2), turned into JSON values and read with serde;
//! errors say where, never what a field held.
//!
//! Read when the configuration is (a file that exists must resolve, problems reported by key)
//! and again on every delivery by the `kubernetes-secret` sink (`crate::delivery::kubernetes`),
//! so a rotated token or certificate is picked up without a reload.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::secret::SecretString;

/// Why a kubeconfig cannot be used: the file and what is missing, unreadable or unsupported;
/// never a value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KubeconfigError(pub String);

/// What a kubeconfig context resolves to.
pub struct Resolved {
    /// The server URL.
    pub server: String,
    /// The cluster's CA certificates (PEM); `None` trusts the platform's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// How the user authenticates.
    pub user: ClientAuth,
}

/// A user's credential.
pub enum ClientAuth {
    /// `Authorization: Bearer`.
    Token(SecretString),
    /// A TLS client certificate (PEM) and its key.
    Certificate {
        /// The certificate chain.
        cert_pem: Vec<u8>,
        /// The private key.
        key_pem: SecretString,
    },
    /// None (a `kubectl proxy` adds its own).
    None,
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    ca_file: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure: bool,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Deserialize, Default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    cert_file: Option<String>,
    #[serde(rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(rename = "client-key")]
    key_file: Option<String>,
    #[serde(rename = "client-key-data")]
    key_data: Option<String>,
    password: Option<String>,
    exec: Option<Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<Value>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
}

/// Reads the kubeconfig at `path` and resolves `context` (default its `current-context`).
///
/// # Errors
///
/// [`KubeconfigError`] naming the file and what is missing or unsupported.
pub fn resolve(path: &Path, context: Option<&str>) -> Result<Resolved, KubeconfigError> {
    let text = read(path)?;
    let bad = |what: String| KubeconfigError(format!("kubeconfig {}: {what}", path.display()));
    let file = parse(&text).map_err(bad)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = match context {
        Some(name) => name.to_owned(),
        None => file
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("has no current-context; give the sink a `context`".into()))?,
    };
    let context = &file
        .contexts
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| bad(format!("has no context {name:?}")))?
        .context;
    let cluster = &file
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .ok_or_else(|| bad(format!("has no cluster {:?}", context.cluster)))?
        .cluster;
    if cluster.insecure {
        return Err(bad(format!(
            "cluster {:?} sets insecure-skip-tls-verify, which rotator refuses; give its \
             certificate-authority",
            context.cluster
        )));
    }
    if cluster.tls_server_name.is_some() {
        return Err(bad(format!(
            "cluster {:?} sets tls-server-name, which rotator does not support",
            context.cluster
        )));
    }
    let ca_pem = match (&cluster.ca_data, &cluster.ca_file) {
        (Some(data), _) => Some(
            decode(data).map_err(|()| bad("certificate-authority-data is not base64".into()))?,
        ),
        (None, Some(file)) => Some(read(&relative(dir, file))?.into_bytes()),
        (None, None) => None,
    };
    let user = if context.user.is_empty() {
        ClientAuth::None
    } else {
        let user = &file
            .users
            .iter()
            .find(|u| u.name == context.user)
            .ok_or_else(|| bad(format!("has no user {:?}", context.user)))?
            .user;
        client_auth(user, dir).map_err(|what| bad(format!("user {:?} {what}", context.user)))?
    };
    Ok(Resolved {
        server: cluster.server.clone(),
        ca_pem,
        user,
    })
}

/// The user's credential; the error says what is wrong (never a value).
fn client_auth(user: &User, dir: &Path) -> Result<ClientAuth, String> {
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(
            "runs a credential plugin (exec / auth-provider), which rotator does not \
                    support; use a service-account token or a client certificate"
                .into(),
        );
    }
    if user.password.is_some() {
        return Err("authenticates with a password, which rotator does not support".into());
    }
    let file_or_data = |data: &Option<String>, file: &Option<String>, what: &str| match (data, file)
    {
        (Some(data), _) => decode(data)
            .map(Some)
            .map_err(|()| format!("has {what}-data that is not base64")),
        (None, Some(file)) => read(&relative(dir, file))
            .map(|t| Some(t.into_bytes()))
            .map_err(|e| e.to_string()),
        (None, None) => Ok(None),
    };
    let cert = file_or_data(&user.cert_data, &user.cert_file, "client-certificate")?;
    let key = file_or_data(&user.key_data, &user.key_file, "client-key")?;
    match (cert, key) {
        (Some(cert_pem), Some(key)) => {
            let key = String::from_utf8(key)
                .map_err(|_| "has a client key that is not PEM text".to_owned())?;
            return Ok(ClientAuth::Certificate {
                cert_pem,
                key_pem: SecretString::new(key),
            });
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("needs both a client certificate and its key".into());
        }
        (None, None) => {}
    }
    let token = match (&user.token, &user.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(file)) => read(&relative(dir, file)).map_err(|e| e.to_string())?,
        (None, None) => return Ok(ClientAuth::None),
    };
    let token = token.trim();
    if token.is_empty() {
        return Err("has an empty token".into());
    }
    Ok(ClientAuth::Token(SecretString::new(token)))
}

/// A file's text; the error names the file and the OS reason only.
///
/// # Errors
///
/// [`KubeconfigError`] when the file cannot be read as text.
pub fn read(path: &Path) -> Result<String, KubeconfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| KubeconfigError(format!("cannot read {}: {}", path.display(), e.kind())))
}

fn relative(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}

fn decode(data: &str) -> Result<Vec<u8>, ()> {
    let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(drop)
}

/// The kubeconfig's text read; the error gives the position of a syntax error or the missing
/// field, never a value.
fn parse(text: &str) -> Result<File, String> {
    let documents = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| {
        format!(
            "is not YAML (line {}, column {})",
            e.marker().line(),
            e.marker().col() + 1
        )
    })?;
    let document = documents
        .into_iter()
        .next()
        .ok_or_else(|| "is empty".to_owned())?;
    serde_json::from_value(json(document)).map_err(|e| {
        let text = e.to_string();
        // serde's "invalid type" messages quote the value found; only missing fields are said.
        match text.find("missing field") {
            Some(at) => format!("is not a kubeconfig: {}", &text[at..]),
            None => "is not a kubeconfig: a field has the wrong type".to_owned(),
        }
    })
}

/// A YAML tree as JSON; numbers become their text (kubeconfig fields are strings).
fn json(yaml: yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Real(text) | Yaml::String(text) => Value::String(text),
        Yaml::Integer(n) => Value::String(n.to_string()),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Array(items) => Value::Array(items.into_iter().map(json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| match json(k) {
                    Value::String(k) => Some((k, json(v))),
                    _ => None,
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod-cluster
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: LS0tLS1CRUdJTg==
- name: dev-cluster
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: ca.crt
contexts:
- name: prod
  context: {cluster: prod-cluster, user: deployer, namespace: app}
- name: dev
  context:
    cluster: dev-cluster
    user: plugin
users:
- name: deployer
  user:
    token: tok-secret-123
- name: plugin
  user:
    exec:
      command: aws
      args: [eks, get-token]
"#;

    #[test]
    fn the_current_context_resolves_and_plugins_are_refused_without_values() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).expect("write");
        std::fs::write(dir.path().join("ca.crt"), "PEM").expect("write");
        let prod = resolve(&path, None).expect("prod");
        assert_eq!(prod.server, "https://10.0.0.1:6443");
        assert_eq!(prod.ca_pem.as_deref(), Some(&b"-----BEGIN"[..]));
        assert!(matches!(prod.user, ClientAuth::Token(ref t) if t.expose() == "tok-secret-123"));
        let Err(error) = resolve(&path, Some("dev")) else {
            panic!("a plugin user is refused")
        };
        assert!(error.to_string().contains("credential plugin"), "{error}");
        let Err(error) = resolve(&path, Some("staging")) else {
            panic!("no such context")
        };
        assert!(error.to_string().contains("no context \"staging\""));
    }

    #[test]
    fn wrong_types_and_syntax_errors_never_quote_a_value() {
        let wrong = "clusters: [{name: c, cluster: {server: [tok-secret-456]}}]";
        let Err(error) = parse(wrong) else {
            panic!("wrong type")
        };
        assert!(!error.contains("tok-secret-456"), "{error}");
        let Err(error) = parse("users: [ {name: \"tok-secret-789") else {
            panic!("bad yaml")
        };
        assert!(!error.contains("tok-secret-789"), "{error}");
    }
}
