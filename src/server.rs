//! Builds and runs the gRPC server: health, reflection (v1 and v1alpha), the rotation service,
//! message-size bounds, and a graceful drain on shutdown.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::api::RotatorApi;
use crate::api::auth::{Authenticator, RequireIdentity};
use crate::config::{Config, TlsConfig};
use crate::engine::Engine;
use crate::events::AttemptRecorder;
use crate::proto::secret_rotation_service_server::SecretRotationServiceServer;
use crate::telemetry::admin::{GRPC_COMPONENT, Readiness};
use crate::upstream::infisical::{self, Infisical};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The upstream client could not be built.
    #[error(transparent)]
    Upstream(#[from] infisical::BuildError),
    /// Reflection could not be built from the descriptor set.
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The local backend could not start.
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    /// The embedded store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Builds the engine with the backends the configuration names.
///
/// # Errors
///
/// A backend that cannot be built.
pub fn build_engine(
    config: &Config,
    recorder: Option<Arc<dyn AttemptRecorder>>,
) -> Result<Engine, ServeError> {
    let infisical = config
        .infisical
        .as_ref()
        .map(|c| Infisical::with_address_policy(c, config.network.address_policy))
        .transpose()?
        .map(Arc::new);
    if let Some(infisical) = &infisical {
        let infisical = Arc::downgrade(infisical);
        crate::telemetry::metrics::set_token_source(move || {
            infisical
                .upgrade()
                .map(|i| i.token_counts())
                .unwrap_or_default()
        });
    }
    crate::telemetry::metrics::seed_rotation_types(
        config.enabled_types.iter().filter_map(|t| t.slug()),
    );
    Ok(Engine::new(
        infisical,
        config.enabled_types.iter().copied(),
        recorder,
    ))
}

/// Binds the configured listen address.
///
/// # Errors
///
/// [`ServeError::Bind`].
pub async fn bind(config: &Config) -> Result<TcpListener, ServeError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })
}

/// Serves on `listener` until `shutdown` completes, then reports NOT_SERVING, stops accepting,
/// and waits for in-flight calls and rotation tasks up to the drain share of the grace period
/// ([`StopBudget::drain`]).
///
/// # Errors
///
/// Transport or reflection failures.
pub async fn run(
    config: &Config,
    engine: Engine,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run_with_readiness(config, engine, listener, Readiness::new(), shutdown).await
}

/// [`run`], reporting the server's readiness (component `grpc`) to `readiness`: not ready until
/// serving, and again from the start of the drain.
///
/// # Errors
///
/// Transport or reflection failures.
pub async fn run_with_readiness(
    config: &Config,
    engine: Engine,
    listener: TcpListener,
    readiness: Readiness,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    readiness.set_not_ready(GRPC_COMPONENT, "starting");
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SecretRotationServiceServer<RotatorApi>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let auth = Arc::new(Authenticator::new(&config.auth));
    auth.log_startup(&config.auth, config.tls.is_some());
    let health_service = InterceptedService::new(
        health_service,
        RequireIdentity::new(&auth, config.auth.open_health),
    );
    let reflection_gate = RequireIdentity::new(&auth, config.auth.open_reflection);
    let reflection_v1 = InterceptedService::new(reflection_v1, reflection_gate.clone());
    let reflection_v1alpha = InterceptedService::new(reflection_v1alpha, reflection_gate);
    let api = RotatorApi::new(engine.clone(), config.max_concurrent_calls).with_authenticator(auth);
    let service = SecretRotationServiceServer::new(api)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);

    let local = listener.local_addr().ok();
    tracing::info!(listen = ?local, upstream = config.infisical.is_some(), tls = config.tls.is_some(), "rotator serving");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(server_tls(tls))?;
    }
    let server = builder
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(crate::api::rescue::RescueLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        // Without TCP_NODELAY small gRPC frames wait on delayed ACKs (~40 ms per call).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                let _ = stop_rx.await;
            },
        );
    let mut server = std::pin::pin!(server);
    readiness.set_ready(GRPC_COMPONENT);
    tokio::select! {
        result = &mut server => return result.map_err(ServeError::from),
        () = shutdown => {}
    }
    let budget = StopBudget::starting_at(Instant::now(), config.shutdown_grace);
    tracing::info!(
        grace_seconds = config.shutdown_grace.as_secs(),
        drain_ms = budget.drain().as_millis() as u64,
        "shutting down: draining in-flight calls"
    );
    readiness.set_not_ready(GRPC_COMPONENT, "draining");
    health
        .set_not_serving::<SecretRotationServiceServer<RotatorApi>>()
        .await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let _ = stop_tx.send(());
    engine.tasks().close();
    let drain = async {
        let result = server.await;
        engine.tasks().wait().await;
        result
    };
    match tokio::time::timeout(budget.drain(), drain).await {
        Ok(result) => result.map_err(ServeError::from),
        Err(_) => {
            tracing::warn!("the grace period ran out with calls still in flight");
            Ok(())
        }
    }
}

// === shutdown budget ===

/// The longest the final flushes may be held back from the drain, and the longest the export of
/// spans and metrics may take at exit.
pub const FLUSH_RESERVE_MAX: Duration = Duration::from_secs(5);

/// How one shutdown grace (`shutdown_grace_seconds`, counted from SIGTERM/SIGINT) is shared, so
/// that the whole stop fits in it, whatever a peer does:
///
/// 1. draining in-flight calls and rotation tasks: the grace minus the *flush reserve*, a quarter
///    of the grace and at most [`FLUSH_RESERVE_MAX`];
/// 2. stopping the admin listener and the events relay's last flush, and closing the store:
///    until half the reserve is left;
/// 3. the final export of spans and metrics, both at once: what is left, at most
///    [`FLUSH_RESERVE_MAX`].
///
/// A step that finishes early leaves its time to the next. A step that runs out is abandoned
/// with a warning: unsent events stay in the outbox (published at the next start), queued spans
/// are lost.
#[derive(Debug, Clone, Copy)]
pub struct StopBudget {
    /// When the stop began (the signal).
    started: Instant,
    /// The whole budget.
    grace: Duration,
}

// === impl StopBudget ===

impl StopBudget {
    /// The budget of a stop that began at `started`.
    pub fn starting_at(started: Instant, grace: Duration) -> Self {
        Self { started, grace }
    }

    /// What the drain may not use: kept for the flushes.
    pub fn flush_reserve(&self) -> Duration {
        (self.grace / 4).min(FLUSH_RESERVE_MAX)
    }

    /// How long the drain may take, from the start.
    pub fn drain(&self) -> Duration {
        self.grace.saturating_sub(self.flush_reserve())
    }

    /// When the admin listener, the events relay and the store must have stopped.
    pub fn relay_deadline(&self) -> Instant {
        self.started + self.grace.saturating_sub(self.flush_reserve() / 2)
    }

    /// How long the export of spans and metrics may take, from now.
    pub fn telemetry_timeout(&self) -> Duration {
        (self.started + self.grace)
            .saturating_duration_since(Instant::now())
            .min(FLUSH_RESERVE_MAX)
    }
}

/// Remembers when the shutdown signal came, so every later step of the stop counts from it.
#[derive(Debug, Clone, Default)]
pub struct StopClock(Arc<OnceLock<Instant>>);

// === impl StopClock ===

impl StopClock {
    /// A clock that has not started.
    pub fn new() -> Self {
        Self::default()
    }

    /// `signal`, starting the clock when it completes.
    pub fn watch(&self, signal: impl Future<Output = ()>) -> impl Future<Output = ()> {
        let clock = Arc::clone(&self.0);
        async move {
            signal.await;
            let _ = clock.set(Instant::now());
        }
    }

    /// The budget of this stop: from the signal, or from now when it never came (an error
    /// stopped the server).
    pub fn budget(&self, grace: Duration) -> StopBudget {
        let started = self.0.get().copied().unwrap_or_else(Instant::now);
        StopBudget::starting_at(started, grace)
    }
}

/// How long a TLS handshake may take, so a silent client cannot hold a connection open.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server TLS settings; mutual TLS when a client CA is configured.
fn server_tls(tls: &TlsConfig) -> ServerTlsConfig {
    let identity = Identity::from_pem(&tls.cert_pem, tls.key_pem.expose());
    let mut config = ServerTlsConfig::new()
        .identity(identity)
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    if let Some(ca) = &tls.client_ca_pem {
        config = config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(tls.client_auth_optional);
    }
    config
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_of_a_stop_fit_the_grace() {
        let start = Instant::now();
        let budget = StopBudget::starting_at(start, Duration::from_secs(30));
        assert_eq!(budget.flush_reserve(), Duration::from_secs(5));
        assert_eq!(budget.drain(), Duration::from_secs(25));
        assert_eq!(
            budget.relay_deadline(),
            start + Duration::from_millis(27_500)
        );
        assert!(budget.telemetry_timeout() <= FLUSH_RESERVE_MAX);

        let short = StopBudget::starting_at(start, Duration::from_secs(2));
        assert_eq!(short.drain(), Duration::from_millis(1_500));
        assert_eq!(short.relay_deadline(), start + Duration::from_millis(1_750));
        assert!(short.telemetry_timeout() <= Duration::from_secs(2));

        let none = StopBudget::starting_at(start, Duration::ZERO);
        assert_eq!(none.drain(), Duration::ZERO);
        assert_eq!(none.telemetry_timeout(), Duration::ZERO);
    }
}
