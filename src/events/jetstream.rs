//! NATS JetStream: connection options from the config, the stream settings, and the
//! [`Publisher`] the relay uses.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, HeaderName, HeaderValue, ServerAddr};
use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use super::publisher::{Acked, OutgoingMessage, Publisher, Stored};
use super::{EventsError, subject};
use crate::config::NatsConfig;
use crate::telemetry::health;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long JetStream API calls and publish acks may take.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to NATS with the configured authentication and TLS. Fails at once when no server
/// answers; after a first success the client reconnects by itself.
///
/// # Errors
///
/// [`EventsError::Settings`] for an unusable URL or creds file, [`EventsError::Connect`] when no
/// server accepts the connection.
pub async fn connect(nats: &NatsConfig, name: &str) -> Result<async_nats::Client, EventsError> {
    connect_with(nats, name, async_nats::ConnectOptions::new()).await
}

/// [`connect`], starting from `options` (e.g. with an event callback).
async fn connect_with(
    nats: &NatsConfig,
    name: &str,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, EventsError> {
    let servers = nats
        .url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EventsError::Settings {
            setting: "nats.url",
            detail: e.to_string(),
        })?;
    let mut options = options
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(ACK_TIMEOUT))
        .require_tls(nats.tls_required);
    if let Some((user, password)) = &nats.user_password {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(token) = &nats.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(seed) = &nats.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if let Some(path) = &nats.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| EventsError::Settings {
                setting: "nats.creds_file",
                // The io error's kind only: a parse error could quote the file.
                detail: format!("cannot use {}: {}", path.display(), e.kind()),
            })?;
    }
    if let Some(ca) = &nats.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    options.connect(servers).await.map_err(EventsError::Connect)
}

/// Reports the relay's connection to `/healthz` ([`health::NATS`]) as the client sees it.
fn report_connection_events(options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
    options.event_callback(|event| async move {
        match event {
            async_nats::Event::Connected => health::report(health::NATS, "connected", None),
            async_nats::Event::Disconnected => {
                health::report(health::NATS, "disconnected", Some("connection_lost".into()));
            }
            async_nats::Event::Closed => {
                health::report(health::NATS, "disconnected", Some("closed".into()));
            }
            _ => {}
        }
    })
}

/// The `/healthz` reason of a failed connection or stream set-up: the error's kind, never its
/// text (which may quote a URL with credentials).
fn health_reason(error: &EventsError) -> String {
    match error {
        EventsError::Connect(e) => format!("connect_{:?}", e.kind()).to_lowercase(),
        other => other.kind().to_owned(),
    }
}

/// The stream that stores every event under the prefix.
pub fn stream_config(nats: &NatsConfig) -> stream::Config {
    stream::Config {
        name: nats.stream.name.clone(),
        description: Some("rotator rotation events: RotationCompleted, RotationFailed".into()),
        subjects: vec![subject::stream_filter(&nats.subject_prefix)],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: nats.stream.max_age,
        storage: if nats.stream.memory_storage {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        },
        num_replicas: nats.stream.replicas,
        duplicate_window: nats.stream.duplicate_window,
        ..Default::default()
    }
}

/// Publishes to JetStream; connects lazily in [`Publisher::prepare`].
#[derive(Debug)]
pub struct JetStreamPublisher {
    nats: NatsConfig,
    context: OnceCell<jetstream::Context>,
}

// === impl JetStreamPublisher ===

impl JetStreamPublisher {
    /// A publisher for the configured NATS; nothing happens until `prepare`.
    pub fn new(nats: NatsConfig) -> Self {
        Self {
            nats,
            context: OnceCell::new(),
        }
    }

    /// Connects once (reporting connection events to `/healthz`) and creates or updates the
    /// stream.
    async fn prepare_stream(&self) -> Result<(), EventsError> {
        let context = self
            .context
            .get_or_try_init(|| async {
                let options = report_connection_events(async_nats::ConnectOptions::new());
                let client = connect_with(&self.nats, "rotator-events-relay", options).await?;
                Ok::<_, EventsError>(
                    jetstream::ContextBuilder::new()
                        .timeout(ACK_TIMEOUT)
                        .build(client),
                )
            })
            .await?;
        let config = stream_config(&self.nats);
        let info = context
            .create_or_update_stream(config)
            .await
            .map_err(|source| EventsError::Stream {
                stream: self.nats.stream.name.clone(),
                source,
            })?;
        tracing::info!(
            stream = %info.config.name,
            subjects = ?info.config.subjects,
            messages = info.state.messages,
            "events stream ready"
        );
        Ok(())
    }
}

impl Publisher for JetStreamPublisher {
    type Ack = BoxFuture<'static, Result<Acked, EventsError>>;

    async fn prepare(&self) -> Result<(), EventsError> {
        let prepared = self.prepare_stream().await;
        match &prepared {
            Ok(()) => health::report(health::NATS, "connected", None),
            Err(error) => {
                let state = match error {
                    EventsError::Settings { .. }
                    | EventsError::Connect(_)
                    | EventsError::Disconnected => "disconnected",
                    // Connected, but the stream cannot be created or updated.
                    _ => "stream_unavailable",
                };
                health::report(health::NATS, state, Some(health_reason(error)));
            }
        }
        prepared
    }

    async fn send(&self, message: OutgoingMessage) -> Result<Self::Ack, EventsError> {
        let context = self.context.get().ok_or(EventsError::Disconnected)?;
        // While the client reconnects, publishes would queue in its buffer and time out; fail
        // fast instead so the relay backs off.
        if context.client().connection_state() != State::Connected {
            return Err(EventsError::Disconnected);
        }
        let subject = message.subject;
        let ack = context
            .send_publish(
                subject.clone(),
                publish(message.message_id, &message.headers, message.payload)?,
            )
            .await
            .map_err(|e| publish_error(&subject, e))?;
        Ok(Box::pin(async move {
            let ack = ack.await.map_err(|e| publish_error(&subject, e))?;
            Ok(Acked {
                stream_seq: ack.sequence,
                duplicate: ack.duplicate,
            })
        }))
    }

    async fn stored_since(&self, after: u64, limit: usize) -> Result<Vec<Stored>, EventsError> {
        let context = self.context.get().ok_or(EventsError::Disconnected)?;
        let name = &self.nats.stream.name;
        let read_error = |detail: String| EventsError::ReadStream {
            stream: name.clone(),
            detail,
        };
        let stream = context
            .get_stream_no_info(name)
            .await
            .map_err(|e| read_error(e.to_string()))?;
        let last = stream
            .get_info()
            .await
            .map_err(|e| read_error(e.to_string()))?
            .state
            .last_sequence;
        let newest = u64::try_from(limit).unwrap_or(u64::MAX);
        let first = (after + 1).max(last.saturating_sub(newest) + 1);
        if first > after + 1 {
            tracing::warn!(
                after,
                first,
                "more events in the stream than a relay takeover reads; older ones rely on the \
                 duplicate window"
            );
        }
        let mut stored = Vec::new();
        for sequence in first..=last {
            match stream.get_raw_message(sequence).await {
                Ok(message) => {
                    let id = message.headers.get(async_nats::header::NATS_MESSAGE_ID);
                    if let Some(id) = id {
                        stored.push(Stored {
                            message_id: id.as_str().to_owned(),
                            stream_seq: sequence,
                        });
                    }
                }
                // Deleted (age limit) or never stored at that sequence.
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(read_error(e.to_string())),
            }
        }
        Ok(stored)
    }
}

fn publish(
    message_id: String,
    headers: &[(String, String)],
    payload: Vec<u8>,
) -> Result<PublishMessage, EventsError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name: HeaderName = name
            .parse()
            .map_err(|_| EventsError::Encode(format!("invalid header name {name:?}")))?;
        let value: HeaderValue = value
            .parse()
            .map_err(|_| EventsError::Encode(format!("invalid value of header {name}")))?;
        map.insert(name, value);
    }
    let id: HeaderValue = message_id
        .parse()
        .map_err(|_| EventsError::Encode("invalid message id".into()))?;
    map.insert(async_nats::header::NATS_MESSAGE_ID, id);
    Ok(PublishMessage::build().payload(payload.into()).headers(map))
}

fn publish_error(subject: &str, error: PublishError) -> EventsError {
    match error.kind() {
        PublishErrorKind::StreamNotFound => EventsError::NoStream(subject.to_owned()),
        PublishErrorKind::TimedOut => EventsError::AckTimeout,
        _ => EventsError::Publish(error),
    }
}
