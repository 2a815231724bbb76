//! Builds and runs the gRPC server: health, reflection (v1 and v1alpha), the rotation service,
//! message-size bounds, and a graceful drain on shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
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
/// and waits up to the grace period for in-flight calls and rotation tasks.
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
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
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
    tracing::info!(
        grace_seconds = config.shutdown_grace.as_secs(),
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
    match tokio::time::timeout(config.shutdown_grace, drain).await {
        Ok(result) => result.map_err(ServeError::from),
        Err(_) => {
            tracing::warn!("the grace period ran out with calls still in flight");
            Ok(())
        }
    }
}

/// How long a TLS handshake may take, so a silent client cannot hold a connection open.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
