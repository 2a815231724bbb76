//! A private PostgreSQL 15 cluster for tests that must prove a password: `scram-sha-256` on TCP
//! (the machine's shared server trusts every password), trust on its own unix socket for the
//! superuser. `log_statement = all`, so tests can read what reached the server.
//!
//! [`PrivatePostgres::shared`] hands out one cluster per test binary; it stops (by `pg_ctl`, on
//! the postmaster's PID file) when the last test holding it drops it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The admin role tests give rotator: LOGIN CREATEROLE, password [`ADMIN_PASSWORD`].
pub const ADMIN_USER: &str = "rotator_admin";
/// The admin role's password.
pub const ADMIN_PASSWORD: &str = "admin-pw-Zq81";

/// A running private cluster; dropping it stops the server and deletes its files.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// The cluster shared by the tests of this binary, started on first use.
    pub fn shared() -> Arc<Self> {
        static SHARED: Mutex<Weak<PrivatePostgres>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pg) = slot.upgrade() {
            return pg;
        }
        let pg = Arc::new(Self::start());
        *slot = Arc::downgrade(&pg);
        pg
    }

    /// initdb + pg_ctl start on a free loopback port; waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// As [`PrivatePostgres::start`], with `ssl = on` and this certificate and key.
    pub fn start_with_tls(cert_file: &Path, key_file: &Path) -> Self {
        Self::start_with(Some((cert_file, key_file)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rotator-pg-")
            .tempdir()
            .expect("a temp dir");
        run("chmod", &["755", path(dir.path())]);
        if is_root() {
            run("chown", &["postgres:postgres", path(dir.path())]);
        }
        let mut tls_options = String::new();
        if let Some((cert, key)) = tls {
            let (crt, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::copy(cert, &crt).expect("copy the certificate");
            std::fs::copy(key, &k).expect("copy the key");
            run("chmod", &["600", path(&k)]);
            if is_root() {
                run("chown", &["postgres:postgres", path(&crt), path(&k)]);
            }
            tls_options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                path(&crt),
                path(&k)
            );
        }
        let data = dir.path().join("data");
        as_postgres(
            &format!("{BIN}/initdb"),
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        );
        // A port picked free can be taken before the postmaster binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c log_statement=all{tls_options}",
                path(dir.path())
            );
            let log = dir.path().join("server.log");
            let started = as_postgres_status(
                &format!("{BIN}/pg_ctl"),
                &[
                    "-D",
                    path(&data),
                    "-l",
                    path(&log),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    &options,
                    "start",
                ],
            );
            if started {
                let pg = Self { dir, port };
                pg.setup();
                return pg;
            }
        }
        panic!("the private PostgreSQL cluster did not start; see its server.log");
    }

    /// The TCP port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server log (every statement, since `log_statement = all`).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A superuser connection over the unix socket (trust).
    pub async fn superuser(&self) -> PgConnection {
        PgConnectOptions::new_without_pgpass()
            .socket(self.dir.path())
            .port(self.port)
            .username("postgres")
            .database("postgres")
            .disable_statement_logging()
            .connect()
            .await
            .expect("superuser connection over the socket")
    }

    /// Runs `sql` as the superuser.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.superuser().await;
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }

    /// Creates a LOGIN role `name` with password `password`.
    pub async fn create_role(&self, name: &str, password: &str) {
        let ident = rotator::drivers::quote::pg_identifier(name).expect("quotable");
        let literal = rotator::drivers::quote::pg_literal(password).expect("quotable");
        self.execute(&format!("CREATE ROLE {ident} LOGIN PASSWORD {literal}"))
            .await;
    }

    /// Creates the admin role. Runs on its own thread and runtime, because `start` is called
    /// from inside async tests.
    fn setup(&self) {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for setup");
                    rt.block_on(self.execute(&format!(
                        "CREATE ROLE {ADMIN_USER} LOGIN CREATEROLE PASSWORD '{ADMIN_PASSWORD}'"
                    )));
                })
                .join()
                .expect("cluster setup");
        });
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        as_postgres_status(
            &format!("{BIN}/pg_ctl"),
            &["-D", path(&data), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// PostgreSQL refuses to run as root: run as `postgres` then.
fn as_postgres_status(program: &str, args: &[&str]) -> bool {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn as_postgres(program: &str, args: &[&str]) {
    assert!(
        as_postgres_status(program, args),
        "{program} {args:?} failed"
    );
}
