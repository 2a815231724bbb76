//! Observability overhead: RotateSecrets throughput with every call traced and exported over
//! OTLP/gRPC (to a collector inside the bench, default batching, 100 % sampling) vs no exporter
//! at all, in the same run, at concurrency 1 and 64. Two more setups: the tracing layer on but
//! nothing sampled (`OTEL_TRACES_SAMPLER=always_off`: the cost of the instrumentation alone), and
//! export to a dead collector (connection refused: export never waits on the collector).
//!
//! Run: `cargo bench --bench telemetry` (prints Markdown tables for docs/benchmarks.md).
//!
//! Each setup has its own multi-thread runtime whose threads use that setup's subscriber, its
//! own fake Infisical and its own rotator server; the collector and the exporters' I/O run on a
//! separate runtime, as a collector sidecar would on its own cores... except that here it shares
//! the same two cores, so its decoding cost counts against the traced setup. Rounds alternate
//! between setups so machine noise hits all alike; the median round is reported (the mean for
//! CPU per request, which /proc counts in 10 ms ticks).

/// The allocator the rotator binary uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use rotator::config::{Config, Env, LogFormat};
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator::telemetry::Telemetry;
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::otlp::OtlpCollector;
use rotator_testkit::rotator_server::{TestServer, forwarding_env};
use tokio::runtime::Runtime;
use tokio::time::Instant;

const ROUNDS: usize = 31;
const WORKER_THREADS: usize = 2;

/// One configuration under test.
struct Setup {
    name: &'static str,
    runtime: Runtime,
    dispatch: tracing::Dispatch,
    telemetry: Telemetry,
    fake: FakeInfisical,
    server: TestServer,
    ids: Vec<uuid::Uuid>,
}

struct Sample {
    throughput: f64,
    p50: Duration,
    p99: Duration,
    /// Process CPU time per request, export and collector included (the round ends with a
    /// flush of the setup's spans).
    cpu_per_request: Duration,
}

/// CPU time used by this process so far (user + system), from /proc/self/stat.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn mean(v: Vec<Duration>) -> Duration {
    v.iter().sum::<Duration>() / v.len().max(1) as u32
}

/// The median of each measure, taken separately (the mean for CPU time).
fn median(samples: Vec<Sample>) -> Sample {
    fn mid<T: Copy>(mut v: Vec<T>, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> T {
        v.sort_by(cmp);
        v[v.len() / 2]
    }
    Sample {
        throughput: mid(
            samples.iter().map(|s| s.throughput).collect(),
            f64::total_cmp,
        ),
        p50: mid(samples.iter().map(|s| s.p50).collect(), Ord::cmp),
        p99: mid(samples.iter().map(|s| s.p99).collect(), Ord::cmp),
        // Ticks are 10 ms: the mean over every round is finer than a median of coarse rounds.
        cpu_per_request: mean(samples.iter().map(|s| s.cpu_per_request).collect()),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

impl Setup {
    /// Builds telemetry from `otel` on the export runtime, then a runtime whose every thread
    /// uses it, with a fake and a server on it.
    fn new(name: &'static str, otel: &[(&str, String)], export_runtime: &Runtime) -> Self {
        let mut env: Env = otel
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        env.insert("OTEL_METRICS_EXPORTER".into(), "none".into());
        env.insert("RUST_LOG".into(), "info".into());
        let config = Config::load(None, &env).expect("valid telemetry config");
        let (dispatch, telemetry) = export_runtime.block_on(async {
            Telemetry::builder(&config.telemetry, LogFormat::Json)
                .with_writer(std::io::sink)
                .build()
                .expect("telemetry builds")
        });
        let thread_dispatch = dispatch.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .enable_all()
            .on_thread_start(move || {
                // The runtime's threads live as long as the runtime: keep the default for good.
                std::mem::forget(tracing::dispatcher::set_default(&thread_dispatch));
            })
            .build()
            .expect("runtime");
        let (fake, server, ids) = tracing::dispatcher::with_default(&dispatch, || {
            runtime.block_on(async {
                let fake = FakeInfisical::start().await;
                let mut server_env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
                server_env.extend(env.clone());
                let server = TestServer::start(server_env).await;
                let ids = (0..64)
                    .map(|i| fake.add_rotation("postgres-credentials", &format!("bench-{i}")))
                    .collect();
                (fake, server, ids)
            })
        });
        Self {
            name,
            runtime,
            dispatch,
            telemetry,
            fake,
            server,
            ids,
        }
    }

    fn run(&self, concurrency: usize, per_worker: usize, export_runtime: &Runtime) -> Sample {
        let cpu_before = process_cpu();
        let mut sample = tracing::dispatcher::with_default(&self.dispatch, || {
            self.runtime.block_on(async {
                let started = Instant::now();
                let mut workers = Vec::new();
                for worker in 0..concurrency {
                    let id = self.ids[worker];
                    let mut client = self.server.client().await;
                    workers.push(tokio::spawn(async move {
                        let mut latencies = Vec::with_capacity(per_worker);
                        for _ in 0..per_worker {
                            let t = Instant::now();
                            client
                                .rotate_secrets(RotateSecretsRequest {
                                    r#type: RotationType::PostgresCredentials as i32,
                                    rotation_id: id.to_string(),
                                })
                                .await
                                .expect("rotation");
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
                    cpu_per_request: Duration::ZERO,
                }
            })
        });
        export_runtime.block_on(self.telemetry.flush());
        let requests = (concurrency * per_worker) as u32;
        sample.cpu_per_request = process_cpu().saturating_sub(cpu_before) / requests;
        sample
    }

    fn stop(self, export_runtime: &Runtime) {
        let Setup {
            runtime,
            dispatch,
            telemetry,
            fake,
            server,
            ..
        } = self;
        tracing::dispatcher::with_default(&dispatch, || {
            runtime.block_on(async {
                server.shutdown().await;
                fake.shutdown().await;
            })
        });
        export_runtime.block_on(telemetry.shutdown(Duration::from_secs(2)));
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

fn main() {
    // The collector and every exporter's I/O live here.
    let export_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("export runtime");
    let collector = export_runtime.block_on(OtlpCollector::start_grpc_discarding());
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let setups = vec![
        Setup::new("no exporter", &[], &export_runtime),
        Setup::new(
            "traces exported (OTLP/gRPC)",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ],
            &export_runtime,
        ),
        Setup::new(
            "traces on, nothing sampled",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
                ("OTEL_TRACES_SAMPLER", "always_off".to_owned()),
            ],
            &export_runtime,
        ),
        Setup::new(
            "traces to a dead collector",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{dead}")),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ],
            &export_runtime,
        ),
    ];
    // Warm every path (connections, token, allocator).
    for s in &setups {
        s.run(8, 50, &export_runtime);
    }

    println!(
        "| concurrency | setup | throughput (req/s) | p50 (ms) | p99 (ms) | CPU per request (µs) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (concurrency, per_worker) in [(1usize, 300usize), (64, 10)] {
        let mut samples: Vec<Vec<Sample>> = setups.iter().map(|_| Vec::new()).collect();
        for _ in 0..ROUNDS {
            for (i, s) in setups.iter().enumerate() {
                samples[i].push(s.run(concurrency, per_worker, &export_runtime));
            }
        }
        // Throughput ratio: the median of per-round ratios, each against the baseline round run
        // just before it, so slow drifts in the machine's load cancel out.
        let paired: Vec<f64> = (1..setups.len())
            .map(|i| {
                let mut r: Vec<f64> = samples[i]
                    .iter()
                    .zip(&samples[0])
                    .map(|(s, base)| s.throughput / base.throughput)
                    .collect();
                r.sort_by(f64::total_cmp);
                r[r.len() / 2]
            })
            .collect();
        let medians: Vec<Sample> = samples.into_iter().map(median).collect();
        for (s, m) in setups.iter().zip(&medians) {
            println!(
                "| {concurrency} | {} | {:.0} | {} | {} | {} |",
                s.name,
                m.throughput,
                ms(m.p50),
                ms(m.p99),
                m.cpu_per_request.as_micros()
            );
        }
        let base = &medians[0];
        ratios.push((
            concurrency,
            medians
                .iter()
                .skip(1)
                .zip(paired)
                .map(|(m, throughput)| {
                    (
                        throughput,
                        m.cpu_per_request.as_secs_f64() / base.cpu_per_request.as_secs_f64(),
                    )
                })
                .collect::<Vec<_>>(),
        ));
    }
    println!();
    println!(
        "Ratios to \"no exporter\" (throughput: median of paired rounds; CPU per request: mean):"
    );
    println!();
    let names: Vec<&str> = setups.iter().skip(1).map(|s| s.name).collect();
    println!("| concurrency | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for (concurrency, row) in ratios {
        let cells: Vec<String> = row.iter().map(|(t, c)| format!("{t:.2}; {c:.2}")).collect();
        println!("| {concurrency} | {} |", cells.join(" | "));
    }
    export_runtime.block_on(setups[1].telemetry.flush());
    println!();
    println!(
        "spans received by the collector: {}",
        collector.span_count()
    );
    for s in setups {
        s.stop(&export_runtime);
    }
}
