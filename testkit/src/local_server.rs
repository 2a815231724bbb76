//! A local-rotation server for tests: config file, real binary or in-process, readiness by the
//! health service, and direct logins against the private PostgreSQL cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{GetGeneratedCredentialsRequest, RotationType, generated_credential};
use sqlx::ConnectOptions as _;
use sqlx::Connection as _;
use tonic::transport::Channel;

/// A fixed test key (32 zero bytes would do, but a random-looking one reads better in logs).
pub const KEY: &str = "k1:q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
/// The rotation id of the PostgreSQL rotation.
pub const PG_ROTATION: &str = "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10";

/// Writes a config with one PostgreSQL connection and rotation on `port`.
pub fn pg_config(dir: &Path, port: u16, users: (&str, &str)) -> PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "pg"
app = "postgres"
host = "127.0.0.1"
port = {port}
database = "postgres"
username = "rotator_admin"
password = "env:PG_ADMIN"
tls = "disable"

[[rotations]]
id = "{PG_ROTATION}"
name = "app-db"
type = "postgres-credentials"
connection = "pg"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = {{ username1 = "{}", username2 = "{}" }}
secrets_mapping = {{ username = "DB_USER", password = "DB_PASSWORD" }}
"#,
        users.0, users.1
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Waits until the server at `url` reports SERVING, or panics after `limit`.
pub async fn wait_serving(url: &str, limit: Duration) -> Channel {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(channel) = Channel::from_shared(url.to_owned())
            .expect("url")
            .connect()
            .await
        {
            let ok = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok_and(|r| r.into_inner().status == 1);
            if ok {
                return channel;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server not SERVING at {url}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stored credentials of the PostgreSQL rotation: (active index, [(username, password)]).
pub async fn credentials(channel: &Channel, rotation_id: &str) -> (u32, Vec<(String, String)>) {
    stored_passwords(channel, RotationType::PostgresCredentials, rotation_id).await
}

/// The stored credentials of a rotation of any password type, through
/// `GetGeneratedCredentials`: (active index, [(identity, password)]), the identity being the
/// username, or the DN for `ldap-password`. Panics on a non-password credential.
pub async fn stored_passwords(
    channel: &Channel,
    rotation_type: RotationType,
    rotation_id: &str,
) -> (u32, Vec<(String, String)>) {
    use generated_credential::Kind;
    let answer = SecretRotationServiceClient::new(channel.clone())
        .get_generated_credentials(GetGeneratedCredentialsRequest {
            r#type: rotation_type as i32,
            rotation_id: rotation_id.to_owned(),
        })
        .await
        .expect("GetGeneratedCredentials")
        .into_inner();
    let creds = answer
        .generated_credentials
        .into_iter()
        .map(|c| match c.kind {
            Some(
                Kind::PostgresCredentials(c)
                | Kind::MysqlCredentials(c)
                | Kind::MssqlCredentials(c)
                | Kind::OracledbCredentials(c)
                | Kind::MongodbCredentials(c)
                | Kind::RedisCredentials(c)
                | Kind::UnixLinuxLocalAccount(c)
                | Kind::WindowsLocalAccount(c),
            ) => (c.username, c.password),
            Some(Kind::LdapPassword(c)) => (c.dn, c.password),
            other => panic!("not a password credential: {other:?}"),
        })
        .collect();
    (answer.active_index, creds)
}

/// The one stored credential of a single-phase rotation (slot 0): (identity, password).
pub async fn stored_single_password(
    channel: &Channel,
    rotation_type: RotationType,
    rotation_id: &str,
    what: &str,
) -> (String, String) {
    let (active, mut creds) = stored_passwords(channel, rotation_type, rotation_id).await;
    assert_eq!(active, 0, "{what}: single-phase types use slot 0");
    assert_eq!(creds.len(), 1, "{what}: one stored credential");
    creds.remove(0)
}

/// Whether `user`/`password` log in over TCP (scram) on the private cluster.
pub async fn pg_login(port: u16, user: &str, password: &str) -> bool {
    match sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(port)
        .username(user)
        .password(password)
        .database("postgres")
        .ssl_mode(sqlx::postgres::PgSslMode::Disable)
        .disable_statement_logging()
        .connect()
        .await
    {
        Ok(c) => {
            let _ = c.close().await;
            true
        }
        Err(_) => false,
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Attempt states in the store file under `data_dir`.
pub async fn attempt_states(data_dir: &Path) -> Vec<String> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("rotator.db"))
        .read_only(true);
    let mut conn = options.connect().await.expect("open the store");
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM local_attempts")
        .fetch_all(&mut conn)
        .await
        .expect("read attempts");
    let _ = conn.close().await;
    states
}

/// The rotator binary at `binary` (the test's `env!("CARGO_BIN_EXE_rotator")`, which only the
/// root package's tests see) serving `config` on `port`, its store under `data_dir`: no admin
/// listener, the test key, `admin_env` set to the target's admin password, no failpoint, output
/// discarded, killed on drop. Callers add what differs, then spawn.
pub fn rotator_command(
    binary: &str,
    config: &Path,
    data_dir: &Path,
    port: u16,
    (admin_env, admin_password): (&str, &str),
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROTATOR_DATA_DIR", data_dir)
        .env("ROTATOR_ADMIN_LISTEN", "off")
        .env("ROTATOR_ENCRYPTION_KEY", KEY)
        .env(admin_env, admin_password)
        .env_remove("ROTATOR_FAILPOINT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// Waits until every attempt in the store under `data_dir` ended (committed or failed), or
/// panics after `limit`: background recovery finishes attempts a crash left open.
pub async fn wait_for_attempts_to_end(data_dir: &Path, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let states = attempt_states(data_dir).await;
        if states.iter().all(|s| s == "committed" || s == "failed") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "attempts still open after {limit:?}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `ErrorInfo.reason` of a failed call, or "" when it has none.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// Calls `call` until it fails with another reason than `ROTATION_IN_PROGRESS` (another attempt
/// holding the rotation, e.g. recovery), and returns that failure; panics on success or after a
/// minute.
pub async fn until_not_in_progress<T, F, Fut>(mut call: F) -> tonic::Status
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Ok(_) => panic!("the call succeeded"),
            Err(status) if reason(&status) == "ROTATION_IN_PROGRESS" => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still in progress after a minute"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => return status,
        }
    }
}
