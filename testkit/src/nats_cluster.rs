//! A three-node NATS JetStream cluster on loopback: each node on free client and route ports
//! with its own store directory, the stream leader found through `$JS.API.STREAM.INFO`, nodes
//! killed (SIGKILL) and restarted on the same ports and directories. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::events::nats_server_binary;

/// One node: its name, ports, store directory and process.
struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster of three nodes.
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl NatsCluster {
    /// Starts three nodes and waits until the cluster has a JetStream meta leader.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = (0..3)
            .map(|i| Node {
                name: format!("n{i}"),
                port: free_port(),
                cluster_port: free_port(),
                dir: dir.path().join(format!("n{i}")),
                child: None,
            })
            .collect();
        let mut cluster = Self { nodes, _dir: dir };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.wait_for_meta_leader().await;
        cluster
    }

    /// Every node's client URL, comma-separated (what `nats.url` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    fn spawn(&mut self, i: usize) {
        let routes = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {} already runs", node.name);
        std::fs::create_dir_all(&node.dir).expect("store dir");
        let log = std::fs::File::create(node.dir.join("nats.log")).expect("log file");
        let child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-n", &node.name, "-p"])
            .arg(node.port.to_string())
            .arg("-sd")
            .arg(&node.dir)
            .args(["--cluster_name", "rotator-chaos", "--cluster"])
            .arg(format!("nats://127.0.0.1:{}", node.cluster_port))
            .arg("--routes")
            .arg(routes)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts (apt-get install nats-server)");
        node.child = Some(child);
    }

    /// Waits until `$JS.API.INFO` answers without error on every running node: the cluster has
    /// elected its meta leader and accepts stream creation.
    async fn wait_for_meta_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, node) in self.nodes.iter().enumerate() {
            if node.child.is_none() {
                continue;
            }
            loop {
                if let Some(info) = self.api(i, "$JS.API.INFO").await
                    && info.get("error").is_none()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the NATS cluster has no JetStream meta leader within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// A JetStream API request on node `i`, its JSON answer; `None` when it did not answer.
    async fn api(&self, i: usize, subject: &str) -> Option<serde_json::Value> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(1))
            .connect(self.url(i))
            .await
            .ok()?;
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(subject.to_owned(), "".into()),
        )
        .await
        .ok()?
        .ok()?;
        serde_json::from_slice(&reply.payload).ok()
    }

    /// The index of the node leading `stream`, once the stream has a leader and `replicas`
    /// current replicas.
    pub async fn stream_leader(&self, stream: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for i in self.running() {
                let Some(info) = self.api(i, &format!("$JS.API.STREAM.INFO.{stream}")).await else {
                    continue;
                };
                let leader = info["cluster"]["leader"].as_str().unwrap_or_default();
                if let Some(index) = self.nodes.iter().position(|n| n.name == leader) {
                    return index;
                }
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream} has no leader within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `stream` has a leader other than node `not`, and returns it.
    pub async fn new_stream_leader(&self, stream: &str, not: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let leader = self.stream_leader(stream, within).await;
            if leader != not {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream} has no new leader within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].child.is_some())
            .collect()
    }

    /// Kills node `i` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its ports and store directory, and waits until JetStream
    /// answers on it.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_for_meta_leader().await;
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
