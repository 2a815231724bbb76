//! A loopback TCP forwarder in front of a real server that a test can shut and open again: the
//! target "goes down" (its port refuses connections) and "comes back" on the same port, without
//! restarting the shared server.

use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A gate on a loopback port forwarding to `127.0.0.1:<target>` while open. Stops on drop.
#[derive(Debug)]
pub struct TcpGate {
    port: u16,
    target: u16,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl TcpGate {
    /// An open gate to `target_port` on a free loopback port.
    pub async fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the gate");
        let port = listener.local_addr().expect("gate address").port();
        Self {
            port,
            target: target_port,
            task: Mutex::new(Some(forward(listener, target_port))),
        }
    }

    /// The gate's port: what the rotator under test is configured with.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops listening: new connections are refused (open ones continue).
    pub fn shut(&self) {
        if let Some(task) = self.task.lock().expect("gate").take() {
            task.abort();
        }
    }

    /// Listens again on the same port: new connections reach the target.
    pub async fn open(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot listen on the gate's port again: {e}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        };
        *self.task.lock().expect("gate") = Some(forward(listener, self.target));
    }
}

fn forward(listener: TcpListener, target: u16) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        self.shut();
    }
}
