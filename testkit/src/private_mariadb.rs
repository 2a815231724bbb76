//! A private MariaDB server started by the test with extra server options (e.g. a `sql_mode`
//! the shared server must not be switched to). root logs in through the unix socket only; the
//! setup runs through the `mariadb` client. Stopped by PID when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running private MariaDB.
pub struct PrivateMariaDb {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl PrivateMariaDb {
    /// Installs a data directory and starts `mariadbd` with `extra_args` on a free loopback port;
    /// waits (deadline 60 s) until root can run `SELECT 1`.
    pub fn start(extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rotator-maria-")
            .tempdir()
            .expect("a temp dir");
        let root = dir.path().to_str().expect("utf-8 path").to_owned();
        let data = format!("{root}/data");
        run("chmod", &["755", &root]);
        run("chown", &["mysql:mysql", &root]);
        install(&data);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=mysql",
                &format!("--datadir={data}"),
                &format!("--socket={root}/sock"),
                &format!("--pid-file={root}/pid"),
                "--bind-address=127.0.0.1",
                &format!("--port={port}"),
                &format!("--log-error={root}/err.log"),
                "--innodb-buffer-pool-size=64M",
                "--skip-name-resolve",
            ])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        let server = Self { dir, port, child };
        // Readiness: root runs a query; give up after about 60 s.
        let mut attempts = 0;
        while !server.try_sql("SELECT 1") {
            attempts += 1;
            assert!(
                attempts < 1200,
                "the private MariaDB did not become ready; see {root}/err.log"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The TCP port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (relative log file names land here).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The binary log as text (`mariadb-binlog` of every `bin.*` file).
    pub fn binlog_text(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.data_dir()) else {
            return out;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("bin.0")
                && let Ok(o) = Command::new("mariadb-binlog").arg(entry.path()).output()
            {
                out.push_str(&String::from_utf8_lossy(&o.stdout));
            }
        }
        out
    }

    /// Runs `sql` as root over the socket.
    pub fn sql(&self, sql: &str) {
        assert!(self.try_sql(sql), "{sql} failed on the private MariaDB");
    }

    fn try_sql(&self, sql: &str) -> bool {
        Command::new("mariadb")
            .arg(format!("--socket={}/sock", self.dir.path().display()))
            .args(["-uroot", "-e", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mariadb-install-db` into `data`. It fails now and then when several run at once (seen under
/// nextest); a fresh attempt in an empty directory succeeds, so try up to three times and show
/// the tool's output if all fail.
fn install(data: &str) {
    let mut output = String::new();
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(data);
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=mysql",
                &format!("--datadir={data}"),
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ])
            .output()
            .expect("mariadb-install-db");
        if out.status.success() {
            return;
        }
        output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    panic!("mariadb-install-db failed three times:\n{output}");
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}
