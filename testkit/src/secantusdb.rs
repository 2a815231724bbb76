//! A private MongoDB-compatible server: SecantusDB (`pip install secantusdb==0.7.0b3`, a
//! WiredTiger-based reimplementation of mongod; a real mongod cannot be installed here, see
//! test-peers.md §10). Started on a free loopback port, ready when a client gets an answer,
//! stopped by PID when dropped. One per test binary: [`Secantus::shared`].
//!
//! SecantusDB has no localhost exception, so the first users are created in a run without
//! `--auth`, which is then stopped (SIGTERM, by PID) and started again on the same storage with
//! `--auth` (and TLS, when asked). An empty `--config` keeps it from picking up a stray
//! `./secantusd.toml`. Users:
//! - [`ROOT_USER`] in `admin` with role `root`: what the fixtures create users with;
//! - [`ADMIN_USER`] in [`DATABASE`] with role `userAdmin` on it: the driver's admin, the least
//!   privilege that may change the passwords of the database's users.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::options::{AuthMechanism, ClientOptions, Credential, ServerAddress, Tls, TlsOptions};

use crate::test_ca::TestCa;

/// The interpreter that runs SecantusDB; `ROTATOR_TEST_PYTHON` overrides it.
const PYTHON: &str = "python3";
/// The database the rotated users and the driver's admin live in.
pub const DATABASE: &str = "appdb";
/// The driver's admin (`userAdmin` on [`DATABASE`], authenticates against it).
pub const ADMIN_USER: &str = "rotator_admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "Admin-Pw-1-secantus";
/// The superuser in `admin` the fixtures use.
pub const ROOT_USER: &str = "root";
/// Its password.
pub const ROOT_PASSWORD: &str = "Root-Pw-1-secantus";

/// A running SecantusDB and its storage.
pub struct Secantus {
    /// Storage, logs and certificates; removed on drop.
    _dir: tempfile::TempDir,
    port: u16,
    child: Child,
    /// The test CA of a server started with [`Secantus::start`]`(true)`.
    tls: Option<TestCa>,
    /// The certificate file the fixture's own client trusts (TLS servers only).
    trust: Option<PathBuf>,
}

impl Secantus {
    /// The plain-TCP server shared by the tests of this binary (started by the first caller,
    /// stopped when the last holder drops it).
    pub async fn shared() -> Arc<Self> {
        static SHARED: tokio::sync::Mutex<Weak<Secantus>> =
            tokio::sync::Mutex::const_new(Weak::new());
        let mut slot = SHARED.lock().await;
        if let Some(s) = slot.upgrade() {
            return s;
        }
        let s = Arc::new(Self::start(false).await);
        *slot = Arc::downgrade(&s);
        s
    }

    /// Starts a server: provisions the users without auth, then restarts it with `--auth`, and
    /// with TLS (a server certificate of a fresh test CA, see [`Secantus::ca`]) when `tls`.
    pub async fn start(tls: bool) -> Self {
        Self::start_with(tls, None).await
    }

    /// Starts a server with `--auth` and TLS presenting `cert_file` (key `key_file`), which must
    /// name 127.0.0.1; the fixture's own client trusts `cert_file` (a self-signed one).
    pub async fn start_with_certificate(cert_file: &Path, key_file: &Path) -> Self {
        Self::start_with(false, Some((cert_file.to_owned(), key_file.to_owned()))).await
    }

    async fn start_with(test_ca: bool, certificate: Option<(PathBuf, PathBuf)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rotator-secantus-")
            .tempdir()
            .expect("a temp dir");
        std::fs::write(dir.path().join("empty.toml"), "").expect("the empty config");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let ca = test_ca.then(|| TestCa::create(dir.path()));
        // (certificate, key, what the fixture's client trusts)
        let served = match (&ca, certificate) {
            (Some(ca), _) => Some((
                ca.cert_file.clone(),
                ca.key_file.clone(),
                ca.ca_file.clone(),
            )),
            (None, Some((cert, key))) => Some((cert.clone(), key, cert)),
            (None, None) => None,
        };

        let mut provisioning = spawn(dir.path(), port, "provision", &[]);
        wait_ready(&mut provisioning, dir.path(), port);
        let client = client(port, None, None);
        run(
            &client,
            "admin",
            doc! { "createUser": ROOT_USER, "pwd": ROOT_PASSWORD, "roles": ["root"] },
        )
        .await;
        run(
            &client,
            DATABASE,
            doc! {
                "createUser": ADMIN_USER,
                "pwd": ADMIN_PASSWORD,
                "roles": [{ "role": "userAdmin", "db": DATABASE }],
            },
        )
        .await;
        client.shutdown().await;
        stop(&mut provisioning);

        let mut args = vec!["--auth".to_owned()];
        if let Some((cert, key, _)) = &served {
            args.extend([
                "--tls-cert-file".to_owned(),
                path(cert),
                "--tls-key-file".to_owned(),
                path(key),
            ]);
        }
        let mut child = spawn(dir.path(), port, "server", &args);
        wait_ready(&mut child, dir.path(), port);
        Self {
            _dir: dir,
            port,
            child,
            tls: ca,
            trust: served.map(|(_, _, trust)| trust),
        }
    }

    /// The TCP port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test CA whose certificate the server presents (TLS servers only).
    pub fn ca(&self) -> Option<&TestCa> {
        self.tls.as_ref()
    }

    /// Creates user `name` in [`DATABASE`] with role `readWrite` there, as root.
    pub async fn create_user(&self, name: &str, password: &str) {
        let client = self.client(Some((ROOT_USER, ROOT_PASSWORD, "admin")));
        run(
            &client,
            DATABASE,
            doc! {
                "createUser": name,
                "pwd": password,
                "roles": [{ "role": "readWrite", "db": DATABASE }],
                "mechanisms": ["SCRAM-SHA-256"],
            },
        )
        .await;
        client.shutdown().await;
    }

    /// Creates user `name` in [`DATABASE`] whose only privilege is a custom role `role`
    /// allowing password changes on that database (the least privilege the driver's admin
    /// needs), as root. MongoDB's action for another user's password is `changePassword`;
    /// SecantusDB checks `changeOwnPassword` instead, so the role holds both.
    pub async fn create_password_admin(&self, name: &str, password: &str, role: &str) {
        let client = self.client(Some((ROOT_USER, ROOT_PASSWORD, "admin")));
        run(
            &client,
            DATABASE,
            doc! {
                "createRole": role,
                "privileges": [{
                    "resource": { "db": DATABASE, "collection": "" },
                    "actions": ["changePassword", "changeOwnPassword"],
                }],
                "roles": [],
            },
        )
        .await;
        run(
            &client,
            DATABASE,
            doc! {
                "createUser": name,
                "pwd": password,
                "roles": [{ "role": role, "db": DATABASE }],
                "mechanisms": ["SCRAM-SHA-256"],
            },
        )
        .await;
        client.shutdown().await;
    }

    /// Whether `user`/`password` log in (SCRAM-SHA-256, `authSource` = [`DATABASE`]) and ping.
    pub async fn login(&self, user: &str, password: &str) -> bool {
        self.login_against(user, password, DATABASE).await
    }

    /// Whether `user`/`password` log in against `auth_source` and ping.
    pub async fn login_against(&self, user: &str, password: &str, auth_source: &str) -> bool {
        let client = self.client(Some((user, password, auth_source)));
        let ok = tokio::time::timeout(
            Duration::from_secs(15),
            client.database(auth_source).run_command(doc! { "ping": 1 }),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        client.shutdown().await;
        ok
    }

    /// A client of this server, logged in as `login` (user, password, authSource) if given.
    fn client(&self, login: Option<(&str, &str, &str)>) -> mongodb::Client {
        client(self.port, login, self.trust.as_deref())
    }
}

impl Drop for Secantus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_owned()
}

/// Starts SecantusDB on `port` with storage under `dir`; its output goes to `dir/<log>.log`.
fn spawn(dir: &std::path::Path, port: u16, log: &str, extra: &[String]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{log}.log"))).expect("the log file");
    let python = std::env::var("ROTATOR_TEST_PYTHON").unwrap_or_else(|_| PYTHON.to_owned());
    Command::new(&python)
        .args([
            "-c",
            "import sys; from secantus.cli import main; sys.exit(main())",
        ])
        .args(["--config", &path(&dir.join("empty.toml"))])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--storage-path", &path(&dir.join("data"))])
        .args(["--standalone", "--log-level", "WARNING"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start SecantusDB with {python} ({e}); run scripts/test.sh, which \
                 installs secantusdb==0.7.0b3"
            )
        })
}

/// Readiness: the port accepts a connection; gives up after about 60 s or when the process
/// exits.
fn wait_ready(child: &mut Child, dir: &std::path::Path, port: u16) {
    for _ in 0..1200 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "SecantusDB exited ({status}) before it was ready; see the logs in {}",
                dir.display()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "SecantusDB did not become ready; see the logs in {}",
        dir.display()
    );
}

/// Stops `child` by PID with SIGTERM (so WiredTiger closes its files), SIGKILL after 20 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..400 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A direct client of `127.0.0.1:port`.
fn client(port: u16, login: Option<(&str, &str, &str)>, trust: Option<&Path>) -> mongodb::Client {
    let mut options = ClientOptions::builder()
        .hosts(vec![ServerAddress::Tcp {
            host: "127.0.0.1".into(),
            port: Some(port),
        }])
        .direct_connection(true)
        .server_selection_timeout(Duration::from_secs(15))
        .build();
    if let Some((user, password, source)) = login {
        options.credential = Some(
            Credential::builder()
                .username(user.to_owned())
                .password(password.to_owned())
                .source(source.to_owned())
                .mechanism(AuthMechanism::ScramSha256)
                .build(),
        );
    }
    if let Some(trust) = trust {
        options.tls = Some(Tls::Enabled(
            TlsOptions::builder().ca_file_path(trust.to_owned()).build(),
        ));
    }
    mongodb::Client::with_options(options).expect("client options")
}

/// Runs `command` on `database`; panics on failure.
async fn run(client: &mongodb::Client, database: &str, command: Document) {
    let name = command.keys().next().cloned().unwrap_or_default();
    client
        .database(database)
        .run_command(command)
        .await
        .unwrap_or_else(|e| panic!("{name} on {database}: {}", e.kind));
}
