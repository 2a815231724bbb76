//! Scale-out chaos, all on loopback: three rotator replicas on one PostgreSQL store, a
//! three-node NATS JetStream cluster with the events stream at R3, a load of local
//! (PostgreSQL, MariaDB, Redis) and forwarded (fake Infisical) rotations. One replica is
//! killed (-9) with an attempt parked after APPLIED, the stream leader node is killed, both
//! come back. Afterwards: every attempt ended committed or failed, every stored credential logs
//! in, the stream holds exactly one message per outbox event (by event id, and per local
//! rotation one per closed attempt), exactly one replica leads the relay, and the parked
//! attempt was resumed by another replica; how long that took (against the bound lease TTL +
//! one scan) is printed and recorded in docs/benchmarks.md, not asserted.
//!
//! Short lease settings keep it under a minute or two: rotation lease 4 s (renewed every 1 s),
//! scan every 1 s, relay lease 3 s.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    GetGeneratedCredentialsRequest, RotateSecretsRequest, RotationType, generated_credential,
};
use rotator_testkit::events::{header, stream_messages, unique_names};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::local_server::{free_port, pg_login, rotator_command, wait_serving};
use rotator_testkit::mariadb;
use rotator_testkit::nats_cluster::NatsCluster;
use rotator_testkit::private_postgres::{self, PrivatePostgres};
use rotator_testkit::private_redis::{self, PrivateRedis};
use rotator_testkit::scratch_postgres::ScratchDatabase;
use sqlx::PgPool;
use tokio::process::Child;
use tokio::time::Instant;
use tonic::transport::Channel;

const LEASE_TTL: Duration = Duration::from_secs(4);
const SCAN: Duration = Duration::from_secs(1);
const RELAY_TTL: Duration = Duration::from_secs(3);
const ROUNDS: usize = 6;
const MYSQL_ADMIN_PASSWORD: &str = "chaos-admin-Pw-53";

/// A local rotation under load.
#[derive(Clone)]
struct Local {
    id: String,
    rotation_type: RotationType,
}

/// What the replicas share.
struct Setup {
    config: PathBuf,
    store_url: String,
    nats_urls: String,
    prefix: String,
    stream: String,
    infisical: String,
}

/// A replica: its process, gRPC channel and admin port.
struct Replica {
    child: Child,
    channel: Channel,
    admin: u16,
}

fn write_config(
    dir: &Path,
    pg_port: u16,
    redis_port: u16,
    mysql_admin: &str,
    users: &Users,
) -> PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "pg"
app = "postgres"
host = "127.0.0.1"
port = {pg_port}
database = "postgres"
username = "{pg_admin}"
password = "env:PG_ADMIN"
tls = "disable"

[[connections]]
name = "maria"
app = "mysql"
host = "127.0.0.1"
port = {maria_port}
username = "{mysql_admin}"
password = "env:MYSQL_ADMIN"
tls = "disable"

[[connections]]
name = "redis"
app = "redis"
host = "127.0.0.1"
port = {redis_port}
username = "{redis_admin}"
password = "env:REDIS_ADMIN"
tls = "disable"

[[rotations]]
id = "{pg_id}"
name = "chaos-pg"
type = "postgres-credentials"
connection = "pg"
parameters = {{ username1 = "{pg1}", username2 = "{pg2}" }}
secrets_mapping = {{ username = "DB_USER", password = "DB_PASSWORD" }}

[[rotations]]
id = "{maria_id}"
name = "chaos-maria"
type = "mysql-credentials"
connection = "maria"
parameters = {{ username1 = "{my1}", username2 = "{my2}" }}
secrets_mapping = {{ username = "DB_USER", password = "DB_PASSWORD" }}

[[rotations]]
id = "{redis_id}"
name = "chaos-redis"
type = "redis-credentials"
connection = "redis"
parameters = {{ permissionScope = "~chaos:* +@read +@write" }}
secrets_mapping = {{ username = "REDIS_USER", password = "REDIS_PASSWORD" }}
"#,
        pg_admin = private_postgres::ADMIN_USER,
        maria_port = mariadb::PORT,
        redis_admin = private_redis::ADMIN_USER,
        pg_id = users.pg_id,
        pg1 = users.pg.0,
        pg2 = users.pg.1,
        maria_id = users.maria_id,
        my1 = users.maria.0,
        my2 = users.maria.1,
        redis_id = users.redis_id,
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Unique target users and rotation ids.
struct Users {
    pg_id: String,
    pg: (String, String),
    maria_id: String,
    maria: (String, String),
    redis_id: String,
}

async fn start_replica(setup: &Setup, dir: &Path, failpoint: Option<&str>) -> Replica {
    let port = free_port();
    let admin = free_port();
    let mut command = rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        &setup.config,
        dir,
        port,
        ("PG_ADMIN", private_postgres::ADMIN_PASSWORD),
    );
    command
        .env("MYSQL_ADMIN", MYSQL_ADMIN_PASSWORD)
        .env("REDIS_ADMIN", private_redis::ADMIN_PASSWORD)
        .env("ROTATOR_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("ROTATOR_STORE_URL", &setup.store_url)
        .env("ROTATOR_NATS_URL", &setup.nats_urls)
        .env("ROTATOR_NATS_SUBJECT_PREFIX", &setup.prefix)
        .env("ROTATOR_NATS_STREAM_NAME", &setup.stream)
        .env("ROTATOR_NATS_STREAM_REPLICAS", "3")
        .env("ROTATOR_INFISICAL_URL", &setup.infisical)
        .env("ROTATOR_INFISICAL_CLIENT_ID", CLIENT_ID)
        .env("ROTATOR_INFISICAL_CLIENT_SECRET", CLIENT_SECRET)
        .env(
            "ROTATOR_LOCAL_LEASE_TTL_SECONDS",
            LEASE_TTL.as_secs().to_string(),
        )
        .env("ROTATOR_LOCAL_LEASE_RENEW_SECONDS", "1")
        .env(
            "ROTATOR_LOCAL_SCAN_INTERVAL_SECONDS",
            SCAN.as_secs().to_string(),
        )
        .env(
            "ROTATOR_EVENTS_RELAY_LEASE_TTL_SECONDS",
            RELAY_TTL.as_secs().to_string(),
        );
    if let Some(failpoint) = failpoint {
        command.env("ROTATOR_FAILPOINT", failpoint);
    }
    let child = command.spawn().expect("spawn rotator");
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(90)).await;
    Replica {
        child,
        channel,
        admin,
    }
}

async fn rotate(
    channel: &Channel,
    rotation_type: RotationType,
    id: &str,
) -> Result<(), tonic::Status> {
    SecretRotationServiceClient::new(channel.clone())
        .rotate_secrets(RotateSecretsRequest {
            r#type: rotation_type as i32,
            rotation_id: id.to_owned(),
        })
        .await
        .map(drop)
}

async fn credentials(channel: &Channel, local: &Local) -> Vec<(String, String)> {
    SecretRotationServiceClient::new(channel.clone())
        .get_generated_credentials(GetGeneratedCredentialsRequest {
            r#type: local.rotation_type as i32,
            rotation_id: local.id.clone(),
        })
        .await
        .expect("GetGeneratedCredentials")
        .into_inner()
        .generated_credentials
        .into_iter()
        .map(|c| match c.kind {
            Some(
                generated_credential::Kind::PostgresCredentials(c)
                | generated_credential::Kind::MysqlCredentials(c)
                | generated_credential::Kind::RedisCredentials(c),
            ) => (c.username, c.password),
            other => panic!("unexpected credential {other:?}"),
        })
        .collect()
}

/// The state of attempt `id` in the shared store.
async fn attempt_state(pool: &PgPool, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT state FROM local_attempts WHERE attempt_id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .expect("read attempts")
}

/// Polls `check` every 100 ms until it holds, or panics after `limit` naming `what`.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rotator_events_relay_leader` of the replica's admin listener.
async fn relay_leader(admin: u16) -> Option<u64> {
    let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("rotator_events_relay_leader "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// One round of load: every local rotation on a replica, and the forwarded ones, at once.
/// A rotation held by another attempt answers ABORTED; that is load too.
async fn load_round(
    channels: &[Channel],
    locals: &[Local],
    forwarded: &[(RotationType, String)],
    round: usize,
) {
    let mut calls = Vec::new();
    for (i, local) in locals.iter().enumerate() {
        let channel = channels[(round + i) % channels.len()].clone();
        let local = local.clone();
        calls.push(tokio::spawn(async move {
            let _ = rotate(&channel, local.rotation_type, &local.id).await;
        }));
    }
    for (i, (rotation_type, id)) in forwarded.iter().enumerate() {
        let channel = channels[(round + i + 1) % channels.len()].clone();
        let (rotation_type, id) = (*rotation_type, id.clone());
        calls.push(tokio::spawn(async move {
            let _ = rotate(&channel, rotation_type, &id).await;
        }));
    }
    for call in calls {
        call.await.expect("join");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_a_jetstream_node_killed_lose_and_double_no_event() {
    // Targets with unique users.
    let pg = PrivatePostgres::shared();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let users = Users {
        pg_id: uuid::Uuid::new_v4().to_string(),
        pg: (format!("chaos_a_{tag}"), format!("chaos_b_{tag}")),
        maria_id: uuid::Uuid::new_v4().to_string(),
        maria: (mariadb::unique("ca"), mariadb::unique("cb")),
        redis_id: uuid::Uuid::new_v4().to_string(),
    };
    pg.create_role(&users.pg.0, "initial-a-Pw1").await;
    pg.create_role(&users.pg.1, "initial-b-Pw1").await;
    let mut accounts = mariadb::Accounts::default();
    let mysql_admin = mariadb::unique("cadm");
    accounts
        .create_admin(&mysql_admin, MYSQL_ADMIN_PASSWORD)
        .await;
    accounts.create(&users.maria.0, "%", "initial-a-Pw1").await;
    accounts.create(&users.maria.1, "%", "initial-b-Pw1").await;
    let redis = PrivateRedis::shared();
    let infisical = FakeInfisical::start().await;
    let forwarded: Vec<(RotationType, String)> = vec![
        (
            RotationType::AzureClientSecret,
            infisical.rotation_id("azure-client-secret").to_string(),
        ),
        (
            RotationType::AwsIamUserSecret,
            infisical.rotation_id("aws-iam-user-secret").to_string(),
        ),
    ];

    let mut nats = NatsCluster::start().await;
    let store = ScratchDatabase::create().await;
    let pool = store.pool().await;
    let names = unique_names();
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup {
        config: write_config(dir.path(), pg.port(), redis.port(), &mysql_admin, &users),
        store_url: store.url.clone(),
        nats_urls: nats.urls(),
        prefix: names.prefix.clone(),
        stream: names.stream.clone(),
        infisical: infisical.base_url(),
    };
    let locals = vec![
        Local {
            id: users.pg_id.clone(),
            rotation_type: RotationType::PostgresCredentials,
        },
        Local {
            id: users.maria_id.clone(),
            rotation_type: RotationType::MysqlCredentials,
        },
        Local {
            id: users.redis_id.clone(),
            rotation_type: RotationType::RedisCredentials,
        },
    ];

    // Replicas 1 and 2 first (they issue the first credentials), then replica 0, which parks
    // every attempt after APPLIED.
    let mut replica_1 = start_replica(&setup, &dir.path().join("r1"), None).await;
    let mut replica_2 = start_replica(&setup, &dir.path().join("r2"), None).await;
    let mut replica_0 =
        start_replica(&setup, &dir.path().join("r0"), Some("applied:pause=600000")).await;
    let live = vec![replica_1.channel.clone(), replica_2.channel.clone()];
    let stream_leader = nats
        .stream_leader(&names.stream, Duration::from_secs(30))
        .await;

    for round in 0..ROUNDS / 2 {
        load_round(&live, &locals, &forwarded, round).await;
    }

    // Park an attempt on replica 0, then kill it and the stream leader together.
    let parked_call = {
        let channel = replica_0.channel.clone();
        let id = users.pg_id.clone();
        tokio::spawn(async move { rotate(&channel, RotationType::PostgresCredentials, &id).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let parked: String = loop {
        let row: Option<String> =
            sqlx::query_scalar("SELECT attempt_id FROM local_attempts WHERE state = 'applied'")
                .fetch_optional(&pool)
                .await
                .expect("read attempts");
        if let Some(id) = row {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "an attempt parks at APPLIED on replica 0"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    replica_0.child.start_kill().expect("kill -9 replica 0");
    nats.kill(stream_leader);
    let killed_at = Instant::now();
    let _ = replica_0.child.wait().await;
    assert!(
        parked_call.await.expect("join").is_err(),
        "the killed replica never answered"
    );

    // Load goes on against the survivors while the stream elects a new leader.
    for round in ROUNDS / 2..ROUNDS {
        load_round(&live, &locals, &forwarded, round).await;
    }
    until(
        "the parked attempt resumed by another replica",
        // A hang guard, not the bound: the resume time is reported, never asserted (no timing
        // assertions in tests; docs/benchmarks.md records the measured figure).
        Duration::from_secs(120),
        || {
            let pool = pool.clone();
            let parked = parked.clone();
            async move {
                matches!(
                    attempt_state(&pool, &parked).await.as_deref(),
                    Some("committed" | "failed")
                )
            }
        },
    )
    .await;
    let resumed_after = killed_at.elapsed();

    // Both come back.
    nats.restart(stream_leader).await;
    let replica_0 = start_replica(&setup, &dir.path().join("r0"), None).await;
    let replicas = [&replica_0, &replica_1, &replica_2];
    for round in 0..2 {
        let all: Vec<Channel> = replicas.iter().map(|r| r.channel.clone()).collect();
        load_round(&all, &locals, &forwarded, round).await;
    }

    // Every attempt ended, and every event reached the stream.
    until("no attempt left open", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move {
            let open: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM local_attempts WHERE state NOT IN ('committed', 'failed')",
            )
            .fetch_one(&pool)
            .await
            .expect("count");
            open == 0
        }
    })
    .await;
    until("the outbox drained", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move {
            let waiting: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
                    .fetch_one(&pool)
                    .await
                    .expect("count");
            waiting == 0
        }
    })
    .await;

    let outbox: Vec<(String, String)> =
        sqlx::query_as("SELECT event_id, rotation_id FROM outbox ORDER BY seq")
            .fetch_all(&pool)
            .await
            .expect("outbox");
    let messages = stream_messages(&nats.url((stream_leader + 1) % 3), &names.stream).await;
    let in_stream: Vec<&str> = messages
        .iter()
        .filter_map(|m| header(m, "Nats-Msg-Id"))
        .collect();
    let unique: HashSet<&str> = in_stream.iter().copied().collect();
    let expected: HashSet<&str> = outbox.iter().map(|(id, _)| id.as_str()).collect();
    let doubled = in_stream.len() - unique.len();
    let lost = expected.difference(&unique).count();
    eprintln!(
        "chaos figures: {} events, {} in the stream, {lost} lost, {doubled} doubled; parked \
         attempt resumed {resumed_after:?} after the kill (bound: lease TTL {LEASE_TTL:?} + scan \
         {SCAN:?})",
        expected.len(),
        in_stream.len()
    );
    assert_eq!(doubled, 0, "no event is in the stream twice");
    assert_eq!(lost, 0, "every event is in the stream");
    assert_eq!(
        unique, expected,
        "the stream holds the outbox's events and nothing else"
    );

    // Per rotation, the stream keeps the outbox's order.
    let per_rotation = |pairs: Vec<(&str, &str)>| {
        let mut by_rotation: HashMap<String, Vec<String>> = HashMap::new();
        for (event, rotation) in pairs {
            by_rotation
                .entry(rotation.to_owned())
                .or_default()
                .push(event.to_owned());
        }
        by_rotation
    };
    let outbox_order = per_rotation(
        outbox
            .iter()
            .map(|(event, rotation)| (event.as_str(), rotation.as_str()))
            .collect(),
    );
    let rotation_of: HashMap<&str, &str> = outbox
        .iter()
        .map(|(event, rotation)| (event.as_str(), rotation.as_str()))
        .collect();
    let stream_order = per_rotation(
        in_stream
            .iter()
            .filter_map(|event| rotation_of.get(event).map(|rotation| (*event, *rotation)))
            .collect(),
    );
    assert_eq!(stream_order, outbox_order, "per-rotation order holds");

    // Per local rotation: one event per closed attempt.
    let closed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT rotation_id, COUNT(*) FROM local_attempts \
         WHERE state IN ('committed', 'failed') GROUP BY rotation_id",
    )
    .fetch_all(&pool)
    .await
    .expect("attempts");
    let mut events_per_rotation: HashMap<String, i64> = HashMap::new();
    for message in &messages {
        let event: serde_json::Value = serde_json::from_slice(&message.payload).expect("event");
        if let Some(rotation) = event["data"]["attempt"]["rotationId"].as_str() {
            *events_per_rotation.entry(rotation.to_owned()).or_default() += 1;
        }
    }
    for (rotation, attempts) in &closed {
        assert_eq!(
            events_per_rotation
                .get(rotation.as_str())
                .copied()
                .unwrap_or_default(),
            *attempts,
            "one event per attempt of rotation {rotation}"
        );
    }

    // Every stored credential logs in.
    let channel = &replica_1.channel;
    for (user, password) in credentials(channel, &locals[0]).await {
        assert!(
            pg_login(pg.port(), &user, &password).await,
            "{user} logs in"
        );
    }
    for (user, password) in credentials(channel, &locals[1]).await {
        assert!(mariadb::login(&user, &password).await, "{user} logs in");
    }
    for (user, password) in credentials(channel, &locals[2]).await {
        assert!(redis.connect(&user, &password).is_ok(), "{user} logs in");
    }

    // Exactly one relay leads, once a leader deposed during the chaos has noticed (at its next
    // renewal).
    let mut leaders = Vec::new();
    let deadline = Instant::now() + RELAY_TTL * 3;
    loop {
        leaders.clear();
        for replica in replicas {
            leaders.push(
                relay_leader(replica.admin)
                    .await
                    .expect("the gauge is exported"),
            );
        }
        if leaders.iter().sum::<u64>() == 1 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        leaders.iter().sum::<u64>(),
        1,
        "exactly one relay leads: {leaders:?}"
    );
    for (replica, leader) in replicas.iter().zip(&leaders) {
        let health: serde_json::Value =
            reqwest::get(format!("http://127.0.0.1:{}/healthz", replica.admin))
                .await
                .expect("/healthz")
                .json()
                .await
                .expect("JSON");
        let expected = if *leader == 1 { "leader" } else { "follower" };
        assert_eq!(health["relay"]["state"], expected, "{health}");
    }

    replica_1.child.start_kill().ok();
    replica_2.child.start_kill().ok();
    drop(accounts);
}
