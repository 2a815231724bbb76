//! Fixtures for the events tests: per-test subject prefixes and stream names, a private
//! restartable nats-server, reading a stream back, and a rotator server run through
//! `rotator::run_on` (store + events pipeline + gRPC) on a loopback port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, message::StreamMessage};
use rotator::config::{Config, Env};
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::store::{ReadOutbox as _, Store};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::transport::Channel;

/// The NATS server every machine runs (do not stop it; use unique names on it).
pub const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// A subject prefix and stream name no other test uses.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
    pub stream: String,
}

pub fn unique_names() -> Names {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Names {
        prefix: format!("test.{id}.events"),
        stream: format!("TEST_EVENTS_{id}"),
    }
}

/// The `ROTATOR_NATS_*` settings for `url` and `names`.
pub fn nats_env(url: &str, names: &Names) -> Env {
    HashMap::from([
        ("ROTATOR_NATS_URL".to_owned(), url.to_owned()),
        (
            "ROTATOR_NATS_SUBJECT_PREFIX".to_owned(),
            names.prefix.clone(),
        ),
        ("ROTATOR_NATS_STREAM_NAME".to_owned(), names.stream.clone()),
    ])
}

// === PrivateNats ===

/// A nats-server with JetStream on its own port and store directory; stop and restart it on the
/// same port and directory to simulate an outage. Killed on drop.
pub struct PrivateNats {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    /// A port and a store directory, with no server running yet.
    pub fn reserve() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        Self {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        }
    }

    /// Starts a server on a free port and waits until it accepts clients.
    pub async fn start() -> Self {
        let mut nats = Self::reserve();
        nats.run().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn store_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (again) on the same port and store directory, waiting until ready.
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("log file");
        let child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts (apt-get install nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(client) = async_nats::connect(self.url()).await {
                // JetStream is up once its API answers (here: "no such stream").
                let probe = jetstream::new(client).get_stream("READINESS_PROBE").await;
                if let Err(error) = probe
                    && matches!(error.kind(), GetStreamErrorKind::JetStream(_))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "private nats-server on port {} not ready within 20 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn nats_server_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nats-server", "/usr/bin/nats-server"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("nats-server")
}

// === reading a stream ===

/// Every message in `stream`, in stream order; empty if the stream does not exist yet.
pub async fn stream_messages(url: &str, stream: &str) -> Vec<StreamMessage> {
    let Ok(client) = async_nats::connect(url).await else {
        return Vec::new();
    };
    let context = jetstream::new(client);
    let Ok(mut handle) = context.get_stream(stream).await else {
        return Vec::new();
    };
    let Ok(info) = handle.info().await else {
        return Vec::new();
    };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in first..=last {
        if let Ok(message) = handle.get_raw_message(seq).await {
            out.push(message);
        }
    }
    out
}

/// Waits until `stream` holds at least `count` messages and returns them all.
pub async fn wait_for_messages(
    url: &str,
    stream: &str,
    count: usize,
    within: Duration,
) -> Vec<StreamMessage> {
    let deadline = Instant::now() + within;
    loop {
        let messages = stream_messages(url, stream).await;
        if messages.len() >= count {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "stream {stream} holds {} of {count} expected messages after {within:?}",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn delete_stream(url: &str, stream: &str) {
    if let Ok(client) = async_nats::connect(url).await {
        let _ = jetstream::new(client).delete_stream(stream).await;
    }
}

/// A header value of a stream message.
pub fn header<'a>(message: &'a StreamMessage, name: &str) -> Option<&'a str> {
    message.headers.get(name).map(|v| v.as_str())
}

// === EventsServer ===

/// A rotator server run by `rotator::run_on`: the real store, events pipeline and gRPC server.
pub struct EventsServer {
    pub addr: SocketAddr,
    pub config: Config,
    data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), rotator::server::ServeError>>,
}

impl EventsServer {
    /// Starts a server configured from `env` with a temporary data dir on 127.0.0.1:0.
    pub async fn start(mut env: Env) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        env.insert(
            "ROTATOR_DATA_DIR".to_owned(),
            data_dir.path().display().to_string(),
        );
        env.entry("ROTATOR_SHUTDOWN_GRACE_SECONDS".to_owned())
            .or_insert_with(|| "10".to_owned());
        // Tests run in parallel: the default admin port would collide.
        env.entry("ROTATOR_ADMIN_LISTEN".to_owned())
            .or_insert_with(|| "off".to_owned());
        let config = Config::load(None, &env).expect("test config is valid");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(rotator::run_on(config.clone(), listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            config,
            data_dir,
            stop: Some(stop),
            handle,
        }
    }

    pub async fn client(&self) -> SecretRotationServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("url")
            .connect()
            .await
            .expect("connect over TCP");
        SecretRotationServiceClient::new(channel)
    }

    /// The server's outbox, opened beside it (SQLite WAL allows it).
    pub async fn store(&self) -> Store {
        Store::open_sqlite(self.data_dir.path())
            .await
            .expect("open the server's store")
    }

    /// Outbox depth right now.
    pub async fn outbox_depth(&self) -> u64 {
        let store = self.store().await;
        let depth = store.backlog().await.expect("backlog").depth;
        store.close().await;
        depth
    }

    /// Waits until the relay has marked every event sent (marks follow the acks, so an event can
    /// be in the stream a moment before its row leaves the outbox).
    pub async fn wait_outbox_drained(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let depth = self.outbox_depth().await;
            if depth == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{depth} events still in the outbox after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signals shutdown and waits for the drain (calls, then the relay) to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }
}
