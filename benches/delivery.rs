//! Commit → delivered latency of the file, exec, AWS Secrets Manager and Infisical sinks (the
//! last on the in-process fake Infisical's secrets API): the real binary
//! rotates a private Redis `ROUNDS` times in a row (each round waits until every sink took the
//! version), then reads each `CredentialDelivered` event's `sinceCommit` (from the COMMIT's
//! timestamp to the sink's success) out of the outbox.
//!
//! Run: `cargo bench --bench delivery` (needs `redis-server` and `moto[server]`; prints a
//! Markdown table for docs/benchmarks.md).

use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    GetSecretRotationRequest, RotateSecretsRequest, RotationType, get_secret_rotation_request,
};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical, PROJECT_ID};
use rotator_testkit::local_server::{free_port, rotator_command, wait_serving};
use rotator_testkit::moto::{Moto, REGION};
use rotator_testkit::private_redis::{ADMIN_PASSWORD, ADMIN_USER, PrivateRedis};
use sqlx::ConnectOptions as _;

const ROUNDS: u64 = 100;
const ID: &str = "0d1e2f3a-0000-4000-8000-00000000de11";

#[tokio::main]
async fn main() {
    let redis = PrivateRedis::start(true);
    let moto = Moto::start().await;
    let infisical = FakeInfisical::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let config = dir.path().join("rotator.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[infisical]
url = "{infisical_url}"
client_id = "{CLIENT_ID}"
client_secret = "env:INFISICAL_SECRET"

[[connections]]
name = "redis"
app = "redis"
host = "127.0.0.1"
port = {port}
username = "{ADMIN_USER}"
password = "env:REDIS_ADMIN"
tls = "disable"

[[rotations]]
id = "{ID}"
name = "bench"
type = "redis-credentials"
connection = "redis"
auto_rotation = false
parameters = {{ permissionScope = "~app:* +@read" }}
secrets_mapping = {{ username = "APP_USER", password = "APP_PASSWORD" }}
sinks = [
  {{ kind = "file", name = "file", path = "{d}/app.env" }},
  {{ kind = "exec", name = "exec", command = ["/bin/sh", "-c", "cat > /dev/null"] }},
  {{ kind = "aws-secrets-manager", name = "aws", secret_id = "bench/app", region = "{REGION}", endpoint = "{endpoint}", access_key_id = "env:SM_KEY_ID", secret_access_key = "env:SM_SECRET" }},
  {{ kind = "infisical", name = "infisical", project_id = "{PROJECT_ID}", environment = "prod" }},
]
"#,
            port = redis.port(),
            endpoint = moto.endpoint(),
            infisical_url = infisical.base_url(),
        ),
    )
    .expect("config");
    let port = free_port();
    let mut child = rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        &config,
        &dir.path().join("data"),
        port,
        ("REDIS_ADMIN", ADMIN_PASSWORD),
    )
    .env("SM_KEY_ID", &moto.admin().id)
    .env("SM_SECRET", moto.admin().secret.expose())
    .env("INFISICAL_SECRET", CLIENT_SECRET)
    .spawn()
    .expect("spawn");
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60)).await;
    let mut client = SecretRotationServiceClient::new(channel);
    for version in 1..=ROUNDS + 1 {
        if version > 1 {
            client
                .rotate_secrets(RotateSecretsRequest {
                    r#type: RotationType::RedisCredentials as i32,
                    rotation_id: ID.to_owned(),
                })
                .await
                .expect("rotate");
        }
        loop {
            let state = client
                .get_secret_rotation(GetSecretRotationRequest {
                    r#type: RotationType::RedisCredentials as i32,
                    lookup: Some(get_secret_rotation_request::Lookup::RotationId(ID.into())),
                })
                .await
                .expect("get")
                .into_inner();
            if state
                .deliveries
                .iter()
                .all(|s| s.delivered_version >= version)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let _ = child.kill().await;
    let _ = child.wait().await;

    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("data/rotator.db"))
        .read_only(true)
        .connect()
        .await
        .expect("store");
    let payloads: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE subject LIKE '%.delivered'")
            .fetch_all(&mut conn)
            .await
            .expect("outbox");
    println!("| sink | deliveries | p50 | p99 | max |\n|---|---|---|---|---|");
    for sink in ["file", "exec", "aws", "infisical"] {
        let mut ms: Vec<f64> = payloads
            .iter()
            .filter_map(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            .filter(|e| e["data"]["delivery"]["sink"] == sink)
            // The first version is delivered at start-up, before the timed rounds.
            .filter(|e| e["data"]["delivery"]["version"] != "1")
            .filter_map(|e| {
                let text = e["data"]["delivery"]["sinceCommit"].as_str()?.to_owned();
                Some(text.trim_end_matches('s').parse::<f64>().ok()? * 1000.0)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "| {sink} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            ms.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
}
