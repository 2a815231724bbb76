//! Local PostgreSQL rotation: RotateSecrets through rotator (gRPC, real binary) against the floor
//! measured in the same run (one `ALTER ROLE … PASSWORD '<SCRAM verifier>'` on an open admin
//! connection plus one fresh scram login), and 100 distinct rotations in parallel vs serial.
//!
//! Run: `cargo bench --bench local` (starts its own scram-only PostgreSQL cluster; prints a
//! Markdown table for docs/benchmarks.md).

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator::secret::SecretString;
use rotator_testkit::local_server::{KEY, free_port, pg_login, wait_serving};
use rotator_testkit::private_postgres::{ADMIN_PASSWORD, ADMIN_USER, PrivatePostgres};
use sqlx::{AssertSqlSafe, ConnectOptions as _};
use tokio::time::Instant;

/// Rotations declared (the parallel-vs-serial set).
const ROTATIONS: usize = 100;
/// The connection's `max_parallel_rotations` in the parallel run: rotator bounds the calls
/// itself (the bench sends all 100 at once).
const IN_FLIGHT: usize = 16;
/// Timed rounds of the latency comparison (each: one floor, one RotateSecrets).
const ROUNDS: usize = 100;

fn rotation_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let mut text = format!(
        r#"
[[connections]]
name = "pg"
app = "postgres"
host = "127.0.0.1"
port = {port}
database = "postgres"
username = "{ADMIN_USER}"
password = "env:PG_ADMIN"
tls = "disable"
max_parallel_rotations = {IN_FLIGHT}
"#
    );
    for i in 0..ROTATIONS {
        let _ = write!(
            text,
            r#"
[[rotations]]
id = "{}"
name = "bench-{i}"
type = "postgres-credentials"
connection = "pg"
auto_rotation = false
parameters = {{ username1 = "bench_{i}_a", username2 = "bench_{i}_b" }}
secrets_mapping = {{ username = "U", password = "P" }}
"#,
            rotation_id(i)
        );
    }
    let path = dir.join("rotator.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// CPU time the whole machine has spent (user, nice, system, irq, softirq), from `/proc/stat`:
/// rotator, PostgreSQL and this client together. Linux only; zero elsewhere.
fn machine_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(7)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4) // idle, iowait
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn rotate(client: &mut SecretRotationServiceClient<tonic::transport::Channel>, i: usize) {
    client
        .rotate_secrets(RotateSecretsRequest {
            r#type: RotationType::PostgresCredentials as i32,
            rotation_id: rotation_id(i),
        })
        .await
        .expect("RotateSecrets");
}

#[tokio::main]
async fn main() {
    let pg = PrivatePostgres::shared();
    for i in 0..ROTATIONS {
        pg.create_role(&format!("bench_{i}_a"), "initial-Pw-1")
            .await;
        pg.create_role(&format!("bench_{i}_b"), "initial-Pw-1")
            .await;
    }
    pg.create_role("bench_floor", "initial-Pw-1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"))
        .args(["serve", "--config"])
        .arg(config(dir.path(), pg.port()))
        .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROTATOR_DATA_DIR", dir.path().join("data"))
        .env("ROTATOR_ENCRYPTION_KEY", KEY)
        .env("PG_ADMIN", ADMIN_PASSWORD)
        .env_remove("ROTATOR_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rotator");
    // Start-up issues slot 0 of all 100 rotations before serving.
    let channel = wait_serving(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(300),
    )
    .await;
    let mut client = SecretRotationServiceClient::new(channel.clone());

    // The floor: an open admin connection, one ALTER ROLE with a client-side verifier, one
    // fresh login with the new password.
    let mut admin = sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(pg.port())
        .username(ADMIN_USER)
        .password(ADMIN_PASSWORD)
        .database("postgres")
        .ssl_mode(sqlx::postgres::PgSslMode::Disable)
        .disable_statement_logging()
        .connect()
        .await
        .expect("admin connection");

    // Warm-up.
    rotate(&mut client, 0).await;
    let (mut floor, mut local) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let password = format!("floor-Pw-{round}-{}", uuid::Uuid::new_v4().simple());
        let started = Instant::now();
        let verifier =
            rotator::drivers::scram::verifier(&SecretString::new(password.clone())).expect("v");
        let literal = rotator::drivers::quote::pg_literal(verifier.expose()).expect("literal");
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER ROLE bench_floor PASSWORD {literal}"
        )))
        .execute(&mut admin)
        .await
        .expect("ALTER ROLE");
        assert!(
            pg_login(pg.port(), "bench_floor", &password).await,
            "floor login"
        );
        floor.push(started.elapsed());

        let started = Instant::now();
        rotate(&mut client, 0).await;
        local.push(started.elapsed());
    }
    floor.sort();
    local.sort();

    // 100 distinct rotations: serial, then all at once.
    let (started, cpu_before) = (Instant::now(), machine_cpu());
    for i in 0..ROTATIONS {
        rotate(&mut client, i).await;
    }
    let serial = started.elapsed();
    let serial_cpu = machine_cpu().saturating_sub(cpu_before);
    let (started, cpu_before) = (Instant::now(), machine_cpu());
    // All at once: rotator's per-connection bound keeps the target's sessions in check.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..ROTATIONS {
        let mut client = SecretRotationServiceClient::new(channel.clone());
        set.spawn(async move {
            rotate(&mut client, i).await;
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("join");
    }
    let parallel = started.elapsed();
    let parallel_cpu = machine_cpu().saturating_sub(cpu_before);

    let serial_rate = ROTATIONS as f64 / serial.as_secs_f64();
    let parallel_rate = ROTATIONS as f64 / parallel.as_secs_f64();
    println!("| measure | p50 (ms) | p99 (ms) |");
    println!("|---|---|---|");
    println!(
        "| floor: ALTER ROLE (SCRAM verifier) + fresh login | {} | {} |",
        ms(percentile(&floor, 0.5)),
        ms(percentile(&floor, 0.99))
    );
    println!(
        "| local RotateSecrets (gRPC, end to end) | {} | {} |",
        ms(percentile(&local, 0.5)),
        ms(percentile(&local, 0.99))
    );
    println!(
        "| ratio local / floor | {:.2}× | {:.2}× |",
        percentile(&local, 0.5).as_secs_f64() / percentile(&floor, 0.5).as_secs_f64(),
        percentile(&local, 0.99).as_secs_f64() / percentile(&floor, 0.99).as_secs_f64()
    );
    println!();
    println!(
        "Parallel: all {ROTATIONS} calls sent at once; rotator runs {IN_FLIGHT} at a time \
         (max_parallel_rotations)."
    );
    println!();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu_per_rotation = serial_cpu.as_secs_f64() / ROTATIONS as f64;
    println!(
        "| {ROTATIONS} distinct rotations | wall (s) | rotations/s | machine CPU per rotation (ms) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| serial | {:.2} | {serial_rate:.1} | {:.1} |",
        serial.as_secs_f64(),
        cpu_per_rotation * 1000.0
    );
    println!(
        "| parallel | {:.2} | {parallel_rate:.1} | {:.1} |",
        parallel.as_secs_f64(),
        parallel_cpu.as_secs_f64() / ROTATIONS as f64 * 1000.0
    );
    println!(
        "| ratio parallel / serial | | {:.2}× | |",
        parallel_rate / serial_rate
    );
    println!();
    println!(
        "CPU ceiling: {cores} cores / {:.1} ms of CPU per rotation = {:.0} rotations/s at most, \
         {:.1}× the serial rate.",
        cpu_per_rotation * 1000.0,
        cores as f64 / cpu_per_rotation,
        cores as f64 / cpu_per_rotation / serial_rate
    );
}
