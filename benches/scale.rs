//! Scale: 10,000 registered local rotations (Redis ACL users on a private `redis-server`, the
//! cheapest target there is) through the real binary, release build.
//!
//! Measures, in one run:
//! - start-up time (spawn → gRPC health SERVING): the first start, which issues every
//!   rotation's first credential, and a restart with all of them issued;
//! - idle RSS with 0, 5,000 and 10,000 registered rotations (each the median of three
//!   processes): the difference per rotation from 0, and the marginal one from 5,000 to
//!   10,000 (without the one-off costs of having any);
//! - the scheduler's scan time (open attempts, the due query, the registry match) with 10,000
//!   registered, from its `scheduler scan finished` log line;
//! - 1,000 rotations falling due at once (their `next_rotation_at` moved into the past while
//!   rotator is stopped): the time until the scan that picked them up has finished them all,
//!   against the floor measured in the same run: the same Redis commands the driver sends
//!   (`ACL SETUSER … reset on #<sha256> <scope>`, `ACL SAVE`, a fresh connection's `AUTH`) for
//!   1,000 users, with the same parallelism, without rotator. Floor and due phase alternate
//!   for three rounds (each a burst of a tenth of a second); the ratio is their median, and
//!   each round must commit every due rotation.
//!
//! Run: `cargo bench --bench scale` (a few minutes; prints a Markdown table for
//! docs/benchmarks.md). Not part of the test suite.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rotator_testkit::local_server::{KEY, free_port, wait_serving};
use rotator_testkit::private_redis::{
    ADMIN_PASSWORD, ADMIN_USER, MANY_SCOPE, PrivateRedis, many_rotation_id, many_rotations_toml,
};
use sha2::Digest as _;
use tokio::io::AsyncBufReadExt as _;
use tokio::time::Instant;

/// Rotations registered (`SCALE_REGISTERED` overrides, for a quick trial).
const REGISTERED: usize = 10_000;
/// Rotations made due at once (`SCALE_DUE` overrides).
const DUE: usize = 1_000;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
/// `max_parallel_rotations` of the connection, and the floor's concurrency, unless set.
const PARALLEL: usize = 16;

/// [`PARALLEL`], or `SCALE_PARALLEL` within the setting's 1–256.
fn parallel() -> usize {
    count("SCALE_PARALLEL", PARALLEL).clamp(1, 256)
}

/// Idle RSS readings per configuration, each from a process of its own; the median is used
/// (single readings of the same configuration differed by several MB).
const RSS_RUNS: usize = 3;
/// Rounds of the due phase and the floor, alternating (`SCALE_ROUNDS` overrides); the ratio
/// reported is their median.
const ROUNDS: usize = 3;

/// Settling time before RSS is read, as scripts/idle_rss.sh does.
const SETTLE: Duration = Duration::from_secs(3);

fn write_config(dir: &Path, redis_port: u16, rotations: usize) -> PathBuf {
    let text = many_rotations_toml(redis_port, parallel(), rotations);
    let path = dir.join(format!("rotator-{rotations}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// A running `rotator serve` whose JSON log lines are kept.
struct Server {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    started_in: Duration,
}

impl Server {
    async fn start(config: Option<&Path>, data_dir: &Path) -> Self {
        let port = free_port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"));
        command.arg("serve");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let started = Instant::now();
        let mut child = command
            .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROTATOR_ADMIN_LISTEN", "off")
            .env("ROTATOR_DATA_DIR", data_dir)
            .env("ROTATOR_ENCRYPTION_KEY", KEY)
            .env("REDIS_ADMIN", ADMIN_PASSWORD)
            .env(
                "RUST_LOG",
                "warn,rotator::local::scheduler=debug,rotator::local::batch=info",
            )
            .env_remove("ROTATOR_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rotator");
        // Kept as text and parsed only when looked at: parsing each of the due phase's
        // thousand lines as it arrives would take CPU from the process being measured.
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let kept = Arc::clone(&lines);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                if line.starts_with('{') {
                    kept.lock().expect("lines").push(line);
                } else {
                    // A configuration error is plain text.
                    eprintln!("rotator: {line}");
                }
            }
        });
        let url = format!("http://127.0.0.1:{port}");
        tokio::select! {
            _ = wait_serving(&url, Duration::from_secs(3600)) => {}
            status = child.wait() => panic!("rotator exited before serving: {status:?}"),
        }
        Self {
            child,
            lines,
            started_in: started.elapsed(),
        }
    }

    /// The next `scheduler scan finished` line after the first `skip`, waiting for it.
    async fn scan(&self, skip: usize) -> serde_json::Value {
        loop {
            let found = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .filter(|l| l.contains(r#""message":"scheduler scan finished""#))
                .nth(skip)
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
            if let Some(line) = found {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many log lines say `message`.
    fn count(&self, message: &str) -> usize {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l.contains(&format!(r#""message":"{message}""#)))
            .count()
    }

    /// Scheduled rotations committed: one line each through the one-rotation path, one line
    /// per batch (with the count) through a batch.
    fn committed(&self) -> usize {
        let batched: u64 = self
            .lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l.contains(r#""message":"scheduled batch committed""#))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|l| l["committed"].as_u64())
            .sum();
        self.count("scheduled rotation committed") + batched as usize
    }

    /// Waits until `count` rotations have committed.
    async fn wait_committed(&self, count: usize) {
        while self.committed() < count {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rss_kb(&self) -> u64 {
        let pid = self.child.id().expect("running");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then waits for the exit.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = self.child.wait().await;
    }
}

/// Moves the first `count` rotations' next rotation time into the past (rotator stopped).
async fn make_due(data_dir: &Path, count: usize) {
    use sqlx::ConnectOptions as _;
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("rotator.db"))
        .connect()
        .await
        .expect("open the store");
    let past = chrono::Utc::now().timestamp_millis() - 60_000;
    for i in 0..count {
        sqlx::query("UPDATE local_rotations SET next_rotation_at = $1 WHERE rotation_id = $2")
            .bind(past)
            .bind(many_rotation_id(i))
            .execute(&mut db)
            .await
            .expect("make due");
    }
}

/// The floor: the driver's Redis commands for `count` users, [`parallel`] at a time.
async fn floor(redis_port: u16, count: usize) -> Duration {
    let admin_url = format!("redis://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{redis_port}/");
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallel() {
        let next = Arc::clone(&next);
        let admin_url = admin_url.clone();
        workers.spawn(async move {
            let client = redis::Client::open(admin_url).expect("admin url");
            let mut admin = client
                .get_multiplexed_async_connection()
                .await
                .expect("admin connects");
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let user = format!("floor-{i}");
                let password = format!("floor-Pw-{i}-{}", uuid::Uuid::new_v4());
                let hash = hex::encode(sha2::Sha256::digest(password.as_bytes()));
                redis::cmd("ACL")
                    .arg("SETUSER")
                    .arg(&user)
                    .arg("reset")
                    .arg("on")
                    .arg(format!("#{hash}"))
                    .arg(MANY_SCOPE.split(' ').collect::<Vec<_>>())
                    .query_async::<()>(&mut admin)
                    .await
                    .expect("ACL SETUSER");
                // Without an ACL file Redis refuses; the driver ignores that answer too.
                let _ = redis::cmd("ACL")
                    .arg("SAVE")
                    .query_async::<()>(&mut admin)
                    .await;
                let login = redis::Client::open(format!(
                    "redis://{user}:{password}@127.0.0.1:{redis_port}/"
                ))
                .expect("user url");
                login
                    .get_multiplexed_async_connection()
                    .await
                    .expect("the user logs in");
            }
        });
    }
    while workers.join_next().await.is_some() {}
    started.elapsed()
}

/// The median of `first` and [`RSS_RUNS`]` - 1` more idle readings, each from a fresh
/// process on `config` and `data_dir`, read after [`SETTLE`].
async fn median_rss(first: u64, config: Option<&Path>, data_dir: &Path) -> u64 {
    let mut readings = vec![first];
    for _ in 1..RSS_RUNS {
        let server = Server::start(config, data_dir).await;
        tokio::time::sleep(SETTLE).await;
        readings.push(server.rss_kb());
        server.stop().await;
    }
    readings.sort_unstable();
    eprintln!("scale: idle RSS readings {readings:?} kB");
    readings[readings.len() / 2]
}

fn ms(value: &serde_json::Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    // No ACL file: the cheapest target (ACL SAVE answers "no ACL file", as the driver allows).
    let (registered, due_count) = (
        count("SCALE_REGISTERED", REGISTERED),
        count("SCALE_DUE", DUE),
    );
    let redis = PrivateRedis::start(false);
    let dir = tempfile::tempdir().expect("tempdir");

    // 0 registered: the baseline footprint.
    eprintln!("scale: baseline");
    let empty = Server::start(None, &dir.path().join("empty")).await;
    tokio::time::sleep(SETTLE).await;
    let (empty_start, empty_rss) = (empty.started_in, empty.rss_kb());
    empty.stop().await;
    let empty_rss = median_rss(empty_rss, None, &dir.path().join("empty")).await;

    // 10,000 registered: the first start issues every first credential.
    eprintln!("scale: first start");
    let data = dir.path().join("data");
    let config = write_config(dir.path(), redis.port(), registered);
    let first = Server::start(Some(&config), &data).await;
    let first_start = first.started_in;
    first.stop().await;

    // Restart: everything issued, nothing due. The first scan runs at start.
    eprintln!("scale: restart");
    let idle = Server::start(Some(&config), &data).await;
    let idle_scan = idle.scan(0).await;
    tokio::time::sleep(SETTLE).await;
    let (restart, idle_rss) = (idle.started_in, idle.rss_kb());
    idle.stop().await;
    let idle_rss = median_rss(idle_rss, Some(&config), &data).await;

    // Half of them registered, on the same store: the marginal cost of a rotation, without
    // what any registered rotation costs once (caches, prepared statements, thread stacks).
    eprintln!("scale: restart with half registered");
    let half = registered / 2;
    let half_config = write_config(dir.path(), redis.port(), half);
    let half_server = Server::start(Some(&half_config), &data).await;
    tokio::time::sleep(SETTLE).await;
    let half_rss = half_server.rss_kb();
    half_server.stop().await;
    let half_rss = median_rss(half_rss, Some(&half_config), &data).await;

    // 1,000 due at once, against the floor, in alternating rounds: both are bursts of a tenth
    // of a second, so one reading of either swings with whatever else the machine does.
    let mut rounds = Vec::new();
    let mut due_scan = serde_json::Value::Null;
    let mut after = None;
    for round in 0..count("SCALE_ROUNDS", ROUNDS).max(1) {
        eprintln!("scale: floor, round {round}");
        let floor_wall = floor(redis.port(), due_count).await;

        // The scan at start picks them up.
        eprintln!("scale: due at once, round {round}");
        make_due(&data, due_count).await;
        let busy = Server::start(Some(&config), &data).await;
        let scan = busy.scan(0).await;
        if round == 0 {
            // The next scan (30 s later) finds nothing left due.
            after = tokio::time::timeout(Duration::from_secs(40), busy.scan(1))
                .await
                .ok();
        } else {
            busy.wait_committed(due_count).await;
        }
        // Every due rotation committed (a failure would also leave nothing due).
        let committed = busy.committed();
        busy.stop().await;
        assert_eq!(
            committed, due_count,
            "{committed} of {due_count} due rotations committed"
        );
        let due = scan["due"].as_u64().unwrap_or(0);
        assert_eq!(due, due_count as u64, "the scan found {due} due: {scan}");
        rounds.push((ms(&scan["elapsed_ms"]), floor_wall.as_secs_f64() * 1000.0));
        due_scan = scan;
    }
    let rate_of = |ms: f64| due_count as f64 / (ms / 1000.0);
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|(due_ms, floor_ms)| rate_of(*due_ms) / rate_of(*floor_ms))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let per_rotation = (idle_rss.saturating_sub(empty_rss) as f64 * 1024.0) / registered as f64;
    let marginal =
        (idle_rss.saturating_sub(half_rss) as f64 * 1024.0) / (registered - half).max(1) as f64;

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| start-up, 0 registered | {:.0} ms |",
        empty_start.as_secs_f64() * 1000.0
    );
    println!(
        "| first start, {registered} registered (issues every first credential) | {:.1} s |",
        first_start.as_secs_f64()
    );
    println!(
        "| restart, {registered} registered | {:.0} ms |",
        restart.as_secs_f64() * 1000.0
    );
    println!(
        "| idle RSS, 0 / {registered} registered | {:.1} MB / {:.1} MB |",
        empty_rss as f64 / 1024.0,
        idle_rss as f64 / 1024.0
    );
    println!("| RSS per registered rotation (from 0) | {per_rotation:.0} bytes |");
    println!(
        "| idle RSS, {half} registered; marginal RSS per rotation ({half} → {registered}) | {:.1} MB; {marginal:.0} bytes |",
        half_rss as f64 / 1024.0
    );
    println!(
        "| scheduler scan, {registered} registered, 0 due | {:.1} ms |",
        ms(&idle_scan["scan_ms"])
    );
    println!(
        "| scheduler scan, {registered} registered, {due_count} due (finding them) | {:.1} ms |",
        ms(&due_scan["scan_ms"])
    );
    if let Some(line) = after {
        println!(
            "| scheduler scan after the run (due / scan) | {} / {:.1} ms |",
            line["due"],
            ms(&line["scan_ms"])
        );
    }
    for (round, (due_ms, floor_ms)) in rounds.iter().enumerate() {
        println!(
            "| round {round}: {due_count} due at once, all finished / floor ({due_count} bare ACL changes + logins, {} at a time) | {:.3} s ({:.0}/s) / {:.3} s ({:.0}/s): {:.2}× |",
            parallel(),
            due_ms / 1000.0,
            rate_of(*due_ms),
            floor_ms / 1000.0,
            rate_of(*floor_ms),
            rate_of(*due_ms) / rate_of(*floor_ms)
        );
    }
    println!(
        "| ratio rotator / floor rate, median of {} rounds (lowest–highest) | {:.2}× ({:.2}–{:.2}×) |",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}
