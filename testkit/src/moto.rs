//! A private moto server (the AWS IAM and STS emulator, `pip install 'moto[server]'`) with
//! signature checks enforced. Started on a free loopback port, ready when its HTTP port answers,
//! stopped by PID when dropped. One per test binary: [`Moto::shared`].
//!
//! moto checks signatures only after `INITIAL_NO_AUTH_ACTION_COUNT` unchecked requests. The
//! first three create the `admin` user, give it an allow-all inline policy and create its access
//! key; every request after that is signed with a key moto knows, or refused
//! (`InvalidClientTokenId` for an unknown key id, `SignatureDoesNotMatch` for a wrong secret).
//! Gap: an `Inactive` key still authenticates in moto (real AWS refuses it); the driver never
//! deactivates keys, so nothing here depends on it.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rotator::drivers::Credential;
use rotator::drivers::aws_iam::{QueryClient, QueryError, texts};
use rotator::secret::SecretString;

/// The interpreter that runs moto; `ROTATOR_TEST_PYTHON` overrides it.
const PYTHON: &str = "python3";
/// The unchecked requests moto allows before it enforces signatures: the admin's bootstrap.
const BOOTSTRAP_REQUESTS: usize = 3;
/// The region fixtures sign in.
pub const REGION: &str = "us-east-1";
/// The admin user moto's bootstrap creates.
pub const ADMIN_USER: &str = "rotator-admin";

/// A running moto server and its admin key.
pub struct Moto {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    admin: Credential,
}

impl Moto {
    /// The server shared by the tests of this binary (started by the first caller, stopped when
    /// the last holder drops it).
    pub async fn shared() -> Arc<Self> {
        static SHARED: tokio::sync::Mutex<Weak<Moto>> = tokio::sync::Mutex::const_new(Weak::new());
        let mut slot = SHARED.lock().await;
        if let Some(m) = slot.upgrade() {
            return m;
        }
        let m = Arc::new(Self::start().await);
        *slot = Arc::downgrade(&m);
        m
    }

    /// Starts a server, waits until it answers, and creates the admin user and key.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rotator-moto-")
            .tempdir()
            .expect("a temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.path().join("log")).expect("the log file");
        let python = std::env::var("ROTATOR_TEST_PYTHON").unwrap_or_else(|_| PYTHON.to_owned());
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .env("INITIAL_NO_AUTH_ACTION_COUNT", BOOTSTRAP_REQUESTS.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto with {python} -m moto.server ({e}); run scripts/test.sh, which installs moto[server]")
            });
        let mut moto = Self {
            dir,
            port,
            child,
            admin: Credential {
                id: "AKIABOOTSTRAP0000000".into(),
                secret: SecretString::new("bootstrap-requests-are-not-checked-000000"),
            },
        };
        moto.wait_ready();
        moto.admin = moto.bootstrap_admin().await;
        moto
    }

    /// The TCP port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint URL, for IAM and STS alike.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The admin's access key (allowed everything).
    pub fn admin(&self) -> &Credential {
        &self.admin
    }

    /// Calls IAM `action` signed with `key`.
    ///
    /// # Errors
    ///
    /// What moto answered.
    pub async fn iam(
        &self,
        key: &Credential,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, QueryError> {
        // A client per call: each test has its own runtime, and pooled connections are not
        // shared between runtimes.
        QueryClient::new(&self.endpoint(), REGION, "iam")
            .expect("the moto endpoint")
            .call(key, action, params)
            .await
    }

    /// Creates IAM user `name` as the admin.
    pub async fn create_user(&self, name: &str) {
        self.iam(&self.admin, "CreateUser", &[("UserName", name)])
            .await
            .unwrap_or_else(|e| panic!("CreateUser {name}: {e}"));
    }

    /// Gives `user` an inline policy allowing `actions` on every resource.
    pub async fn allow(&self, user: &str, actions: &[&str]) {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        })
        .to_string();
        self.iam(
            &self.admin,
            "PutUserPolicy",
            &[
                ("UserName", user),
                ("PolicyName", "rotator-test"),
                ("PolicyDocument", &policy),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("PutUserPolicy {user}: {e}"));
    }

    /// Creates an access key of `user` outside rotator.
    pub async fn create_access_key(&self, user: &str) -> Credential {
        let xml = self
            .iam(&self.admin, "CreateAccessKey", &[("UserName", user)])
            .await
            .unwrap_or_else(|e| panic!("CreateAccessKey {user}: {e}"));
        key_of(&xml)
    }

    /// The access key ids `user` holds.
    pub async fn access_key_ids(&self, user: &str) -> BTreeSet<String> {
        let xml = self
            .iam(&self.admin, "ListAccessKeys", &[("UserName", user)])
            .await
            .unwrap_or_else(|e| panic!("ListAccessKeys {user}: {e}"));
        texts(&xml, "AccessKeyId")
            .expect("XML")
            .into_iter()
            .collect()
    }

    /// The ARN `key` authenticates as (`sts:GetCallerIdentity`), or `None` when it is refused.
    pub async fn caller_arn(&self, key: &Credential) -> Option<String> {
        let xml = QueryClient::new(&self.endpoint(), REGION, "sts")
            .expect("the moto endpoint")
            .call(key, "GetCallerIdentity", &[])
            .await
            .ok()?;
        texts(&xml, "Arn").ok()?.into_iter().next()
    }

    /// The bootstrap: the admin user, its policy and its key (the unchecked requests).
    async fn bootstrap_admin(&self) -> Credential {
        let bootstrap = &self.admin;
        self.iam(bootstrap, "CreateUser", &[("UserName", ADMIN_USER)])
            .await
            .unwrap_or_else(|e| panic!("bootstrap CreateUser: {e}"));
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        self.iam(
            bootstrap,
            "PutUserPolicy",
            &[
                ("UserName", ADMIN_USER),
                ("PolicyName", "all"),
                ("PolicyDocument", policy),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("bootstrap PutUserPolicy: {e}"));
        let xml = self
            .iam(bootstrap, "CreateAccessKey", &[("UserName", ADMIN_USER)])
            .await
            .unwrap_or_else(|e| panic!("bootstrap CreateAccessKey: {e}"));
        key_of(&xml)
    }

    /// Readiness: moto's own API answers 200 over HTTP (it does not count as an IAM request);
    /// gives up after about 30 s or when the process exits.
    fn wait_ready(&mut self) {
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "moto exited ({status}) before it was ready; see {}/log",
                    self.dir.path().display()
                );
            }
            if http_ok(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "moto did not become ready; see {}/log",
            self.dir.path().display()
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /moto-api/` on `port` answers 200.
fn http_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// The access key of a `CreateAccessKey` reply.
fn key_of(xml: &str) -> Credential {
    let one = |tag: &str| {
        texts(xml, tag)
            .expect("XML")
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {tag} in the CreateAccessKey reply"))
    };
    Credential {
        id: one("AccessKeyId"),
        secret: SecretString::new(one("SecretAccessKey")),
    }
}
