//! rotator: a gRPC service that rotates secrets, by forwarding to Infisical or with local
//! provider drivers.
//!
//! # Layout
//!
//! In data-flow order:
//! - [`api`]: the tonic service: admission (request id, deadline, limits), caller
//!   authentication and authorization, validation, statuses.
//! - [`engine`]: routing to a backend, tracked rotation tasks, attempt records.
//! - [`upstream`]: the Infisical REST client, its token manager and error classification.
//! - [`rotation`]: the 14 rotation types and Infisical's JSON model of a rotation.
//! - [`error`]: the service error and its one classification into gRPC codes.
//! - [`server`]: building and running the gRPC server with health, reflection and drain.
//! - [`config`], [`secret`], [`context`], [`telemetry`], [`proto`], [`cli`]: support.
//! - [`net`]: the outbound address policy (refuse private targets) drivers and upstreams call.

pub mod api;
pub mod cli;
pub mod config;
pub mod context;
pub mod engine;
pub mod error;
pub mod net;
pub mod proto;
pub mod rotation;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod upstream;

use std::future::Future;

/// Runs a server with `config` until `shutdown` completes.
///
/// # Errors
///
/// Binding, building or transport failures.
pub async fn run(
    config: config::Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), server::ServeError> {
    let engine = server::build_engine(&config, None)?;
    let listener = server::bind(&config).await?;
    server::run(&config, engine, listener, shutdown).await
}
