//! Local rotations of cloud identities: for each of the five provider-issued (or provider-held)
//! secret types, a local `RotateSecrets` through rotator against the floor measured in the same
//! run against the same fake: the provider calls one rotation needs, made directly through the
//! type's driver.
//!
//! Run: `cargo bench --bench cloud` (needs `python3 -m moto.server`, which scripts/test.sh
//! installs; prints a Markdown table for docs/benchmarks.md).
//!
//! - **Floor**, issued types (AWS, Azure, Okta, Databricks): `list`, `issue`, `verify` and
//!   `revoke` of the secret the new one replaces, on a principal of its own that holds two
//!   secrets, as the rotated principal does. Where the provider caps a principal at two secrets
//!   (AWS access keys, Okta client secrets) the floor revokes before it issues, which is the
//!   least a rotation can do there. Auth0 (chosen secret, single-phase): `apply` (rotate the
//!   client's secret to a generated value) and `verify` (a client-credentials token with it).
//! - **Rotation**: `RotateSecrets` over gRPC to the rotator binary (release, spawned on
//!   loopback, store in a temp dir) serving all five rotations, each on a connection to the
//!   same fake instance as its floor. Connection options are the same for both: the floor's
//!   drivers are built from the same connection tables by the same code the server uses.
//! - In-driver waits meant for real clouds are off: `verify_retry_seconds = 0` (AWS) and
//!   `propagation_wait_seconds = 0` (Azure, Auth0); Okta and Databricks have none. The fakes
//!   accept a new secret at once, so no verify would have waited anyway.
//!
//! Rounds alternate floor-first and rotation-first; each round runs `PER_ROUND` of each per
//! type. Reference points measured in the same run: a gRPC health check to the same server
//! (the bare gRPC hop) and a 4 KiB write + fsync in the store's temp dir.
//!
//! Then, untimed against the floor, a breakdown pass: the same binary restarted on the same
//! store with traces exported to a collector in the bench, `TRACED` rotations per type, and
//! each rotation span split into its driver-phase spans, its store-write spans and the rest.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use rotator::config::Config;
use rotator::drivers::{
    AnyIssuer, ConnectionConfig, Credential, Driver as _, DriverOptions, LocalDriver,
    RotationDriver, for_app,
};
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator_testkit::fake_auth0::{AUDIENCE, FakeAuth0};
use rotator_testkit::fake_azure::FakeAzure;
use rotator_testkit::fake_databricks::FakeDatabricks;
use rotator_testkit::fake_okta::FakeOkta;
use rotator_testkit::local_server::{KEY, free_port, rotator_command, wait_serving};
use rotator_testkit::moto::Moto;
use rotator_testkit::otlp::{CollectedSpan, OtlpCollector};
use tokio::time::Instant;
use tonic::transport::Channel;

/// Timed rounds; each alternates which path goes first.
const ROUNDS: usize = 20;
/// Rotations of each path per type and round.
const PER_ROUND: usize = 10;
/// Rotations per type in the traced breakdown pass (after the timed rounds).
const TRACED: usize = 50;
/// Untimed rotations of each path per type before the rounds (connections, tokens, caches,
/// and the rotated principal at its steady two secrets).
const WARM_UP: usize = 3;

const AWS_ENV: &str = "AWS_ADMIN_SECRET";
const AZURE_ENV: &str = "AZ_ADMIN";
const OKTA_ENV: &str = "OKTA_API_TOKEN";
const AUTH0_ENV: &str = "AUTH0_ADMIN";
const DATABRICKS_ENV: &str = "DATABRICKS_ADMIN_SECRET";

/// The fakes, one instance each, shared by both paths.
struct Fakes {
    moto: Moto,
    azure: FakeAzure,
    okta: FakeOkta,
    auth0: FakeAuth0,
    databricks: FakeDatabricks,
}

/// The principals of one path (rotation or floor).
struct Principals {
    aws_user: String,
    azure_app: rotator_testkit::fake_azure::App,
    okta_app: String,
    auth0_client: String,
    databricks: (String, String),
}

impl Principals {
    async fn new(fakes: &Fakes, tag: &str) -> Self {
        let aws_user = format!("bench-{tag}");
        fakes.moto.create_user(&aws_user).await;
        let okta_app = fakes.okta.create_app();
        fakes.okta.grant_scope(&okta_app, "okta.apps.read");
        Self {
            aws_user,
            azure_app: fakes.azure.add_app(),
            okta_app,
            auth0_client: fakes.auth0.add_client(),
            databricks: fakes.databricks.create_principal(),
        }
    }

    /// How many secrets each issued-type principal holds: (type, count).
    async fn held(&self, fakes: &Fakes) -> Vec<(RotationType, usize)> {
        vec![
            (
                RotationType::AwsIamUserSecret,
                fakes.moto.access_key_ids(&self.aws_user).await.len(),
            ),
            (
                RotationType::AzureClientSecret,
                fakes.azure.live_secrets(&self.azure_app.object_id),
            ),
            (
                RotationType::OktaClientSecret,
                fakes.okta.secrets(&self.okta_app).len(),
            ),
            (
                RotationType::DatabricksServicePrincipalSecret,
                fakes.databricks.live_secrets(&self.databricks.0),
            ),
        ]
    }
}

/// The five types, in report order: (type, slug, connection name).
const TYPES: [(RotationType, &str, &str); 5] = [
    (RotationType::AwsIamUserSecret, "aws-iam-user-secret", "aws"),
    (
        RotationType::AzureClientSecret,
        "azure-client-secret",
        "azure",
    ),
    (RotationType::OktaClientSecret, "okta-client-secret", "okta"),
    (
        RotationType::Auth0ClientSecret,
        "auth0-client-secret",
        "auth0",
    ),
    (
        RotationType::DatabricksServicePrincipalSecret,
        "databricks-service-principal-secret",
        "databricks",
    ),
];

fn rotation_id(index: usize, floor: bool) -> String {
    format!(
        "00000000-0000-4000-8000-{:012}",
        index + if floor { 100 } else { 0 }
    )
}

/// The config: five connections, one rotation per type of `principals`. The server gets the
/// rotated principals; the floor's drivers are built from the same text with its own.
fn config_text(fakes: &Fakes, p: &Principals, floor: bool) -> String {
    let connections = format!(
        r#"
[[connections]]
name = "aws"
app = "aws"
host = "127.0.0.1"
port = {aws_port}
username = "{aws_admin}"
password = "env:{AWS_ENV}"
tls = "disable"
region = "us-east-1"
verify_retry_seconds = 0

[[connections]]
name = "azure"
app = "azure-client-secrets"
host = "127.0.0.1"
port = {azure_port}
username = "{azure_admin}"
password = "env:{AZURE_ENV}"
tls = "disable"
tenant_id = "{tenant}"
authority_url = "{authority}"
propagation_wait_seconds = 0

[[connections]]
name = "okta"
app = "okta"
host = "127.0.0.1"
port = {okta_port}
username = "rotator"
password = "env:{OKTA_ENV}"
tls = "disable"

[[connections]]
name = "auth0"
app = "auth0"
host = "127.0.0.1"
port = {auth0_port}
username = "{auth0_admin}"
password = "env:{AUTH0_ENV}"
tls = "disable"
audience = "{AUDIENCE}"
propagation_wait_seconds = 0

[[connections]]
name = "databricks"
app = "databricks"
host = "127.0.0.1"
port = {dbx_port}
username = "{dbx_admin}"
password = "env:{DATABRICKS_ENV}"
tls = "disable"
account_id = "{account}"
"#,
        aws_port = fakes.moto.port(),
        aws_admin = fakes.moto.admin().id,
        azure_port = fakes.azure.port(),
        azure_admin = fakes.azure.admin().0,
        tenant = fakes.azure.tenant(),
        authority = fakes.azure.url(),
        okta_port = fakes.okta.port(),
        auth0_port = fakes.auth0.port(),
        auth0_admin = fakes.auth0.admin().0,
        dbx_port = fakes.databricks.port(),
        dbx_admin = fakes.databricks.admin().0,
        account = fakes.databricks.account_id(),
    );
    let parameters = [
        format!("{{ userName = \"{}\" }}", p.aws_user),
        format!(
            "{{ objectId = \"{}\", clientId = \"{}\" }}",
            p.azure_app.object_id, p.azure_app.app_id
        ),
        format!("{{ clientId = \"{}\" }}", p.okta_app),
        format!("{{ clientId = \"{}\" }}", p.auth0_client),
        format!(
            "{{ servicePrincipalId = \"{}\", clientId = \"{}\" }}",
            p.databricks.0, p.databricks.1
        ),
    ];
    let mut text = connections;
    for (index, ((_, slug, connection), parameters)) in TYPES.iter().zip(parameters).enumerate() {
        let mapping = if index == 0 {
            r#"{ accessKeyId = "AWS_ACCESS_KEY_ID", secretAccessKey = "AWS_SECRET_ACCESS_KEY" }"#
        } else {
            r#"{ clientId = "CLIENT_ID", clientSecret = "CLIENT_SECRET" }"#
        };
        text.push_str(&format!(
            r#"
[[rotations]]
id = "{id}"
name = "bench-{slug}"
type = "{slug}"
connection = "{connection}"
rotation_interval_days = 30
auto_rotation = false
parameters = {parameters}
secrets_mapping = {mapping}
"#,
            id = rotation_id(index, floor),
        ));
    }
    text
}

/// The admin secrets, by the env names the config refers to.
fn admin_env(fakes: &Fakes) -> [(&'static str, String); 5] {
    [
        (AWS_ENV, fakes.moto.admin().secret.expose().to_owned()),
        (AZURE_ENV, fakes.azure.admin().1.to_owned()),
        (OKTA_ENV, fakes.okta.api_token()),
        (AUTH0_ENV, fakes.auth0.admin().1),
        (DATABRICKS_ENV, fakes.databricks.admin().1),
    ]
}

/// The drivers of `text`'s rotations, built as the server builds them (same connection table,
/// same options, same interval), by rotation type.
fn floor_drivers(text: &str, env: &[(&str, String)]) -> HashMap<RotationType, LocalDriver> {
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    env.insert("ROTATOR_ENCRYPTION_KEY".to_owned(), KEY.to_owned());
    let config = Config::from_toml_str(text, &env).expect("the bench config loads");
    let registry = &config.local;
    registry
        .rotations
        .iter()
        .map(|rotation| {
            let connection = &registry.connections[&rotation.connection];
            let descriptor = for_app(&connection.app).expect("a registered driver");
            let driver = rotator::drivers::build(
                &rotation.id.to_string(),
                ConnectionConfig::from_spec(&connection.target, descriptor.default_port),
                &rotation.parameters,
                DriverOptions {
                    options: connection.options.clone(),
                    interval_days: Some(rotation.interval_days),
                    ..DriverOptions::default()
                },
            )
            .expect("the floor's driver builds");
            (rotation.rotation_type, driver)
        })
        .collect()
}

/// One type's floor: the provider calls of one rotation, straight through the driver.
enum Floor {
    Issued {
        issuer: AnyIssuer,
        /// The secrets the floor's principal holds, oldest first.
        held: VecDeque<String>,
        /// The provider allows two secrets: the replaced one goes before the new one is issued.
        revoke_first: bool,
    },
    Chosen(RotationDriver),
}

impl Floor {
    async fn new(driver: LocalDriver, revoke_first: bool) -> Self {
        match driver {
            LocalDriver::Issued(issuer) => {
                // Two live secrets, as the rotated principal holds after its first rotation.
                let mut held = VecDeque::new();
                for _ in 0..2 {
                    held.push_back(issuer.issue().await.expect("floor: issue").id);
                }
                Self::Issued {
                    issuer,
                    held,
                    revoke_first,
                }
            }
            LocalDriver::Chosen(rd) => Self::Chosen(rd),
        }
    }

    /// One floor rotation, timed.
    async fn run(&mut self) -> Duration {
        match self {
            Self::Issued {
                issuer,
                held,
                revoke_first,
            } => {
                let started = Instant::now();
                let listed = issuer.list().await.expect("floor: list");
                assert_eq!(listed.len(), 2, "the floor's principal holds two secrets");
                let replaced = held.pop_front().expect("a held secret");
                if *revoke_first {
                    issuer.revoke(&replaced).await.expect("floor: revoke");
                }
                let issued = issuer.issue().await.expect("floor: issue");
                issuer.verify(&issued).await.expect("floor: verify");
                if !*revoke_first {
                    issuer.revoke(&replaced).await.expect("floor: revoke");
                }
                let elapsed = started.elapsed();
                held.push_back(issued.id);
                elapsed
            }
            Self::Chosen(rd) => {
                let credential = Credential {
                    id: rd
                        .driver
                        .username_for(rotator::drivers::Slot::First)
                        .to_owned(),
                    secret: rd.password_policy.generate(),
                };
                let started = Instant::now();
                rd.driver.apply(&credential).await.expect("floor: apply");
                rd.driver.verify(&credential).await.expect("floor: verify");
                started.elapsed()
            }
        }
    }
}

/// Starts the binary on a free loopback port with `config`, its store in `data`, the admin
/// secrets and `extra` in its environment; waits until it serves (start-up issues each
/// rotation's first credential before serving).
async fn serve(
    config: &Path,
    data: &Path,
    env: &[(&str, String)],
    extra: &[(&str, String)],
) -> (tokio::process::Child, Channel) {
    let port = free_port();
    let mut command = rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        config,
        data,
        port,
        (env[0].0, &env[0].1),
    );
    for (name, value) in env[1..].iter().chain(extra) {
        command.env(name, value);
    }
    let child = command.spawn().expect("spawn rotator");
    let channel = wait_serving(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(120),
    )
    .await;
    (child, channel)
}

/// Where one type's rotation time went (medians over the traced rotations).
struct Breakdown {
    total: Duration,
    driver: Duration,
    driver_spans: usize,
    store: Duration,
    store_spans: usize,
    rest: Duration,
}

/// The spans a rotation's store writes run in (`src/local`).
const STORE_SPANS: [&str; 5] = [
    "acquire lease",
    "prepare attempt",
    "record attempt state",
    "commit attempt",
    "release lease",
];

fn duration_of(span: &CollectedSpan) -> Duration {
    Duration::from_nanos(
        span.span
            .end_time_unix_nano
            .saturating_sub(span.span.start_time_unix_nano),
    )
}

/// Waits until the collector holds `TRACED` rotation spans per type (at most a minute), then
/// splits each into its children.
async fn collect_breakdowns(collector: &OtlpCollector) -> Vec<Breakdown> {
    let deadline = Instant::now() + Duration::from_secs(60);
    // Rotation spans under a RotateSecrets server span (start-up's first-credential check has
    // its own, without one).
    let called = |spans: &[CollectedSpan], slug: &str| -> Vec<CollectedSpan> {
        let servers: std::collections::HashSet<String> = spans
            .iter()
            .filter(|s| {
                s.attrs()
                    .get("rpc.method")
                    .is_some_and(|m| m == "RotateSecrets")
            })
            .map(CollectedSpan::span_id)
            .collect();
        let name = format!("rotate {slug}");
        spans
            .iter()
            .filter(|s| s.span.name == name && servers.contains(&s.parent_id()))
            .cloned()
            .collect()
    };
    let spans = loop {
        let spans = collector.spans();
        let done = TYPES
            .iter()
            .all(|(_, slug, _)| called(&spans, slug).len() >= TRACED);
        assert!(
            Instant::now() < deadline,
            "the traced rotations' spans did not all arrive"
        );
        if done {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut children: HashMap<String, Vec<&CollectedSpan>> = HashMap::new();
    for span in &spans {
        children.entry(span.parent_id()).or_default().push(span);
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        percentile(&v, 0.5)
    };
    TYPES
        .iter()
        .map(|(_, slug, _)| {
            let (mut total, mut driver, mut store, mut rest) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut driver_spans, mut store_spans) = (Vec::new(), Vec::new());
            for rotation in &called(&spans, slug) {
                let kids = children
                    .get(&rotation.span_id())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let of = |keep: &dyn Fn(&str) -> bool| {
                    let picked: Vec<_> = kids.iter().filter(|k| keep(&k.span.name)).collect();
                    (
                        picked.len(),
                        picked.iter().map(|k| duration_of(k)).sum::<Duration>(),
                    )
                };
                let (dn, d) = of(&|n| n.starts_with("driver."));
                let (sn, s) = of(&|n| STORE_SPANS.contains(&n));
                let t = duration_of(rotation);
                total.push(t);
                driver.push(d);
                store.push(s);
                rest.push(t.saturating_sub(d + s));
                driver_spans.push(dn);
                store_spans.push(sn);
            }
            driver_spans.sort_unstable();
            store_spans.sort_unstable();
            Breakdown {
                total: median(total),
                driver: median(driver),
                driver_spans: driver_spans[driver_spans.len() / 2],
                store: median(store),
                store_spans: store_spans[store_spans.len() / 2],
                rest: median(rest),
            }
        })
        .collect()
}

async fn rotate(client: &mut SecretRotationServiceClient<Channel>, index: usize) -> Duration {
    let started = Instant::now();
    client
        .rotate_secrets(RotateSecretsRequest {
            r#type: TYPES[index].0 as i32,
            rotation_id: rotation_id(index, false),
        })
        .await
        .unwrap_or_else(|e| panic!("RotateSecrets {}: {e}", TYPES[index].1));
    started.elapsed()
}

/// A gRPC health check to the server: the bare hop, for reference.
async fn health(channel: &Channel) -> Duration {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let started = Instant::now();
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");
    started.elapsed()
}

/// A 4 KiB write + fsync of a file in `dir`, for reference.
fn fsync(dir: &Path) -> Duration {
    use std::io::Write as _;
    let started = Instant::now();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(dir.join("fsync-probe"))
        .expect("open the probe file");
    file.write_all(&[0u8; 4096]).expect("write");
    file.sync_all().expect("fsync");
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let bench_started = Instant::now();
    let fakes = Fakes {
        moto: Moto::start().await,
        azure: FakeAzure::start().await,
        okta: FakeOkta::start().await,
        auth0: FakeAuth0::start().await,
        databricks: FakeDatabricks::start().await,
    };
    let rotated = Principals::new(&fakes, "rotated").await;
    let floor_principals = Principals::new(&fakes, "floor").await;
    let env = admin_env(&fakes);

    // The server: the binary on loopback, store in a temp dir, the five rotations.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("rotator.toml");
    std::fs::write(&config, config_text(&fakes, &rotated, false)).expect("write config");
    let data = dir.path().join("data");
    let (mut child, channel) = serve(&config, &data, &env, &[]).await;
    let mut client = SecretRotationServiceClient::new(channel.clone());

    let mut drivers = floor_drivers(&config_text(&fakes, &floor_principals, true), &env);
    let mut floors = Vec::new();
    for (rotation_type, _, _) in TYPES {
        let driver = drivers.remove(&rotation_type).expect("a floor driver");
        let capped = matches!(
            rotation_type,
            RotationType::AwsIamUserSecret | RotationType::OktaClientSecret
        );
        floors.push(Floor::new(driver, capped).await);
    }

    for (index, floor) in floors.iter_mut().enumerate() {
        for _ in 0..WARM_UP {
            floor.run().await;
            rotate(&mut client, index).await;
        }
    }

    let mut floor_samples = vec![Vec::new(); TYPES.len()];
    let mut rotation_samples = vec![Vec::new(); TYPES.len()];
    let (mut hop, mut disk) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for (index, floor) in floors.iter_mut().enumerate() {
            for pass in 0..2 {
                if (pass == 0) == (round % 2 == 0) {
                    for _ in 0..PER_ROUND {
                        floor_samples[index].push(floor.run().await);
                    }
                } else {
                    for _ in 0..PER_ROUND {
                        rotation_samples[index].push(rotate(&mut client, index).await);
                    }
                }
            }
        }
        for _ in 0..PER_ROUND {
            hop.push(health(&channel).await);
            disk.push(fsync(dir.path()));
        }
    }

    // Both principals end where they started each rotation: two secrets held.
    for (path, principals) in [("rotated", &rotated), ("floor", &floor_principals)] {
        for (rotation_type, count) in principals.held(&fakes).await {
            assert_eq!(count, 2, "{path} principal of {rotation_type:?}");
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;

    // The breakdown pass: the same store, traces on.
    let collector = OtlpCollector::start_grpc().await;
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_METRICS_EXPORTER", "none".to_owned()),
    ];
    let (mut traced, traced_channel) = serve(&config, &data, &env, &otel).await;
    let mut traced_client = SecretRotationServiceClient::new(traced_channel);
    for _ in 0..TRACED {
        for index in 0..TYPES.len() {
            rotate(&mut traced_client, index).await;
        }
    }
    let breakdowns = collect_breakdowns(&collector).await;
    let _ = traced.start_kill();
    let _ = traced.wait().await;

    let samples = ROUNDS * PER_ROUND;
    println!(
        "{ROUNDS} rounds × {PER_ROUND} of each path per type ({samples} samples each), after \
         {WARM_UP} warm-up rotations of each; times in ms."
    );
    println!();
    println!(
        "| type | floor p50 | floor p99 | rotation p50 | rotation p99 | ratio p50 | ratio p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (index, (_, slug, _)) in TYPES.iter().enumerate() {
        floor_samples[index].sort();
        rotation_samples[index].sort();
        let (f, r) = (&floor_samples[index], &rotation_samples[index]);
        let (f50, f99) = (percentile(f, 0.5), percentile(f, 0.99));
        let (r50, r99) = (percentile(r, 0.5), percentile(r, 0.99));
        println!(
            "| {slug} | {} | {} | {} | {} | {:.2}× | {:.2}× |",
            ms(f50),
            ms(f99),
            ms(r50),
            ms(r99),
            ratio(r50, f50),
            ratio(r99, f99)
        );
    }
    hop.sort();
    disk.sort();
    println!();
    println!("| reference, same run | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| gRPC health check to the same server | {} | {} |",
        ms(percentile(&hop, 0.5)),
        ms(percentile(&hop, 0.99))
    );
    println!(
        "| 4 KiB write + fsync in the store's temp dir | {} | {} |",
        ms(percentile(&disk, 0.5)),
        ms(percentile(&disk, 0.99))
    );
    println!();
    println!(
        "Breakdown pass, traces on ({TRACED} rotations per type): medians per rotation, in ms, \
         of the rotation span and of its child spans."
    );
    println!();
    println!("| type | rotation span | driver phases (count) | store writes (count) | rest |");
    println!("|---|---|---|---|---|");
    for ((_, slug, _), b) in TYPES.iter().zip(breakdowns) {
        println!(
            "| {slug} | {} | {} ({}) | {} ({}) | {} |",
            ms(b.total),
            ms(b.driver),
            b.driver_spans,
            ms(b.store),
            b.store_spans,
            ms(b.rest)
        );
    }
    println!();
    println!(
        "Whole bench: {:.0} s.",
        bench_started.elapsed().as_secs_f64()
    );
}
