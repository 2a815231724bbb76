//! The trace of a local rotation: the caller's trace id reaches the server span, the rotation
//! span under it, and its children (driver apply and verify, the store transactions of the
//! attempt); every span ends and is exported, and no generated password is in any of them.
//! The server runs in this process (`rotator::run_on`) against a private scram PostgreSQL.

use std::time::Duration;

use rotator::config::{Config, Env, LogFormat};
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator::telemetry::Telemetry;
use rotator_testkit::local_server::{
    KEY, PG_ROTATION, credentials, free_port, pg_config, wait_serving,
};
use rotator_testkit::log_lines::LogCapture;
use rotator_testkit::otlp::{CollectedSpan, OtlpCollector};
use rotator_testkit::private_postgres::{ADMIN_PASSWORD, PrivatePostgres};

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const REQUEST_ID: &str = "local-trace-1";

#[tokio::test]
async fn a_local_rotation_is_one_trace_from_the_call_to_the_driver_and_the_store() {
    let pg = PrivatePostgres::shared();
    pg.create_role("traced_a", "initial-a-Pw1").await;
    pg.create_role("traced_b", "initial-b-Pw1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = pg_config(dir.path(), pg.port(), ("traced_a", "traced_b"));
    let collector = OtlpCollector::start_grpc().await;
    let port = free_port();
    let env: Env = [
        ("ROTATOR_LISTEN", format!("127.0.0.1:{port}")),
        (
            "ROTATOR_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("ROTATOR_ADMIN_LISTEN", "off".to_owned()),
        ("ROTATOR_ENCRYPTION_KEY", KEY.to_owned()),
        ("PG_ADMIN", ADMIN_PASSWORD.to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_METRICS_EXPORTER", "none".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::load(Some(&file), &env).expect("valid config");
    let (dispatch, telemetry) = Telemetry::builder(&config.telemetry, LogFormat::Json)
        .with_writer(LogCapture::default())
        .build()
        .expect("telemetry builds");
    let _default = tracing::dispatcher::set_default(&dispatch);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rotator::run_on(config, listener, async {
        let _ = stopped.await;
    }));
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)).await;

    let mut request = tonic::Request::new(RotateSecretsRequest {
        r#type: RotationType::PostgresCredentials as i32,
        rotation_id: PG_ROTATION.to_owned(),
    });
    let metadata = request.metadata_mut();
    let traceparent = format!("00-{CALLER_TRACE}-b7ad6b7169203331-01");
    metadata.insert("traceparent", traceparent.parse().expect("ascii"));
    metadata.insert("x-request-id", REQUEST_ID.parse().expect("ascii"));
    SecretRotationServiceClient::new(channel.clone())
        .rotate_secrets(request)
        .await
        .expect("the local rotation commits");
    let (_, creds) = credentials(&channel, PG_ROTATION).await;

    // The rotation span ends with its task, a moment after the answer at most.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        telemetry.flush().await;
        let spans: Vec<CollectedSpan> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id() == CALLER_TRACE)
            .collect();
        let ended = spans
            .iter()
            .any(|s| s.span.name == "rotate postgres-credentials")
            && spans.iter().any(|s| {
                s.attrs()
                    .get("rpc.method")
                    .is_some_and(|m| m == "RotateSecrets")
            });
        if ended || tokio::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stop.send(());
    let _ = server.await;

    let names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
    let rpc = spans
        .iter()
        .find(|s| {
            s.attrs()
                .get("rpc.method")
                .is_some_and(|m| m == "RotateSecrets")
        })
        .unwrap_or_else(|| panic!("no server span among {names:?}"));
    let rotation = spans
        .iter()
        .find(|s| s.span.name == "rotate postgres-credentials")
        .unwrap_or_else(|| panic!("no rotation span among {names:?}"));
    assert_eq!(rotation.parent_id(), rpc.span_id());
    assert_eq!(rotation.attr("rotator.backend"), "local");
    assert_eq!(rotation.attr("rotator.rotation_id"), PG_ROTATION);
    assert_eq!(rotation.attr("rotator.request_id"), REQUEST_ID);
    let children = |name: &str| {
        spans
            .iter()
            .filter(|s| s.span.name == name && s.parent_id() == rotation.span_id())
            .count()
    };
    for phase in ["driver.apply", "driver.verify"] {
        assert_eq!(children(phase), 1, "{phase} under the rotation: {names:?}");
    }
    for store in ["acquire lease", "prepare attempt", "commit attempt"] {
        assert_eq!(children(store), 1, "{store} under the rotation: {names:?}");
    }
    for span in &spans {
        assert_eq!(
            span.attr("rotator.request_id"),
            REQUEST_ID,
            "{}",
            span.span.name
        );
        for text in span.all_text() {
            for (_, password) in &creds {
                assert!(
                    !text.contains(password.as_str()),
                    "a password in {}",
                    span.span.name
                );
            }
        }
    }
}
