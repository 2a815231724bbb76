//! A real rotator server on a loopback port, for integration tests.

use std::collections::HashMap;
use std::net::SocketAddr;

use rotator::config::{Config, Env};
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A running server; dropping it does not stop it, `shutdown` does.
pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), rotator::server::ServeError>>,
}

/// Environment for a server forwarding to `upstream` with universal auth.
pub fn forwarding_env(upstream: &str, client_id: &str, client_secret: &str) -> Env {
    HashMap::from([
        ("ROTATOR_INFISICAL_URL".to_owned(), upstream.to_owned()),
        (
            "ROTATOR_INFISICAL_CLIENT_ID".to_owned(),
            client_id.to_owned(),
        ),
        (
            "ROTATOR_INFISICAL_CLIENT_SECRET".to_owned(),
            client_secret.to_owned(),
        ),
    ])
}

impl TestServer {
    /// Starts a server configured from `env` (plus a temporary data dir) on 127.0.0.1:0.
    pub async fn start(mut env: Env) -> Self {
        let data_dir = std::env::temp_dir().join(format!("rotator-test-{}", uuid::Uuid::new_v4()));
        env.entry("ROTATOR_DATA_DIR".to_owned())
            .or_insert_with(|| data_dir.display().to_string());
        env.entry("ROTATOR_SHUTDOWN_GRACE_SECONDS".to_owned())
            .or_insert_with(|| "10".to_owned());
        let config = Config::load(None, &env).expect("test config is valid");
        let engine = rotator::server::build_engine(&config, None).expect("engine builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let run_config = config.clone();
        let handle = tokio::spawn(async move {
            rotator::server::run(&run_config, engine, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            addr,
            config,
            stop: Some(stop),
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect over TCP")
    }

    pub async fn client(&self) -> SecretRotationServiceClient<Channel> {
        SecretRotationServiceClient::new(self.channel().await)
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for a shutdown begun with `begin_shutdown`.
    pub async fn wait(self) {
        self.handle
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }
}
