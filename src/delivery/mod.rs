//! Delivery: after a local rotation commits, its mapped secrets go to each configured sink, at
//! least once per committed version and never back to an older one (docs/delivery.md).
//!
//! - The COMMIT transaction raises each sink's wanted version (`store::deliveries`), so a crash
//!   between the commit and the delivery still owes it.
//! - [`worker`]: the background task, woken after a commit and scanning periodically; it reads
//!   the committed credential, renders it ([`render`]), hands it to the sink, and records the
//!   outcome with its event (`CredentialDelivered` / `CredentialDeliveryFailed`) in one
//!   transaction; failures are retried with backoff.
//! - One file per sink: [`file`], [`exec`], [`aws_secrets_manager`], [`infisical`];
//!   [`kubernetes`] (a small API client beside it).
//!
//! A sink's failure never fails or undoes the rotation, and no value reaches an error, a log
//! line or an event: sink errors are built without values and scrubbed of them again.

pub mod aws_secrets_manager;
pub mod exec;
pub mod file;
pub mod infisical;
pub mod kubernetes;
pub mod render;
pub mod worker;

use std::future::Future;
use std::sync::Arc;

use crate::config::sinks::{SinkKind, SinkSpec};
use crate::secret::SecretString;
use crate::upstream::infisical::Infisical;

pub use self::worker::Delivery;

/// What one delivery hands a sink.
#[derive(Debug)]
pub struct Payload<'a> {
    /// The rotation.
    pub rotation_id: &'a str,
    /// The committed version being delivered.
    pub version: u64,
    /// `secrets_mapping` names with their values, sorted by name.
    pub values: &'a [(String, SecretString)],
}

/// Why a sink did not take a version. The message never holds a value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// What sinks share beyond their own configuration: clients of services rotator already
/// talks to.
#[derive(Debug, Default)]
pub struct SinkContext {
    /// Infisical clients: the service's identity and sinks' own.
    pub infisical: infisical::Clients,
}

// === impl SinkContext ===

impl SinkContext {
    /// A context over the service's Infisical client, if it has one.
    pub fn new(infisical: Option<Arc<Infisical>>) -> Self {
        Self {
            infisical: infisical::Clients::new(infisical),
        }
    }
}

/// Something that takes a committed version's mapped secrets.
pub trait Sink {
    /// Delivers `payload`; delivering the same version again must be harmless.
    ///
    /// # Errors
    ///
    /// [`SinkError`], without any value in its message.
    fn deliver(&self, payload: &Payload<'_>) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// The kind's name, as the status and events show it.
pub fn kind_name(sink: &SinkSpec) -> &'static str {
    match sink.kind {
        SinkKind::File(_) => "file",
        SinkKind::Exec(_) => "exec",
        SinkKind::AwsSecretsManager(_) => "aws-secrets-manager",
        SinkKind::Infisical(_) => "infisical",
        SinkKind::KubernetesSecret(_) => "kubernetes-secret",
    }
}

/// Delivers `payload` to `sink`, whatever its kind, with the clients of `context`.
///
/// # Errors
///
/// The sink's [`SinkError`].
pub async fn deliver(
    sink: &SinkSpec,
    payload: &Payload<'_>,
    context: &SinkContext,
) -> Result<(), SinkError> {
    match &sink.kind {
        SinkKind::File(s) => s.deliver(payload).await,
        SinkKind::Exec(s) => s.deliver(payload).await,
        SinkKind::AwsSecretsManager(s) => s.deliver(payload).await,
        SinkKind::Infisical(s) => infisical::deliver(s, &context.infisical, payload).await,
        SinkKind::KubernetesSecret(s) => s.deliver(payload).await,
    }
}
