//! Metrics end to end: rotations through the real server against the fake Infisical, then the
//! admin listener's `/metrics` parsed as Prometheus text, `/livez` and `/readyz` through the
//! server's life, and the same readings pushed over OTLP to a collector inside the test.
//!
//! Metrics are process-wide (like OpenTelemetry's global meter provider), so this file holds one
//! test that owns them; its counts are exact.

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use rotator::config::{Config, LogFormat};
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    GetGeneratedCredentialsRequest, GetSecretRotationRequest, RotateSecretsRequest, RotationType,
    get_secret_rotation_request::Lookup,
};
use rotator::telemetry::Telemetry;
use rotator::telemetry::admin::{AdminServer, Readiness};
use rotator::telemetry::metrics::{self as rotator_metrics, OutboxStats};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::log_lines::LogCapture;
use rotator_testkit::otlp;
use rotator_testkit::otlp::OtlpCollector;
use rotator_testkit::prometheus::Exposition;
use rotator_testkit::rotator_server::forwarding_env;

const PG: &str = "postgres-credentials";
const DASHBOARD: &str = include_str!("../deploy/grafana/rotator-dashboard.json");
const OBSERVABILITY_DOC: &str = include_str!("../docs/observability.md");

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("admin listener answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Waits, with a deadline, until `/readyz` answers `want`.
async fn readyz_becomes(admin: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&format!("{admin}/readyz")).await;
        if status == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {status} ({body}), wanted {want}"
        );
        tokio::task::yield_now().await;
    }
}

fn rotate(id: uuid::Uuid) -> RotateSecretsRequest {
    RotateSecretsRequest {
        r#type: RotationType::PostgresCredentials as i32,
        rotation_id: id.to_string(),
    }
}

#[tokio::test]
async fn rotations_show_up_as_prometheus_text_and_over_otlp() {
    let collector = OtlpCollector::start_grpc().await;
    let fake = FakeInfisical::start().await;
    let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint().as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_EXPORTER", "none"),
        // Pushed when flushed below, not on a timer.
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
        ("ROTATOR_DATA_DIR", "/nonexistent-not-used"),
    ] {
        env.insert(k.to_owned(), v.to_owned());
    }
    let config = Config::load(None, &env).expect("valid");
    let (dispatch, telemetry) = Telemetry::builder(&config.telemetry, LogFormat::Json)
        .with_writer(LogCapture::default())
        .build()
        .expect("telemetry builds");
    assert!(!telemetry.exports_traces());
    assert!(rotator_metrics::global().exports_otlp());
    let _default = tracing::dispatcher::set_default(&dispatch);

    // The server and the admin listener, as `rotator serve` runs them.
    let readiness = Readiness::new();
    let admin = AdminServer::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin"),
        readiness.clone(),
    );
    let admin_url = format!("http://{}", admin.local_addr());
    let engine = rotator::server::build_engine(&config, None).expect("engine");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind grpc");
    let grpc_url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        rotator::server::run_with_readiness(&server_config, engine, listener, readiness, async {
            let _ = stopped.await;
        })
        .await
    });
    readyz_becomes(&admin_url, 200).await;
    assert_eq!(get(&format!("{admin_url}/livez")).await.0, 200);

    // Two rotations succeed, one fails at the provider, one read, one credentials read.
    let mut client = SecretRotationServiceClient::connect(grpc_url)
        .await
        .expect("connect");
    let id = fake.rotation_id(PG);
    client.rotate_secrets(rotate(id)).await.expect("first");
    client.rotate_secrets(rotate(id)).await.expect("second");
    fake.fail_next_rotation(id, "the database is down");
    let failed = client.rotate_secrets(rotate(id)).await.expect_err("third");
    assert_eq!(failed.code(), tonic::Code::Internal);
    client
        .get_secret_rotation(GetSecretRotationRequest {
            r#type: RotationType::PostgresCredentials as i32,
            lookup: Some(Lookup::RotationId(id.to_string())),
        })
        .await
        .expect("get");
    client
        .get_generated_credentials(GetGeneratedCredentialsRequest {
            r#type: RotationType::PostgresCredentials as i32,
            rotation_id: id.to_string(),
        })
        .await
        .expect("credentials");
    // What the events relay will report.
    rotator_metrics::set_outbox_source(|| OutboxStats {
        depth: 3,
        oldest_age: Some(Duration::from_secs(42)),
    });
    rotator_metrics::publish_failed("timeout");
    rotator_metrics::event_published("completed");
    // What the local engine will report.
    rotator_metrics::set_overdue_source(|| 0);
    rotator_metrics::lease_taken_over();

    // The health detail shows the same outbox figures.
    let (status, health) = get(&format!("{admin_url}/healthz")).await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).expect("JSON");
    assert_eq!(health["outbox"]["depth"], 3);
    assert_eq!(health["outbox"]["oldest_age_seconds"], 42.0);
    assert_eq!(health["overdue_rotations"], 0);
    assert!(health["ready"].is_boolean() && health["waiting"].is_array());

    let (status, text) = get(&format!("{admin_url}/metrics")).await;
    assert_eq!(status, 200);
    let m = Exposition::parse(&text);

    // Rotations by type, backend and outcome; failures carry their reason.
    let success = [
        ("rotator_rotation_type", PG),
        ("rotator_backend", "forwarded"),
        ("rotator_outcome", "success"),
    ];
    assert_eq!(m.types["rotator_rotations_total"], "counter");
    assert_eq!(m.value("rotator_rotations_total", &success), 2.0);
    assert_eq!(
        m.value(
            "rotator_rotations_total",
            &[
                ("rotator_rotation_type", PG),
                ("rotator_outcome", "failure"),
                ("error_type", "UPSTREAM_ROTATION_FAILED"),
            ]
        ),
        1.0
    );

    // The rotation duration histogram is consistent: cumulative buckets, +Inf = count.
    assert_eq!(m.types["rotator_rotation_duration_seconds"], "histogram");
    let count = m.value("rotator_rotation_duration_seconds_count", &success);
    assert_eq!(count, 2.0);
    let mut buckets: Vec<(f64, f64)> = m
        .find("rotator_rotation_duration_seconds_bucket", &success)
        .iter()
        .map(|s| {
            let le = match s.labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().expect("numeric le"),
            };
            (le, s.value)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(
        buckets.last().map(|b| (b.0, b.1)),
        Some((f64::INFINITY, count))
    );
    assert!(m.value("rotator_rotation_duration_seconds_sum", &success) > 0.0);

    // gRPC calls by method and status code; none in flight any more.
    let rpc = "rpc_server_call_duration_seconds_count";
    let rotate_ok = [
        ("rpc_method", "RotateSecrets"),
        ("rpc_grpc_status_code", "0"),
    ];
    assert_eq!(m.value(rpc, &rotate_ok), 2.0);
    assert_eq!(
        m.value(
            rpc,
            &[
                ("rpc_method", "RotateSecrets"),
                ("rpc_grpc_status_code", "13")
            ]
        ),
        1.0
    );
    assert_eq!(m.value(rpc, &[("rpc_method", "GetSecretRotation")]), 1.0);
    assert_eq!(m.types["rotator_rpc_active_calls"], "gauge");
    for sample in m.find("rotator_rpc_active_calls", &[]) {
        assert_eq!(sample.value, 0.0, "{sample:?}");
    }

    // Upstream requests by status: login + 3 rotates (one 500) + get + credentials.
    let upstream = "http_client_request_duration_seconds_count";
    let post_ok = [
        ("http_request_method", "POST"),
        ("http_response_status_code", "200"),
    ];
    assert_eq!(m.value(upstream, &post_ok), 3.0, "login and two rotations");
    assert_eq!(
        m.value(
            upstream,
            &[
                ("http_request_method", "POST"),
                ("http_response_status_code", "500"),
                ("error_type", "500"),
            ]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            upstream,
            &[
                ("http_request_method", "GET"),
                ("http_response_status_code", "200"),
            ]
        ),
        2.0
    );

    // Token operations, outbox gauges, publish counters.
    assert_eq!(
        m.value(
            "rotator_upstream_token_operations_total",
            &[("rotator_token_operation", "login")]
        ),
        1.0
    );
    assert_eq!(m.value("rotator_outbox_depth", &[]), 3.0);
    assert_eq!(m.value("rotator_outbox_oldest_age_seconds", &[]), 42.0);
    assert_eq!(
        m.value(
            "rotator_events_publish_failures_total",
            &[("error_type", "timeout")]
        ),
        1.0
    );
    assert_eq!(m.types["rotator_events_published_total"], "counter");

    // Every metric the docs query exists, under that name.
    let labels: std::collections::HashSet<&str> = m
        .samples
        .iter()
        .flat_map(|s| s.labels.keys().map(String::as_str))
        .collect();
    let names: std::collections::HashSet<&str> = m
        .samples
        .iter()
        .map(|s| s.name.as_str())
        .chain(m.types.keys().map(String::as_str))
        .collect();
    // (The dashboard is checked against a fresh server below.)
    for (file, text) in [("docs/observability.md", OBSERVABILITY_DOC)] {
        let referenced = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|t| {
                ["rotator_", "rpc_server_", "http_client_"]
                    .iter()
                    .any(|p| t.starts_with(p))
            })
            .filter(|t| !labels.contains(t));
        for name in referenced {
            assert!(
                names.contains(name),
                "{file} queries {name}, which /metrics does not serve"
            );
        }
    }

    // No secret in the exposition.
    let mut secrets = vec![CLIENT_SECRET.to_owned()];
    for request in fake.requests() {
        for (name, value) in &request.headers {
            if name == "authorization" {
                secrets.push(value.trim_start_matches("Bearer ").to_owned());
            }
        }
    }
    for credential in fake.generated_credentials_json(id)["generatedCredentials"]
        .as_array()
        .expect("array")
    {
        secrets.push(
            credential["password"]
                .as_str()
                .expect("password")
                .to_owned(),
        );
    }
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret in /metrics");
    }

    // The same readings over OTLP.
    telemetry.flush().await;
    let exports = collector.metric_exports();
    let rotations = exports
        .iter()
        .flat_map(|e| &e.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .find(|metric| metric.name == "rotator.rotations")
        .expect("rotator.rotations pushed over OTLP");
    let Some(Data::Sum(sum)) = &rotations.data else {
        panic!("rotator.rotations is a sum: {rotations:?}");
    };
    assert!(sum.is_monotonic);
    let successes: i64 = sum
        .data_points
        .iter()
        .filter(|p| {
            otlp::attributes(&p.attributes)
                .get("rotator.outcome")
                .map(String::as_str)
                == Some("success")
        })
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(n)) => n,
            other => panic!("integer count expected, got {other:?}"),
        })
        .sum();
    assert_eq!(successes, 2);

    // Draining: /readyz says so while the admin listener still answers.
    let _ = stop.send(());
    server
        .await
        .expect("server task")
        .expect("server stopped cleanly");
    let (status, body) = get(&format!("{admin_url}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("grpc: draining"), "{body}");
    assert_eq!(get(&format!("{admin_url}/livez")).await.0, 200);
    admin.stop().await;
    telemetry.shutdown(Duration::from_secs(2)).await;
}

/// `/healthz` said nothing about why calls failed: it now shows NATS's connection state and
/// the Infisical token's state, each since when and with the last failure's reason, and never
/// the client secret. Through the binary, so the process-wide metrics of the test above stay its
/// own.
#[tokio::test]
async fn healthz_says_what_is_wrong_with_nats_and_the_infisical_login() {
    use rotator_testkit::local_server::{free_port, wait_serving};
    const WRONG_SECRET: &str = "not-the-client-secret-4f1e";

    let fake = FakeInfisical::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, admin_port, nats_port) = (free_port(), free_port(), free_port());
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("serve")
        .env_remove("ROTATOR_CONFIG")
        .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROTATOR_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("ROTATOR_DATA_DIR", dir.path())
        .env("ROTATOR_INFISICAL_URL", fake.base_url())
        .env("ROTATOR_INFISICAL_CLIENT_ID", CLIENT_ID)
        .env("ROTATOR_INFISICAL_CLIENT_SECRET", WRONG_SECRET)
        // Nothing listens there: the relay cannot connect.
        .env("ROTATOR_NATS_URL", format!("nats://127.0.0.1:{nats_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start rotator serve");
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)).await;
    let admin = format!("http://127.0.0.1:{admin_port}");

    let (_, before) = get(&format!("{admin}/healthz")).await;
    let before: serde_json::Value = serde_json::from_str(&before).expect("JSON");
    assert_eq!(
        before["infisical_token"]["state"], "not_obtained",
        "{before}"
    );

    let refused = SecretRotationServiceClient::new(channel)
        .get_secret_rotation(GetSecretRotationRequest {
            r#type: RotationType::PostgresCredentials as i32,
            lookup: Some(Lookup::RotationId(fake.rotation_id(PG).to_string())),
        })
        .await
        .expect_err("the login fails");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (text, health) = loop {
        let (status, text) = get(&format!("{admin}/healthz")).await;
        assert_eq!(status, 200);
        let health: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        if health["nats"]["state"] != "connecting" {
            break (text, health);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "NATS still connecting: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(health["nats"]["state"], "disconnected", "{text}");
    assert!(health["nats"]["since"].is_string(), "{text}");
    assert!(
        health["nats"]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("connect")),
        "{text}"
    );
    let token = &health["infisical_token"];
    assert_eq!(token["state"], "login_failing", "{text}");
    assert!(token["since"].is_string(), "{text}");
    assert_eq!(
        token["last_error"], "UPSTREAM_UNAUTHENTICATED (HTTP 401)",
        "{text}"
    );
    assert!(!text.contains(WRONG_SECRET), "{text}");
    assert!(!text.contains(CLIENT_SECRET), "{text}");
    let _ = server.kill().await;
}

/// Every query of the dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or_default();
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            out.push(("variable".to_owned(), query.to_owned()));
        }
    }
    out
}

/// No panel says "No data" on a server that has done nothing yet: every series the dashboard
/// queries, with the equality matchers it uses, is in `/metrics` of a freshly started
/// `rotator serve` (defaults: no Infisical, no NATS, no local rotations), at zero. And no
/// panel sums a gauge read from the store over replicas that share it.
#[tokio::test]
async fn a_fresh_server_serves_every_series_the_dashboard_queries_at_zero() {
    use rotator_testkit::local_server::{free_port, wait_serving};
    use rotator_testkit::promql;

    let dir = tempfile::tempdir().expect("tempdir");
    let (port, admin_port) = (free_port(), free_port());
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("serve")
        .env_remove("ROTATOR_CONFIG")
        .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROTATOR_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("ROTATOR_DATA_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start rotator serve");
    wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)).await;
    let (status, text) = get(&format!("http://127.0.0.1:{admin_port}/metrics")).await;
    assert_eq!(status, 200);
    let m = Exposition::parse(&text);

    let queries = dashboard_queries();
    assert!(queries.len() > 10, "{queries:?}");
    for (panel, expr) in &queries {
        let selectors = promql::selectors(expr);
        assert!(!selectors.is_empty(), "{panel}: no metric in {expr}");
        for selector in selectors {
            let equal: Vec<(&str, &str)> = selector
                .equal
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let found = m.find(&selector.metric, &equal);
            assert!(
                !found.is_empty(),
                "panel {panel:?} queries {selector:?}, which a fresh server does not serve:\n{text}"
            );
            for sample in found {
                assert_eq!(sample.value, 0.0, "{panel}: {sample:?} on a fresh server");
            }
        }
    }

    // Gauges read from the (possibly shared) store: one value per deployment, not per replica.
    for gauge in [
        "rotator_outbox_depth",
        "rotator_outbox_oldest_age_seconds",
        "rotator_rotations_overdue",
    ] {
        for (panel, expr) in queries.iter().filter(|(_, e)| e.contains(gauge)) {
            assert!(
                expr.starts_with("max without (instance, pod) (") && !expr.contains("sum"),
                "panel {panel:?} aggregates {gauge} over replicas sharing a store: {expr}"
            );
        }
    }
    let _ = server.kill().await;
}
