//! Forwarding overhead: RotateSecrets through rotator vs the same rotate-secrets call made directly
//! over HTTP to the same fast fake upstream, in the same run, at concurrency 1 and 64.
//!
//! Run: `cargo bench --bench forwarding` (prints a Markdown table for docs/benchmarks.md).
//! Rounds alternate direct and forwarded so machine noise hits both alike; the median round is
//! reported.

/// The allocator the rotator binary uses (src/main.rs), so the in-process server runs as it
/// does in production; the direct path (client and fake) gets it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::rotator_server::{TestServer, forwarding_env};
use tokio::time::Instant;

const ROUNDS: usize = 3;

#[derive(Clone, Copy)]
enum Path {
    Direct,
    Forwarded,
}

struct Sample {
    throughput: f64,
    p50: Duration,
    p99: Duration,
}

struct Bench {
    fake: FakeInfisical,
    server: TestServer,
    http: reqwest::Client,
    token: String,
    ids: Vec<uuid::Uuid>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

impl Bench {
    async fn run(&self, path: Path, concurrency: usize, requests_per_worker: usize) -> Sample {
        let started = Instant::now();
        let mut workers = Vec::new();
        for worker in 0..concurrency {
            let id = self.ids[worker];
            let http = self.http.clone();
            let url = format!(
                "{}/api/v2/secret-rotations/postgres-credentials/{id}/rotate-secrets",
                self.fake.base_url()
            );
            let token = self.token.clone();
            let mut client = self.server.client().await;
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests_per_worker);
                for _ in 0..requests_per_worker {
                    let t = Instant::now();
                    match path {
                        Path::Direct => {
                            let response = http
                                .post(&url)
                                .bearer_auth(&token)
                                .send()
                                .await
                                .expect("direct call");
                            assert!(
                                response.status().is_success(),
                                "direct: {}",
                                response.status()
                            );
                            // A direct caller needs the object too: parse it, as rotator does.
                            let body = response.bytes().await.expect("body");
                            serde_json::from_slice::<serde_json::Value>(&body).expect("JSON body");
                        }
                        Path::Forwarded => {
                            let request = RotateSecretsRequest {
                                r#type: RotationType::PostgresCredentials as i32,
                                rotation_id: id.to_string(),
                            };
                            client
                                .rotate_secrets(request)
                                .await
                                .expect("forwarded call");
                        }
                    }
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.expect("worker"));
        }
        let elapsed = started.elapsed();
        all.sort();
        Sample {
            throughput: all.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&all, 0.5),
            p99: percentile(&all, 0.99),
        }
    }
}

fn median(mut samples: Vec<Sample>) -> Sample {
    samples.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    samples.swap_remove(samples.len() / 2)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

async fn login(fake: &FakeInfisical, http: &reqwest::Client) -> String {
    let body: serde_json::Value = http
        .post(format!(
            "{}/api/v1/auth/universal-auth/login",
            fake.base_url()
        ))
        .json(&serde_json::json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    body["accessToken"].as_str().expect("token").to_owned()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let fake = FakeInfisical::start().await;
        let server = TestServer::start(forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET)).await;
        let http = reqwest::Client::new();
        let token = login(&fake, &http).await;
        let ids = (0..64).map(|i| fake.add_rotation("postgres-credentials", &format!("bench-{i}"))).collect();
        let bench = Bench { fake, server, http, token, ids };
        // Warm both paths (connections, token, allocator).
        bench.run(Path::Direct, 8, 50).await;
        bench.run(Path::Forwarded, 8, 50).await;

        // The fast fake first (the measure the target names), then an upstream that takes
        // 5 ms per rotate, closer to a real Infisical behind a network.
        for (service_time, c1_calls) in [(Duration::ZERO, 1500usize), (Duration::from_millis(5), 300)] {
            bench.fake.set_rotate_latency(service_time);
            println!();
            println!("Upstream rotate service time: {} ms", service_time.as_millis());
            println!();
            println!("| concurrency | path | throughput (req/s) | p50 (ms) | p99 (ms) |");
            println!("|---|---|---|---|---|");
            let mut summary = Vec::new();
            for (concurrency, per_worker) in [(1usize, c1_calls), (64, 120)] {
                let (mut direct, mut forwarded) = (Vec::new(), Vec::new());
                for _ in 0..ROUNDS {
                    direct.push(bench.run(Path::Direct, concurrency, per_worker).await);
                    forwarded.push(bench.run(Path::Forwarded, concurrency, per_worker).await);
                }
                let (d, f) = (median(direct), median(forwarded));
                for (name, s) in [("direct HTTP", &d), ("via rotator", &f)] {
                    println!("| {concurrency} | {name} | {:.0} | {} | {} |", s.throughput, ms(s.p50), ms(s.p99));
                }
                summary.push((concurrency, f.throughput / d.throughput, f.p50.saturating_sub(d.p50), f.p99.saturating_sub(d.p99)));
            }
            println!();
            println!("| concurrency | throughput ratio (rotator / direct) | added p50 (ms) | added p99 (ms) |");
            println!("|---|---|---|---|");
            for (concurrency, ratio, p50, p99) in summary {
                println!("| {concurrency} | {ratio:.2} | {} | {} |", ms(p50), ms(p99));
            }
        }
        let Bench { fake, server, .. } = bench;
        server.shutdown().await;
        fake.shutdown().await;
    });
}
