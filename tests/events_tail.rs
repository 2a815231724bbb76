//! `rotator events tail` against the shared NATS: replays the stream with `--from-start`, filters
//! by type and outcome, prints readable lines or the CloudEvents JSON.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rotator::config::Config;
use rotator::events::jetstream::JetStreamPublisher;
use rotator::events::publisher::Publisher as _;
use rotator::events::recorder::outbox_row;
use rotator::events::{Relay, RelayOptions};
use rotator::proto::{Backend, RotationType, Trigger};
use rotator::rotation::{AttemptRecord, Classify as _, Failure};
use rotator::store::{Store, WriteOutbox as _};
use rotator::upstream::infisical::{HttpFailure, UpstreamError};
use rotator_testkit::events::{
    Names, SHARED_NATS, delete_stream, nats_env, unique_names, wait_for_messages,
};
use tokio::sync::Notify;

fn attempt(t: RotationType, request_id: &str, failure: Option<Failure>) -> AttemptRecord {
    AttemptRecord {
        event_id: uuid::Uuid::now_v7(),
        time: Utc::now(),
        rotation_id: uuid::Uuid::new_v4().to_string(),
        rotation_type: t,
        rotation: None,
        backend: Backend::Forwarded,
        trigger: Trigger::Manual,
        attempt_number: 1,
        duration: Duration::from_millis(1500),
        request_id: request_id.into(),
        upstream_req_id: None,
        failure,
        resolves_event_id: None,
    }
}

/// Publishes a completed postgres, a failed ldap and a completed ldap event.
async fn publish_three(names: &Names) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    let failure = UpstreamError::Http(HttpFailure {
        status: 500,
        error_name: Some("InternalServerError".into()),
        message: "Infisical encountered an issue: invalid credentials".into(),
        req_id: Some("req-tail".into()),
        retry_after: None,
    })
    .failure();
    for record in [
        attempt(RotationType::PostgresCredentials, "tail-1", None),
        attempt(RotationType::LdapPassword, "tail-2", Some(failure)),
        attempt(RotationType::LdapPassword, "tail-3", None),
    ] {
        store
            .append(outbox_row(&record, Vec::new()).expect("row"))
            .await
            .expect("append");
    }
    let nats = Config::load(None, &nats_env(SHARED_NATS, names))
        .expect("valid")
        .nats
        .expect("nats");
    let publisher = JetStreamPublisher::new(nats);
    publisher.prepare().await.expect("NATS is up");
    let options = RelayOptions::new(&names.prefix, &Default::default());
    let relay = Relay::new(store, publisher, Arc::new(Notify::new()), options);
    // One batch per rotation at most, so this may take two passes.
    while relay.publish_batch().await.expect("publish") > 0 {}
    wait_for_messages(SHARED_NATS, &names.stream, 3, Duration::from_secs(10)).await;
}

/// Runs `rotator events tail ARGS` with only the NATS settings in its environment.
async fn tail(names: &Names, args: &[&str]) -> Vec<String> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"));
    command
        .arg("events")
        .arg("tail")
        .args(args)
        .env_clear()
        .envs(nats_env(SHARED_NATS, names))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("tail stops after --limit events")
        .expect("run the rotator binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn tail_replays_filters_and_prints_json_or_readable_lines() {
    let names = unique_names();
    publish_three(&names).await;

    let all = tail(&names, &["--from-start", "--json", "--limit", "3"]).await;
    let request_ids: Vec<_> = all
        .iter()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("one JSON per line");
            event["requestid"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(request_ids, ["tail-1", "tail-2", "tail-3"]);

    let ldap = tail(
        &names,
        &[
            "--from-start",
            "--json",
            "--type",
            "ldap-password",
            "--limit",
            "2",
        ],
    )
    .await;
    assert_eq!(ldap.len(), 2);
    assert!(
        ldap.iter()
            .all(|l| l.contains("\"rotationtype\":\"ldap-password\""))
    );

    let failed = tail(
        &names,
        &["--from-start", "--outcome", "failed", "--limit", "1"],
    )
    .await;
    assert_eq!(failed.len(), 1);
    let line = &failed[0];
    for expected in [
        "failed",
        "ldap-password",
        "request=tail-2",
        "reason=UPSTREAM_ROTATION_FAILED",
        "code=INTERNAL",
        "retryable=false",
        "invalid credentials",
    ] {
        assert!(line.contains(expected), "{expected:?} in {line}");
    }

    delete_stream(SHARED_NATS, &names.stream).await;
}

#[tokio::test]
async fn tail_without_nats_settings_is_a_configuration_error() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"))
        .args(["events", "tail"])
        .env_clear()
        .output()
        .await
        .expect("run the rotator binary");
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ROTATOR_NATS_URL"));
}
