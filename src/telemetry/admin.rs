//! The admin HTTP listener (default `127.0.0.1:9464`, `admin_listen` / `ROTATOR_ADMIN_LISTEN`):
//!
//! - `GET /metrics`: Prometheus text exposition of every metric;
//! - `GET /livez`: 200 while the process runs;
//! - `GET /readyz`: 200 when every registered component is ready, else 503 with the list of
//!   components that are not (the gRPC server reports itself not ready while it drains);
//! - `GET /healthz`: the detail, as JSON: readiness, the components waiting, the events
//!   outbox's depth and oldest age, the overdue local rotations, and the state of NATS and of
//!   the Infisical token since when, with the last failure's reason ([`super::health`]; `null`
//!   when not configured). Always 200: it describes, `/readyz` decides.
//!
//! It is plain HTTP/1.1 and meant for a private interface: it exposes no secret, but metrics
//! reveal rotation activity. It keeps answering during the gRPC drain so an orchestrator sees
//! `/readyz` fail, and stops after it.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

/// The component name the gRPC server reports readiness under.
pub const GRPC_COMPONENT: &str = "grpc";

/// What each component says about its readiness; shared between the components and the admin
/// listener.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// Component name → `None` when ready, `Some(reason)` when not.
    components: Arc<Mutex<BTreeMap<String, Option<String>>>>,
}

// === impl Readiness ===

impl Readiness {
    /// Readiness with no component registered (which counts as ready).
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `component` ready.
    pub fn set_ready(&self, component: &str) {
        self.set(component, None);
    }

    /// Marks `component` not ready, with a short reason (no secret, no value).
    pub fn set_not_ready(&self, component: &str, reason: &str) {
        self.set(component, Some(reason.to_owned()));
    }

    fn set(&self, component: &str, state: Option<String>) {
        if let Ok(mut map) = self.components.lock() {
            map.insert(component.to_owned(), state);
        }
    }

    /// Whether every component is ready, and the reasons of those that are not.
    pub fn report(&self) -> (bool, Vec<String>) {
        let Ok(map) = self.components.lock() else {
            return (false, vec!["readiness state unavailable".to_owned()]);
        };
        let waiting: Vec<String> = map
            .iter()
            .filter_map(|(name, reason)| reason.as_ref().map(|r| format!("{name}: {r}")))
            .collect();
        (waiting.is_empty(), waiting)
    }
}

/// The admin listener, running on its own task until [`AdminServer::stop`].
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

// === impl AdminServer ===

impl AdminServer {
    /// Binds `addr` and starts serving.
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub async fn start(addr: SocketAddr, readiness: Readiness) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::spawn(listener, readiness))
    }

    /// Starts serving on a bound listener.
    pub fn spawn(listener: TcpListener, readiness: Readiness) -> Self {
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, readiness, async {
            let _ = stopped.await;
        }));
        tracing::info!(listen = %local_addr, "admin listener serving /metrics, /livez, /readyz, /healthz");
        Self {
            local_addr,
            stop,
            task,
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and waits for open requests to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the admin listener failed"),
            Err(error) => tracing::warn!(%error, "the admin listener task failed"),
        }
    }
}

/// Serves the admin routes on `listener` until `shutdown` completes.
///
/// # Errors
///
/// An accept-loop I/O failure.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(readiness))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The admin routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .with_state(readiness)
}

async fn metrics() -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(|| super::metrics::global().render_prometheus())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn livez() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let (ready, waiting) = readiness.report();
    if ready {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        let mut body = String::from("not ready\n");
        for line in waiting {
            body.push_str(&line);
            body.push('\n');
        }
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn healthz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let (ready, waiting) = readiness.report();
    let outbox = super::metrics::outbox_stats().map(|stats| {
        serde_json::json!({
            "depth": stats.depth,
            "oldest_age_seconds": stats.oldest_age.map(|age| age.as_secs_f64()),
        })
    });
    let body = serde_json::json!({
        "ready": ready,
        "waiting": waiting,
        "outbox": outbox,
        "overdue_rotations": super::metrics::overdue_rotations(),
        "nats": super::health::to_json(super::health::NATS),
        "relay": super::health::to_json(super::health::RELAY),
        "infisical_token": super::health::to_json(super::health::INFISICAL_TOKEN),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_every_component() {
        let r = Readiness::new();
        assert!(r.report().0, "nothing registered counts as ready");
        r.set_not_ready(GRPC_COMPONENT, "starting");
        r.set_ready("nats");
        let (ready, waiting) = r.report();
        assert!(!ready);
        assert_eq!(waiting, ["grpc: starting"]);
        r.set_ready(GRPC_COMPONENT);
        assert!(r.report().0);
    }
}
