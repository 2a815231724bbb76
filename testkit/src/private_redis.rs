//! A private Redis 7 server with ACL users: `default` off and an `admin` user with every right.
//! With an ACL file (so `ACL SAVE` works) or without one. Started on a free loopback port,
//! ready when the admin's PING answers, stopped by PID when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The admin user of every private server.
pub const ADMIN_USER: &str = "admin";
/// The admin's password.
pub const ADMIN_PASSWORD: &str = "admin-pw-Rd93";

/// The rotated users' ACL rules in [`many_rotations_toml`].
pub const MANY_SCOPE: &str = "~app:* +get";

/// The id of rotation `i` of [`many_rotations_toml`].
pub fn many_rotation_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// A configuration of `count` cheap `redis-credentials` rotations (`scale-<i>`, scope
/// [`MANY_SCOPE`]) on one connection, `redis`, to a server on `port` as [`ADMIN_USER`] with
/// the password in `REDIS_ADMIN`: the scale bench's registry, and the registry-footprint test's.
pub fn many_rotations_toml(port: u16, max_parallel_rotations: usize, count: usize) -> String {
    use std::fmt::Write as _;
    let mut text = format!(
        r#"
[[connections]]
name = "redis"
app = "redis"
host = "127.0.0.1"
port = {port}
username = "{ADMIN_USER}"
password = "env:REDIS_ADMIN"
tls = "disable"
max_parallel_rotations = {max_parallel_rotations}
"#
    );
    for i in 0..count {
        let _ = write!(
            text,
            r#"
[[rotations]]
id = "{}"
name = "scale-{i}"
type = "redis-credentials"
connection = "redis"
rotation_interval_days = 30
rotate_at_utc = "03:30"
parameters = {{ permissionScope = "{MANY_SCOPE}" }}
secrets_mapping = {{ username = "U", password = "P" }}
"#,
            many_rotation_id(i)
        );
    }
    text
}

/// A running private Redis.
pub struct PrivateRedis {
    dir: tempfile::TempDir,
    port: u16,
    with_acl_file: bool,
    /// Server certificate, key and CA files when the server speaks TLS only.
    tls: Option<[PathBuf; 3]>,
    child: Child,
}

impl PrivateRedis {
    /// The server with an ACL file shared by the tests of this binary.
    pub fn shared() -> Arc<Self> {
        static SHARED: Mutex<Weak<PrivateRedis>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.upgrade() {
            return r;
        }
        let r = Arc::new(Self::start(true));
        *slot = Arc::downgrade(&r);
        r
    }

    /// Starts a server; `with_acl_file` chooses between `--aclfile` and `--user` arguments.
    pub fn start(with_acl_file: bool) -> Self {
        Self::start_with(with_acl_file, None)
    }

    /// Starts a server (with an ACL file) that speaks TLS only, with this certificate, key and
    /// CA.
    pub fn start_with_tls(cert: PathBuf, key: PathBuf, ca: PathBuf) -> Self {
        Self::start_with(true, Some([cert, key, ca]))
    }

    fn start_with(with_acl_file: bool, tls: Option<[PathBuf; 3]>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rotator-redis-")
            .tempdir()
            .expect("a temp dir");
        if with_acl_file {
            std::fs::write(
                dir.path().join("users.acl"),
                format!("user default off\nuser {ADMIN_USER} on >{ADMIN_PASSWORD} ~* &* +@all\n"),
            )
            .expect("write the ACL file");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = spawn(&dir, port, with_acl_file, tls.as_ref());
        let server = Self {
            dir,
            port,
            with_acl_file,
            tls,
            child,
        };
        server.wait_ready();
        server
    }

    /// The TCP port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The ACL file's content (empty without one).
    pub fn acl_file(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("users.acl")).unwrap_or_default()
    }

    /// Kills the server (SIGKILL: nothing is written on the way down) and starts it again on
    /// the same port with the same files.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.dir, self.port, self.with_acl_file, self.tls.as_ref());
        self.wait_ready();
    }

    /// A synchronous admin connection.
    pub fn admin(&self) -> redis::Connection {
        self.connect(ADMIN_USER, ADMIN_PASSWORD)
            .expect("the admin logs in")
    }

    /// A synchronous connection as `user`.
    pub fn connect(&self, user: &str, password: &str) -> redis::RedisResult<redis::Connection> {
        let info = match self.tls {
            None => redis::ConnectionAddr::Tcp("127.0.0.1".into(), self.port),
            Some(_) => redis::ConnectionAddr::TcpTls {
                host: "127.0.0.1".into(),
                port: self.port,
                insecure: true,
                tls_params: None,
            },
        };
        let info = redis::IntoConnectionInfo::into_connection_info(info)?.set_redis_settings(
            redis::RedisConnectionInfo::default()
                .set_username(user)
                .set_password(password),
        );
        redis::Client::open(info)?.get_connection_with_timeout(Duration::from_secs(5))
    }

    /// Readiness: the admin's PING answers; gives up after about 30 s.
    fn wait_ready(&self) {
        for _ in 0..600 {
            if let Ok(mut c) = self.connect(ADMIN_USER, ADMIN_PASSWORD)
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the private Redis did not become ready; see {}/log",
            self.dir.path().display()
        );
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    dir: &tempfile::TempDir,
    port: u16,
    with_acl_file: bool,
    tls: Option<&[PathBuf; 3]>,
) -> Child {
    let d = dir.path().to_str().expect("utf-8 path");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--dir", d]);
    match tls {
        None => cmd.args(["--port", &port.to_string()]),
        Some([cert, key, ca]) => cmd
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .args(["--tls-auth-clients", "no"]),
    };
    cmd.args(["--save", "", "--appendonly", "no"])
        .args(["--logfile", &format!("{d}/log")]);
    if with_acl_file {
        cmd.args(["--aclfile", &format!("{d}/users.acl")]);
    } else {
        // Each rule a separate argument (see test-peers.md).
        cmd.args(["--user", "default", "off"]);
        cmd.args(["--user", ADMIN_USER, "on", &format!(">{ADMIN_PASSWORD}")])
            .args(["~*", "&*", "+@all"]);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server")
}
