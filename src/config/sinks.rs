//! The `sinks` of a rotation: where its mapped secrets go after each commit (docs/delivery.md).
//!
//! Grammar only, like the rest of the registry: each sink is checked here (kind, path, mode,
//! owner, command, template placeholders) and problems are reported by key path, never by value.
//! What a sink does is `crate::delivery`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigProblem, Env};
use crate::secret::SecretString;

/// The default file mode: owner read/write only.
pub const DEFAULT_MODE: u32 = 0o600;
/// How long an exec sink may run unless `timeout_seconds` says otherwise.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `timeout_seconds`.
const MAX_EXEC_TIMEOUT_SECONDS: u64 = 3600;
/// Where a pod's service-account token, CA certificate and namespace are mounted.
pub const DEFAULT_SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// One configured sink of a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    /// Unique within the rotation: `name`, or `<kind>:<path | program | secret_id>`. Delivery
    /// state is kept per name, so renaming a sink delivers the current version to it again.
    pub name: String,
    /// What it is.
    pub kind: SinkKind,
}

/// The kinds of sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// A file written atomically (temporary file, fsync, rename, fsync of the directory).
    File(FileSink),
    /// A command that reads the values on its stdin.
    Exec(ExecSink),
    /// An AWS Secrets Manager secret (`PutSecretValue`).
    AwsSecretsManager(AwsSecretsManagerSink),
    /// Secrets in an Infisical project, environment and folder (batch upsert).
    Infisical(InfisicalSink),
    /// A Kubernetes Secret, optionally with Deployments restarted after it changes.
    KubernetesSecret(KubernetesSecretSink),
}

/// How the mapped secrets are rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `NAME=value` lines, as systemd's `EnvironmentFile=` reads them.
    Env,
    /// `NAME="value"` lines with `\\ \" \n \$` escaped, as dotenv libraries read them.
    Dotenv,
    /// One JSON object `{"NAME": "value", ...}`.
    Json,
    /// The text with every `{{NAME}}` replaced by that secret's value.
    Template(String),
}

/// A file sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Its content.
    pub format: Format,
    /// Permission bits (default 0600).
    pub mode: u32,
    /// Owner and group ids to give the file, resolved from `owner` when the config is read.
    pub owner: Option<Owner>,
}

/// A file's owner (`owner = "user"`, `"user:group"`, `":group"` or numeric ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The user id; `None` keeps rotator's.
    pub uid: Option<u32>,
    /// The group id; `None` keeps the default.
    pub gid: Option<u32>,
}

/// An exec sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSink {
    /// The program and its arguments (never a secret: the values go to stdin).
    pub command: Vec<String>,
    /// What stdin holds (default JSON).
    pub format: Format,
    /// Killed (with its process group) after this long.
    pub timeout: Duration,
}

/// An AWS Secrets Manager sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSecretsManagerSink {
    /// The secret's name or ARN; created on first delivery when absent.
    pub secret_id: String,
    /// Its region.
    pub region: String,
    /// The endpoint URL; default `https://secretsmanager.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    /// The access key id rotator signs with.
    pub access_key_id: SecretString,
    /// Its secret access key.
    pub secret_access_key: SecretString,
}

/// An Infisical sink: each mapped secret becomes a secret of one folder of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfisicalSink {
    /// The project's id.
    pub project_id: String,
    /// The environment's slug, e.g. `prod`.
    pub environment: String,
    /// The folder, e.g. `/` or `/app/db`; it must exist.
    pub secret_path: String,
    /// Infisical's key for each `secrets_mapping` name that is renamed; the others keep theirs.
    pub rename: BTreeMap<String, String>,
    /// The machine identity to write with; `None`: the service's own `[infisical]` identity.
    pub identity: Option<InfisicalIdentity>,
}

/// A Universal Auth machine identity of its own for one Infisical sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfisicalIdentity {
    /// The identity's client id.
    pub client_id: String,
    /// Its client secret (from an `env:`/`file:` reference).
    pub client_secret: SecretString,
}

// === impl InfisicalSink ===

impl InfisicalSink {
    /// Infisical's key for the mapped secret `name`.
    pub fn key_of<'a>(&'a self, name: &'a str) -> &'a str {
        self.rename.get(name).map_or(name, String::as_str)
    }
}

/// A `kubernetes-secret` sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSecretSink {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name; created on first delivery when absent.
    pub secret_name: String,
    /// What goes into the Secret's `data`.
    pub data: KubernetesData,
    /// Deployments (same namespace) whose pod template is annotated after the Secret changed,
    /// as `kubectl rollout restart` does.
    pub restart_deployments: Vec<String>,
    /// How rotator reaches and authenticates to the API server.
    pub auth: KubernetesAuth,
}

/// The data keys a `kubernetes-secret` sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubernetesData {
    /// One data key per mapped secret: mapped name → data key (`keys` renames, default the
    /// mapped name itself).
    Keys(BTreeMap<String, String>),
    /// All mapped secrets rendered in `format` under the one data key `key`.
    Rendered {
        /// The data key.
        key: String,
        /// Its content.
        format: Format,
    },
}

/// How a `kubernetes-secret` sink authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubernetesAuth {
    /// The pod's service account: the token (re-read on every call, the kubelet rotates it) and
    /// `ca.crt` in `dir`, the API server from `KUBERNETES_SERVICE_HOST`/`_PORT`.
    InCluster {
        /// The mounted service-account directory.
        dir: PathBuf,
        /// `KUBERNETES_SERVICE_HOST` when the configuration was read.
        host: Option<String>,
        /// `KUBERNETES_SERVICE_PORT` when the configuration was read.
        port: Option<String>,
    },
    /// A kubeconfig file, re-read on every delivery.
    Kubeconfig {
        /// Absolute path of the file.
        path: PathBuf,
        /// The context to use; default the file's `current-context`.
        context: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: Option<String>,
    kind: String,
    path: Option<String>,
    format: Option<String>,
    template: Option<String>,
    mode: Option<String>,
    owner: Option<String>,
    command: Option<Vec<String>>,
    timeout_seconds: Option<u64>,
    secret_id: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    project_id: Option<String>,
    environment: Option<String>,
    secret_path: Option<String>,
    rename: Option<BTreeMap<String, String>>,
    client_id: Option<String>,
    client_secret: Option<String>,
    namespace: Option<String>,
    secret_name: Option<String>,
    keys: Option<BTreeMap<String, String>>,
    key: Option<String>,
    restart_deployments: Option<Vec<String>>,
    kubeconfig: Option<String>,
    context: Option<String>,
    service_account_dir: Option<String>,
}

/// Reads a rotation's `sinks` array. `mapped` are the secret names of its `secrets_mapping`
/// (what a template may name). Problems go to `problems` under `key.sinks[i]`.
pub fn read(
    values: Vec<toml::Value>,
    key: &str,
    mapped: &BTreeSet<String>,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<SinkSpec> {
    let mut sinks: Vec<SinkSpec> = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let key = format!("{key}.sinks[{i}]");
        let raw: RawSink = match value.try_into() {
            Ok(raw) => raw,
            Err(e) => {
                push(
                    problems,
                    &key,
                    super::schema::describe_serde_error(e.message()),
                );
                continue;
            }
        };
        let Some(sink) = sink(raw, &key, mapped, env, problems) else {
            continue;
        };
        if sinks.iter().any(|s| s.name == sink.name) {
            push(
                problems,
                &format!("{key}.name"),
                format!(
                    "another sink of this rotation is named {:?}; give each a `name`",
                    sink.name
                ),
            );
        } else {
            sinks.push(sink);
        }
    }
    sinks
}

fn sink(
    raw: RawSink,
    key: &str,
    mapped: &BTreeSet<String>,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SinkSpec> {
    let before = problems.len();
    let field = |name: &str| format!("{key}.{name}");
    let allowed: &[&str] = match raw.kind.as_str() {
        "file" => &["path", "format", "template", "mode", "owner"],
        "exec" => &["command", "format", "template", "timeout_seconds"],
        "aws-secrets-manager" => &[
            "secret_id",
            "region",
            "endpoint",
            "access_key_id",
            "secret_access_key",
        ],
        "infisical" => &[
            "project_id",
            "environment",
            "secret_path",
            "rename",
            "client_id",
            "client_secret",
        ],
        "kubernetes-secret" => &[
            "namespace",
            "secret_name",
            "keys",
            "key",
            "format",
            "template",
            "restart_deployments",
            "kubeconfig",
            "context",
            "service_account_dir",
        ],
        _ => {
            push(
                problems,
                &field("kind"),
                "must be file, exec, aws-secrets-manager, infisical or kubernetes-secret".into(),
            );
            return None;
        }
    };
    let given = [
        ("path", raw.path.is_some()),
        ("format", raw.format.is_some()),
        ("template", raw.template.is_some()),
        ("mode", raw.mode.is_some()),
        ("owner", raw.owner.is_some()),
        ("command", raw.command.is_some()),
        ("timeout_seconds", raw.timeout_seconds.is_some()),
        ("secret_id", raw.secret_id.is_some()),
        ("region", raw.region.is_some()),
        ("endpoint", raw.endpoint.is_some()),
        ("access_key_id", raw.access_key_id.is_some()),
        ("secret_access_key", raw.secret_access_key.is_some()),
        ("project_id", raw.project_id.is_some()),
        ("environment", raw.environment.is_some()),
        ("secret_path", raw.secret_path.is_some()),
        ("rename", raw.rename.is_some()),
        ("client_id", raw.client_id.is_some()),
        ("client_secret", raw.client_secret.is_some()),
        ("namespace", raw.namespace.is_some()),
        ("secret_name", raw.secret_name.is_some()),
        ("keys", raw.keys.is_some()),
        ("key", raw.key.is_some()),
        ("restart_deployments", raw.restart_deployments.is_some()),
        ("kubeconfig", raw.kubeconfig.is_some()),
        ("context", raw.context.is_some()),
        ("service_account_dir", raw.service_account_dir.is_some()),
    ];
    for (name, present) in given {
        if present && !allowed.contains(&name) {
            push(
                problems,
                &field(name),
                format!("is not a key of a {} sink", raw.kind),
            );
        }
    }
    let (kind, default_name) = match raw.kind.as_str() {
        "file" => {
            let path = required(raw.path, &field("path"), problems).map(PathBuf::from);
            if let Some(path) = &path
                && !path.is_absolute()
            {
                push(problems, &field("path"), "must be an absolute path".into());
            }
            let format = format(raw.format, raw.template, "env", key, mapped, problems);
            let mode = match raw.mode.as_deref().map(parse_mode) {
                None => DEFAULT_MODE,
                Some(Some(mode)) => mode,
                Some(None) => {
                    push(
                        problems,
                        &field("mode"),
                        "must be octal permission bits, e.g. \"0600\" or \"0640\"".into(),
                    );
                    DEFAULT_MODE
                }
            };
            let owner = raw.owner.as_deref().and_then(|text| {
                parse_owner(text)
                    .map_err(|reason| push(problems, &field("owner"), reason))
                    .ok()
            });
            let path = path?;
            let name = format!("file:{}", path.display());
            (
                SinkKind::File(FileSink {
                    path,
                    format: format?,
                    mode,
                    owner,
                }),
                name,
            )
        }
        "exec" => {
            let command = raw.command.unwrap_or_default();
            if command.first().is_none_or(String::is_empty) {
                push(
                    problems,
                    &field("command"),
                    "must name a program: [\"/path/to/program\", \"arg\", ...]".into(),
                );
            }
            let timeout_seconds = raw
                .timeout_seconds
                .unwrap_or(DEFAULT_EXEC_TIMEOUT.as_secs());
            if !(1..=MAX_EXEC_TIMEOUT_SECONDS).contains(&timeout_seconds) {
                push(
                    problems,
                    &field("timeout_seconds"),
                    format!("must be 1–{MAX_EXEC_TIMEOUT_SECONDS}"),
                );
            }
            let format = format(raw.format, raw.template, "json", key, mapped, problems);
            let name = format!("exec:{}", command.first().cloned().unwrap_or_default());
            (
                SinkKind::Exec(ExecSink {
                    command,
                    format: format?,
                    timeout: Duration::from_secs(timeout_seconds),
                }),
                name,
            )
        }
        "infisical" => {
            let sink = infisical(
                InfisicalFields {
                    project_id: raw.project_id,
                    environment: raw.environment,
                    secret_path: raw.secret_path,
                    rename: raw.rename,
                    client_id: raw.client_id,
                    client_secret: raw.client_secret,
                },
                key,
                mapped,
                env,
                problems,
            )?;
            let name = format!(
                "infisical:{}/{}{}",
                sink.project_id, sink.environment, sink.secret_path
            );
            (SinkKind::Infisical(sink), name)
        }
        "kubernetes-secret" => {
            let fields = RawKubernetes {
                namespace: raw.namespace,
                secret_name: raw.secret_name,
                keys: raw.keys,
                key: raw.key,
                format: raw.format,
                template: raw.template,
                restart_deployments: raw.restart_deployments,
                kubeconfig: raw.kubeconfig,
                context: raw.context,
                service_account_dir: raw.service_account_dir,
            };
            let sink = kubernetes_secret(fields, key, mapped, env, problems)?;
            let name = format!("kubernetes-secret:{}/{}", sink.namespace, sink.secret_name);
            (SinkKind::KubernetesSecret(sink), name)
        }
        _ => {
            let secret_id = required(raw.secret_id, &field("secret_id"), problems);
            let region = raw.region.unwrap_or_else(|| "us-east-1".to_owned());
            let reference = |name: &str, value: Option<String>, problems: &mut _| {
                let value = required(value, &field(name), problems)?;
                super::registry::secret_reference(&field(name), value, env, problems)
            };
            let access_key_id = reference("access_key_id", raw.access_key_id, problems);
            let secret_access_key = reference("secret_access_key", raw.secret_access_key, problems);
            let secret_id = secret_id?;
            let name = format!("aws-secrets-manager:{secret_id}");
            (
                SinkKind::AwsSecretsManager(AwsSecretsManagerSink {
                    secret_id,
                    region,
                    endpoint: raw.endpoint,
                    access_key_id: access_key_id?,
                    secret_access_key: secret_access_key?,
                }),
                name,
            )
        }
    };
    if problems.len() > before {
        return None;
    }
    let name = raw.name.unwrap_or(default_name);
    if name.is_empty() || name.len() > 200 {
        push(problems, &field("name"), "must be 1–200 characters".into());
        return None;
    }
    Some(SinkSpec { name, kind })
}

/// The keys of an `infisical` sink.
struct InfisicalFields {
    project_id: Option<String>,
    environment: Option<String>,
    secret_path: Option<String>,
    rename: Option<BTreeMap<String, String>>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn infisical(
    raw: InfisicalFields,
    key: &str,
    mapped: &BTreeSet<String>,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<InfisicalSink> {
    let field = |name: &str| format!("{key}.{name}");
    let project_id = required(raw.project_id, &field("project_id"), problems);
    let environment = required(raw.environment, &field("environment"), problems);
    if let Some(slug) = &environment
        && !slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        push(
            problems,
            &field("environment"),
            "must be an environment slug, e.g. \"prod\"".into(),
        );
    }
    let secret_path = raw.secret_path.unwrap_or_else(|| "/".to_owned());
    let secret_path = match secret_path.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    };
    if !secret_path.starts_with('/') || secret_path.contains("//") {
        push(
            problems,
            &field("secret_path"),
            "must be a folder path starting with /, e.g. \"/\" or \"/app/db\"".into(),
        );
    }
    let rename = raw.rename.unwrap_or_default();
    for (name, to) in &rename {
        if !mapped.contains(name) {
            push(
                problems,
                &format!("{key}.rename.{name}"),
                format!(
                    "names a secret not in secrets_mapping ({})",
                    mapped.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        } else if !is_secret_key(to) {
            push(
                problems,
                &format!("{key}.rename.{name}"),
                "must be an Infisical secret key: no spaces, no / or :, at most 255 characters"
                    .into(),
            );
        }
    }
    let mut keys = BTreeSet::new();
    for name in mapped {
        let to = rename.get(name).unwrap_or(name);
        if !keys.insert(to) {
            push(
                problems,
                &field("rename"),
                format!("two secrets would both be written to the key {to:?}"),
            );
        }
    }
    let identity = match (raw.client_id, raw.client_secret) {
        (None, None) => None,
        (client_id, client_secret) => {
            let client_id = required(client_id, &field("client_id"), problems);
            let client_secret = required(client_secret, &field("client_secret"), problems)
                .and_then(|r| {
                    super::registry::secret_reference(&field("client_secret"), r, env, problems)
                });
            Some(InfisicalIdentity {
                client_id: client_id?,
                client_secret: client_secret?,
            })
        }
    };
    Some(InfisicalSink {
        project_id: project_id?,
        environment: environment?,
        secret_path,
        rename,
        identity,
    })
}

/// The problems of `infisical` sinks in a configuration without `[infisical]`: every Infisical
/// sink talks to the service's Infisical (its URL and CA), with its identity or one of its own.
pub fn infisical_without_upstream(registry: &super::registry::Registry) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for rotation in &registry.rotations {
        for (i, sink) in rotation.sinks().iter().enumerate() {
            if matches!(sink.kind, SinkKind::Infisical(_)) {
                push(
                    &mut problems,
                    &format!("{}.sinks[{i}].kind", rotation.key()),
                    "an infisical sink needs the [infisical] section (url and identity)".into(),
                );
            }
        }
    }
    problems
}

/// What Infisical accepts as a secret key (its API trims them; a space, `/` or `:` is refused).
fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 255
        && !key
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == ':')
}

/// The keys of a `kubernetes-secret` sink, taken out of [`RawSink`].
struct RawKubernetes {
    namespace: Option<String>,
    secret_name: Option<String>,
    keys: Option<BTreeMap<String, String>>,
    key: Option<String>,
    format: Option<String>,
    template: Option<String>,
    restart_deployments: Option<Vec<String>>,
    kubeconfig: Option<String>,
    context: Option<String>,
    service_account_dir: Option<String>,
}

/// Checks a `kubernetes-secret` sink: object names as the API server would (DNS-1123), data
/// keys, the mapping against `secrets_mapping`, and one way to authenticate. Problems name the
/// key; only names (never values) are quoted.
fn kubernetes_secret(
    raw: RawKubernetes,
    key: &str,
    mapped: &BTreeSet<String>,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<KubernetesSecretSink> {
    let before = problems.len();
    let field = |name: &str| format!("{key}.{name}");
    let namespace = required(raw.namespace, &field("namespace"), problems);
    if let Some(ns) = &namespace
        && !is_dns_label(ns)
    {
        push(
            problems,
            &field("namespace"),
            "must be a DNS-1123 label: at most 63 of a-z, 0-9 and '-', starting and ending \
             with a letter or digit"
                .into(),
        );
    }
    let secret_name = required(raw.secret_name, &field("secret_name"), problems);
    if let Some(name) = &secret_name
        && !is_dns_subdomain(name)
    {
        push(
            problems,
            &field("secret_name"),
            "must be a DNS-1123 subdomain: at most 253 of a-z, 0-9, '-' and '.', starting and \
             ending with a letter or digit"
                .into(),
        );
    }
    let data = match (raw.key, raw.keys) {
        (Some(_), Some(_)) => {
            push(
                problems,
                &field("keys"),
                "cannot be given with `key`: either one data key per secret (`keys`) or all \
                 rendered under one (`key` with `format`)"
                    .into(),
            );
            None
        }
        (Some(data_key), None) => {
            if !is_data_key(&data_key) {
                push(problems, &field("key"), DATA_KEY_RULE.into());
            }
            let format = format(raw.format, raw.template, "env", key, mapped, problems);
            format.map(|format| KubernetesData::Rendered {
                key: data_key,
                format,
            })
        }
        (None, keys) => {
            if raw.format.is_some() || raw.template.is_some() {
                let which = if raw.format.is_some() {
                    "format"
                } else {
                    "template"
                };
                push(
                    problems,
                    &field(which),
                    "is only read with `key` (the data key that holds the rendered secrets)".into(),
                );
            }
            let keys = keys.unwrap_or_default();
            let mut out = BTreeMap::new();
            for (name, data_key) in &keys {
                let at = field(&format!("keys.{name}"));
                if !mapped.contains(name) {
                    push(
                        problems,
                        &at,
                        format!(
                            "is not a name in secrets_mapping ({})",
                            mapped.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                } else if !is_data_key(data_key) {
                    push(problems, &at, DATA_KEY_RULE.into());
                }
            }
            for name in mapped {
                let data_key = keys.get(name).unwrap_or(name);
                if !keys.contains_key(name) && !is_data_key(data_key) {
                    push(
                        problems,
                        &field("keys"),
                        format!("must rename {name}: {DATA_KEY_RULE}"),
                    );
                }
                if let Some((other, _)) = out.iter().find(|(_, k)| *k == data_key) {
                    push(
                        problems,
                        &field("keys"),
                        format!("maps both {other} and {name} to one data key"),
                    );
                }
                out.insert(name.clone(), data_key.clone());
            }
            Some(KubernetesData::Keys(out))
        }
    };
    let restart_deployments = raw.restart_deployments.unwrap_or_default();
    for (i, name) in restart_deployments.iter().enumerate() {
        if !is_dns_subdomain(name) {
            push(
                problems,
                &field(&format!("restart_deployments[{i}]")),
                "must be a Deployment name (a DNS-1123 subdomain)".into(),
            );
        }
    }
    let auth = match (raw.kubeconfig, raw.service_account_dir) {
        (Some(_), Some(_)) => {
            push(
                problems,
                &field("service_account_dir"),
                "is for in-cluster authentication and cannot be given with `kubeconfig`".into(),
            );
            None
        }
        (Some(path), None) => {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                push(
                    problems,
                    &field("kubeconfig"),
                    "must be an absolute path".into(),
                );
            }
            if raw.context.as_deref() == Some("") {
                push(problems, &field("context"), "must not be empty".into());
            } else if path.is_absolute() && path.exists() {
                // Read again on every delivery; a file that is there now must already work.
                if let Err(e) = super::kubeconfig::resolve(&path, raw.context.as_deref()) {
                    push(problems, &field("kubeconfig"), e.to_string());
                }
            }
            Some(KubernetesAuth::Kubeconfig {
                path,
                context: raw.context,
            })
        }
        (None, dir) => {
            if raw.context.is_some() {
                push(
                    problems,
                    &field("context"),
                    "is only read with `kubeconfig`".into(),
                );
            }
            let dir = PathBuf::from(dir.unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT_DIR.to_owned()));
            if !dir.is_absolute() {
                push(
                    problems,
                    &field("service_account_dir"),
                    "must be an absolute path".into(),
                );
            }
            Some(KubernetesAuth::InCluster {
                dir,
                host: env.get("KUBERNETES_SERVICE_HOST").cloned(),
                port: env.get("KUBERNETES_SERVICE_PORT").cloned(),
            })
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(KubernetesSecretSink {
        namespace: namespace?,
        secret_name: secret_name?,
        data: data?,
        restart_deployments,
        auth: auth?,
    })
}

const DATA_KEY_RULE: &str =
    "must be a Secret data key: at most 253 of a-z, A-Z, 0-9, '-', '_' and '.'";

/// A DNS-1123 label (namespaces): `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns_label(text: &str) -> bool {
    text.len() <= 63
        && !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// A DNS-1123 subdomain (most object names): dot-separated labels, at most 253 characters.
fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// A Secret data key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
fn is_data_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn required(value: Option<String>, key: &str, problems: &mut Vec<ConfigProblem>) -> Option<String> {
    match value {
        Some(v) if !v.is_empty() => Some(v),
        _ => {
            push(problems, key, "is required".into());
            None
        }
    }
}

fn format(
    format: Option<String>,
    template: Option<String>,
    default: &str,
    key: &str,
    mapped: &BTreeSet<String>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Format> {
    let format_key = format!("{key}.format");
    let name = format.unwrap_or_else(|| {
        if template.is_some() {
            "template".to_owned()
        } else {
            default.to_owned()
        }
    });
    let chosen = match (name.as_str(), template) {
        ("env", None) => Format::Env,
        ("dotenv", None) => Format::Dotenv,
        ("json", None) => Format::Json,
        ("template", Some(text)) => {
            let unknown: Vec<String> = placeholders(&text)
                .into_iter()
                .filter(|p| !mapped.contains(p))
                .collect();
            if !unknown.is_empty() {
                push(
                    problems,
                    &format!("{key}.template"),
                    format!(
                        "names {} not in secrets_mapping ({})",
                        unknown.join(", "),
                        mapped.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
                return None;
            }
            Format::Template(text)
        }
        ("template", None) => {
            push(
                problems,
                &format!("{key}.template"),
                "is required with format = \"template\"".into(),
            );
            return None;
        }
        ("env" | "dotenv" | "json", Some(_)) => {
            push(
                problems,
                &format!("{key}.template"),
                "is only read with format = \"template\"".into(),
            );
            return None;
        }
        _ => {
            push(
                problems,
                &format_key,
                "must be env, dotenv, json or template".into(),
            );
            return None;
        }
    };
    Some(chosen)
}

/// The names a template's `{{NAME}}` placeholders refer to (surrounding spaces ignored).
pub fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim().to_owned());
        rest = &after[end + 2..];
    }
    out
}

fn parse_mode(text: &str) -> Option<u32> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8).ok()?;
    (mode <= 0o7777 && !text.is_empty()).then_some(mode)
}

/// `user`, `user:group`, `:group`, or numeric ids, resolved through the system's user database.
fn parse_owner(text: &str) -> Result<Owner, String> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let uid = match user {
        "" => None,
        u if u.bytes().all(|b| b.is_ascii_digit()) => u.parse().ok(),
        u => match nix::unistd::User::from_name(u) {
            Ok(Some(found)) => Some(found.uid.as_raw()),
            _ => return Err(format!("no user named {u:?} on this system")),
        },
    };
    let gid = match group {
        None | Some("") => None,
        Some(g) if g.bytes().all(|b| b.is_ascii_digit()) => g.parse().ok(),
        Some(g) => match nix::unistd::Group::from_name(g) {
            Ok(Some(found)) => Some(found.gid.as_raw()),
            _ => return Err(format!("no group named {g:?} on this system")),
        },
    };
    if uid.is_none() && gid.is_none() {
        return Err("must name a user and/or a group: \"user\", \"user:group\", \":group\"".into());
    }
    Ok(Owner { uid, gid })
}

fn push(problems: &mut Vec<ConfigProblem>, key: &str, reason: String) {
    problems.push(ConfigProblem {
        key: key.to_owned(),
        reason,
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn read_one(text: &str) -> (Vec<SinkSpec>, Vec<ConfigProblem>) {
        let table: toml::Table = toml::from_str(text).expect("toml");
        let values = match table.get("sinks") {
            Some(toml::Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        let mapped: BTreeSet<String> = ["DB_USER".to_owned(), "DB_PASSWORD".to_owned()].into();
        let mut env = Env::new();
        env.insert("AK".into(), "AKIDEXAMPLE".into());
        env.insert("SK".into(), "sk-value".into());
        let mut problems = Vec::new();
        let sinks = read(values, "rotations[0]", &mapped, &env, &mut problems);
        (sinks, problems)
    }

    #[test]
    fn each_kind_reads_with_defaults() {
        let (sinks, problems) = read_one(
            r#"sinks = [
                { kind = "file", path = "/run/app/db.env" },
                { kind = "exec", command = ["/bin/systemctl", "reload", "app"] },
                { kind = "aws-secrets-manager", secret_id = "app/db", access_key_id = "env:AK", secret_access_key = "env:SK" },
            ]"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(sinks[0].name, "file:/run/app/db.env");
        let SinkKind::File(file) = &sinks[0].kind else {
            panic!("file")
        };
        assert_eq!(
            (file.mode, &file.format, file.owner),
            (0o600, &Format::Env, None)
        );
        let SinkKind::Exec(exec) = &sinks[1].kind else {
            panic!("exec")
        };
        assert_eq!(
            (exec.timeout, &exec.format),
            (DEFAULT_EXEC_TIMEOUT, &Format::Json)
        );
        assert_eq!(sinks[2].name, "aws-secrets-manager:app/db");
    }

    #[test]
    fn problems_are_named_by_key_and_never_quote_a_secret() {
        let (sinks, problems) = read_one(
            r#"sinks = [
                { kind = "file", path = "relative", mode = "0999", timeout_seconds = 3 },
                { kind = "exec", command = [], timeout_seconds = 0 },
                { kind = "file", path = "/a", template = "{{DB_USER}} {{NOPE}}" },
                { kind = "aws-secrets-manager", secret_id = "x", access_key_id = "AKIDLITERAL", secret_access_key = "env:SK" },
                { kind = "smoke" },
                { kind = "file", path = "/same" },
                { kind = "file", path = "/same" },
            ]"#,
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rotations[0].sinks[0].timeout_seconds",
                "rotations[0].sinks[0].path",
                "rotations[0].sinks[0].mode",
                "rotations[0].sinks[1].command",
                "rotations[0].sinks[1].timeout_seconds",
                "rotations[0].sinks[2].template",
                "rotations[0].sinks[3].access_key_id",
                "rotations[0].sinks[4].kind",
                "rotations[0].sinks[6].name",
            ]
        );
        assert!(
            problems.iter().all(|p| !p.reason.contains("AKIDLITERAL")),
            "{problems:?}"
        );
        assert_eq!(sinks.len(), 1);
    }

    #[test]
    fn an_infisical_sink_reads_with_defaults_renames_and_its_own_identity() {
        let (sinks, problems) = read_one(
            r#"sinks = [
                { kind = "infisical", project_id = "p1", environment = "prod" },
                { kind = "infisical", name = "own", project_id = "p1", environment = "dev", secret_path = "/app/db/", rename = { DB_PASSWORD = "PG_PASSWORD" }, client_id = "cid", client_secret = "env:SK" },
            ]"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(sinks[0].name, "infisical:p1/prod/");
        let SinkKind::Infisical(plain) = &sinks[0].kind else {
            panic!("infisical")
        };
        assert_eq!(
            (plain.secret_path.as_str(), plain.identity.is_none()),
            ("/", true)
        );
        assert_eq!(plain.key_of("DB_PASSWORD"), "DB_PASSWORD");
        let SinkKind::Infisical(own) = &sinks[1].kind else {
            panic!("infisical")
        };
        assert_eq!(own.secret_path, "/app/db");
        assert_eq!(own.key_of("DB_PASSWORD"), "PG_PASSWORD");
        assert_eq!(own.key_of("DB_USER"), "DB_USER");
        let identity = own.identity.as_ref().expect("identity");
        assert_eq!(
            (identity.client_id.as_str(), identity.client_secret.expose()),
            ("cid", "sk-value")
        );
    }

    #[test]
    fn infisical_sink_problems_are_named_by_key() {
        let (sinks, problems) = read_one(
            r#"sinks = [
                { kind = "infisical", environment = "a b", secret_path = "x", path = "/p" },
                { kind = "infisical", project_id = "p", environment = "e", rename = { DB_USER = "A B", OTHER = "X" } },
                { kind = "infisical", project_id = "p", environment = "e", rename = { DB_USER = "DB_PASSWORD" } },
                { kind = "infisical", project_id = "p", environment = "e", client_id = "c" },
                { kind = "infisical", project_id = "p", environment = "e", client_secret = "LITERAL-SECRET" },
            ]"#,
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rotations[0].sinks[0].path",
                "rotations[0].sinks[0].project_id",
                "rotations[0].sinks[0].environment",
                "rotations[0].sinks[0].secret_path",
                "rotations[0].sinks[1].rename.DB_USER",
                "rotations[0].sinks[1].rename.OTHER",
                "rotations[0].sinks[2].rename",
                "rotations[0].sinks[3].client_secret",
                "rotations[0].sinks[4].client_id",
                "rotations[0].sinks[4].client_secret",
            ]
        );
        assert!(
            problems
                .iter()
                .all(|p| !p.reason.contains("LITERAL-SECRET"))
        );
        assert!(sinks.is_empty());
    }

    #[test]
    fn owners_and_modes_parse() {
        assert_eq!(parse_mode("0640"), Some(0o640));
        assert_eq!(parse_mode("600"), Some(0o600));
        assert_eq!(parse_mode("rw"), None);
        assert_eq!(
            parse_owner("0:0"),
            Ok(Owner {
                uid: Some(0),
                gid: Some(0)
            })
        );
        assert_eq!(
            parse_owner("root"),
            Ok(Owner {
                uid: Some(0),
                gid: None
            })
        );
        assert!(parse_owner("no-such-user-here").is_err());
        assert_eq!(
            placeholders("a {{ X }} b {{Y}} {{unclosed"),
            ["X".to_owned(), "Y".to_owned()]
        );
    }

    #[test]
    fn a_kubernetes_secret_reads_with_defaults_and_its_options() {
        let (sinks, problems) = read_one(
            r#"sinks = [
                { kind = "kubernetes-secret", namespace = "app", secret_name = "app-db" },
                { kind = "kubernetes-secret", namespace = "app", secret_name = "db-env", key = "db.env", format = "dotenv", kubeconfig = "/etc/kube/config", context = "prod", restart_deployments = ["api", "worker"] },
                { kind = "kubernetes-secret", namespace = "app", secret_name = "renamed", keys = { DB_PASSWORD = "password" }, service_account_dir = "/var/run/token" },
            ]"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(sinks[0].name, "kubernetes-secret:app/app-db");
        let SinkKind::KubernetesSecret(first) = &sinks[0].kind else {
            panic!("kubernetes-secret")
        };
        let identity: BTreeMap<String, String> = [
            ("DB_PASSWORD".to_owned(), "DB_PASSWORD".to_owned()),
            ("DB_USER".to_owned(), "DB_USER".to_owned()),
        ]
        .into();
        assert_eq!(first.data, KubernetesData::Keys(identity));
        assert!(matches!(
            &first.auth,
            KubernetesAuth::InCluster { dir, .. } if dir == Path::new(DEFAULT_SERVICE_ACCOUNT_DIR)
        ));
        let SinkKind::KubernetesSecret(second) = &sinks[1].kind else {
            panic!("kubernetes-secret")
        };
        assert_eq!(
            second.data,
            KubernetesData::Rendered {
                key: "db.env".into(),
                format: Format::Dotenv
            }
        );
        assert_eq!(second.restart_deployments, ["api", "worker"]);
        assert_eq!(
            second.auth,
            KubernetesAuth::Kubeconfig {
                path: "/etc/kube/config".into(),
                context: Some("prod".into())
            }
        );
        let SinkKind::KubernetesSecret(third) = &sinks[2].kind else {
            panic!("kubernetes-secret")
        };
        let KubernetesData::Keys(keys) = &third.data else {
            panic!("keys")
        };
        assert_eq!(keys["DB_PASSWORD"], "password");
        assert_eq!(keys["DB_USER"], "DB_USER");
    }

    #[test]
    fn kubernetes_secret_problems_are_named_by_key() {
        let (sinks, problems) = read_one(
            r#"sinks = [
                { kind = "kubernetes-secret", namespace = "App_NS", secret_name = "-bad" },
                { kind = "kubernetes-secret", namespace = "app", secret_name = "x", keys = { NOPE = "a", DB_USER = "bad key" } },
                { kind = "kubernetes-secret", namespace = "app", secret_name = "y", keys = { DB_USER = "k" }, key = "k" },
                { kind = "kubernetes-secret", namespace = "app", secret_name = "z", format = "json", kubeconfig = "relative", service_account_dir = "/d" },
                { kind = "kubernetes-secret", namespace = "app", secret_name = "w", context = "c", restart_deployments = ["UPPER"], keys = { DB_USER = "DB_PASSWORD" } },
                { kind = "kubernetes-secret", secret_name = "v", path = "/x" },
            ]"#,
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rotations[0].sinks[0].namespace",
                "rotations[0].sinks[0].secret_name",
                "rotations[0].sinks[1].keys.DB_USER",
                "rotations[0].sinks[1].keys.NOPE",
                "rotations[0].sinks[2].keys",
                "rotations[0].sinks[3].format",
                "rotations[0].sinks[3].service_account_dir",
                "rotations[0].sinks[4].keys",
                "rotations[0].sinks[4].restart_deployments[0]",
                "rotations[0].sinks[4].context",
                "rotations[0].sinks[5].path",
                "rotations[0].sinks[5].namespace",
            ]
        );
        assert!(sinks.is_empty());
    }

    #[test]
    fn a_kubeconfig_that_exists_must_resolve_when_the_config_is_read() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "current-context: a\nclusters: [{name: c, cluster: {server: \"https://k:6443\"}}]\n\
             contexts: [{name: a, context: {cluster: c, user: u}}]\n\
             users: [{name: u, user: {token: tok-Secret-1}}]\n",
        )
        .expect("write");
        let sink = |context: &str| {
            format!(
                "sinks = [{{ kind = \"kubernetes-secret\", namespace = \"app\", secret_name = \"db\", \
                 kubeconfig = \"{}\"{context} }}]",
                path.display()
            )
        };
        let (sinks, problems) = read_one(&sink(""));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(sinks.len(), 1);
        let (_, problems) = read_one(&sink(", context = \"prod\""));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "rotations[0].sinks[0].kubeconfig");
        assert!(problems[0].reason.contains("no context \"prod\""));
        assert!(!problems[0].reason.contains("tok-Secret-1"));
    }
}
