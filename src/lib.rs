//! rotator: a gRPC service that rotates secrets, by forwarding to Infisical or with local
//! provider drivers.
//!
//! # Layout
//!
//! In data-flow order (each module imports only from the modules listed after it; see
//! `docs/architecture.md`, "Layers"):
//! - [`cli`], [`server`]: the binary's commands; building and running the gRPC server with health,
//!   reflection and drain.
//! - [`api`]: the tonic service: admission (request id, deadline, limits), caller
//!   authentication and authorization, validation, the api's errors and the one `Status` mapping.
//! - [`engine`]: routing to a backend, tracked rotation tasks, forwarded attempt records.
//! - [`events`]: rotation events: outbox recorder, relay to NATS JetStream, CloudEvents model.
//! - [`local`]: local rotation: leases, attempts (chosen and issued secrets), recovery, scheduler.
//! - [`delivery`]: committed credentials to sinks (files, commands, AWS Secrets Manager).
//! - [`store`]: the store (embedded SQLite, or PostgreSQL shared by replicas): outbox, local
//!   rotation state, leases and attempts.
//! - [`drivers`]: what local rotation does on a target, one file per driver.
//! - [`upstream`]: the Infisical REST client, its token manager and error classification.
//! - [`telemetry`]: spans, W3C propagation, metrics, JSON logs, the admin listener.
//! - [`config`]: defaults, file, environment; the local registry's grammar; OTEL settings.
//! - [`policy`], [`crypto`]: the permission model; the credentials key ring.
//! - [`rotation`]: the 14 rotation types, credential shapes, attempt records, classified
//!   failures, Infisical's JSON model.
//! - [`proto`], [`secret`], [`net`], [`context`]: generated messages, redacting strings, the
//!   outbound address policy, the call context.

pub mod api;
pub mod cli;
pub mod config;
pub mod context;
pub mod crypto;
pub mod delivery;
pub mod drivers;
pub mod engine;
pub mod events;
pub mod local;
pub mod net;
pub mod policy;
pub mod proto;
pub mod rotation;
pub mod secret;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;

use std::future::Future;

/// Runs a server with `config` until `shutdown` completes.
///
/// # Errors
///
/// Store, binding, building or transport failures.
pub async fn run(
    config: config::Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), server::ServeError> {
    let listener = server::bind(&config).await?;
    run_on(config, listener, shutdown).await
}

/// Runs a server with `config` on `listener` until `shutdown` completes.
///
/// Opens the store under `data_dir`, starts the events pipeline (its relay connects to NATS in
/// the background, so an unreachable NATS never delays serving), serves, and on shutdown drains
/// the calls before stopping the relay, so the events of the last rotations are flushed too. The
/// stop after `shutdown` keeps to [`server::StopBudget`].
///
/// # Errors
///
/// Store, building or transport failures.
pub async fn run_on(
    mut config: config::Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), server::ServeError> {
    let clock = server::StopClock::new();
    let shutdown = clock.watch(shutdown);
    let readiness = telemetry::admin::Readiness::new();
    let admin = match config.admin_listen {
        Some(addr) => Some(
            telemetry::admin::AdminServer::start(addr, readiness.clone())
                .await
                .map_err(|source| server::ServeError::Bind { addr, source })?,
        ),
        None => None,
    };
    let store = store::Store::open(&config).await?;
    let events = events::EventsPipeline::start(&config, store.clone());
    let served = match server::build_engine(&config, Some(events.recorder())) {
        Ok(engine) => match local::start(&mut config, &store).await.map_err(Into::into) {
            Ok(backend) => {
                let scheduler = backend.as_ref().map(|backend| {
                    local::Scheduler::spawn(
                        std::sync::Arc::clone(backend),
                        config.local_timing.scan_interval,
                    )
                });
                let recovery = backend
                    .as_ref()
                    .map(|backend| local::Recovery::spawn(std::sync::Arc::clone(backend)));
                let delivery = backend.as_ref().map(|backend| {
                    delivery::Delivery::spawn_with(
                        std::sync::Arc::clone(backend),
                        delivery::SinkContext::new(engine.infisical().cloned()),
                    )
                });
                let reloader = backend.as_ref().map(|backend| {
                    local::spawn_on_sighup(
                        std::sync::Arc::clone(backend),
                        config.config_file.clone(),
                    )
                });
                let engine = match backend {
                    Some(backend) => engine.with_local(backend),
                    None => engine,
                };
                let served =
                    server::run_with_readiness(&config, engine, listener, readiness, shutdown)
                        .await;
                if let Some(scheduler) = scheduler {
                    scheduler.stop();
                }
                if let Some(recovery) = recovery {
                    recovery.stop();
                }
                if let Some(delivery) = delivery {
                    delivery.stop();
                }
                if let Some(reloader) = reloader {
                    reloader.abort();
                }
                served
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    // What follows the drain stops by the relay deadline of the one stop budget, so the final
    // telemetry flush (in `cli`) still fits the grace.
    let budget = clock.budget(config.shutdown_grace);
    let stopped = tokio::time::timeout_at(budget.relay_deadline(), async {
        if let Some(admin) = admin {
            admin.stop().await;
        }
        events.shutdown().await;
        store.close().await;
    })
    .await;
    if stopped.is_err() {
        tracing::warn!(
            "the grace period ran out while stopping the events relay; unsent events stay in the outbox for the next start"
        );
    }
    served
}
