//! What a subscriber receives, end to end: RotateSecrets over gRPC → fake Infisical → outbox →
//! relay → the shared NATS JetStream. Every field of a completed and a failed event (CloudEvents
//! envelope, proto3 JSON data, NATS headers); no event for a call rejected before any backend;
//! no generated secret in any published byte.

use std::collections::BTreeSet;
use std::time::Duration;

use rotator::config::Env;
use rotator::events::cloudevent::{CONTENT_TYPE, CloudEvent};
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator::rotation::TYPES;
use rotator_testkit::events::{
    EventsServer, Names, SHARED_NATS, delete_stream, header, nats_env, stream_messages,
    unique_names, wait_for_messages,
};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical, Route};
use rotator_testkit::rotator_server::forwarding_env;
use serde_json::Value;
use tonic::Request;
use tonic_types::StatusExt as _;

const WAIT: Duration = Duration::from_secs(30);

fn env(fake: &FakeInfisical, names: &Names) -> Env {
    let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
    env.extend(nats_env(SHARED_NATS, names));
    env
}

fn rotate(t: RotationType, id: impl ToString, request_id: &str) -> Request<RotateSecretsRequest> {
    let mut request = Request::new(RotateSecretsRequest {
        r#type: t as i32,
        rotation_id: id.to_string(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().expect("ascii"));
    request
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// `"1.5s"`-style proto3 JSON duration.
fn is_proto_duration(value: &Value) -> bool {
    value.as_str().is_some_and(|d| {
        d.strip_suffix('s')
            .is_some_and(|n| n.parse::<f64>().is_ok_and(|secs| secs >= 0.0))
    })
}

/// The envelope and headers every event has.
fn assert_envelope(
    message: &async_nats::jetstream::message::StreamMessage,
    names: &Names,
    slug: &str,
    outcome: &str,
    rotation_id: &str,
    request_id: &str,
) -> CloudEvent {
    assert_eq!(
        message.subject.as_str(),
        format!("{}.{slug}.{outcome}", names.prefix)
    );
    let event = CloudEvent::from_bytes(&message.payload).expect("a CloudEvent");
    let raw: Value = serde_json::from_slice(&message.payload).expect("JSON");
    let mut envelope_keys = BTreeSet::from([
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "rotationtype",
        "outcome",
        "requestid",
        "data",
    ]);
    if event.traceparent.is_some() {
        envelope_keys.insert("traceparent");
    }
    if event.tracestate.is_some() {
        envelope_keys.insert("tracestate");
    }
    assert_eq!(keys(&raw), envelope_keys, "envelope attributes");
    assert_eq!(event.specversion, "1.0");
    assert_eq!(event.source, "/rotator");
    let expected_type = match outcome {
        "completed" => "rotator.v1.RotationCompleted",
        _ => "rotator.v1.RotationFailed",
    };
    assert_eq!(event.event_type, expected_type);
    assert_eq!(event.subject, rotation_id);
    assert_eq!(event.datacontenttype, "application/json");
    assert_eq!(event.rotationtype, slug);
    assert_eq!(event.outcome, outcome);
    assert_eq!(event.requestid, request_id);
    let id = uuid::Uuid::parse_str(&event.id).expect("the id is a UUID");
    assert_eq!(id.get_version_num(), 7, "event ids are UUIDv7");
    chrono::DateTime::parse_from_rfc3339(&event.time).expect("time is RFC 3339");

    assert_eq!(header(message, "Nats-Msg-Id"), Some(event.id.as_str()));
    assert_eq!(header(message, "content-type"), Some(CONTENT_TYPE));
    assert_eq!(header(message, "x-request-id"), Some(request_id));
    assert_eq!(
        header(message, "traceparent"),
        event.traceparent.as_deref(),
        "the traceparent header and extension agree (both absent while no tracer is installed)"
    );

    let attempt = &event.data["attempt"];
    assert_eq!(attempt["eventId"], event.id.as_str());
    assert_eq!(attempt["time"], event.time.as_str());
    assert_eq!(attempt["rotationId"], rotation_id);
    assert_eq!(attempt["backend"], "BACKEND_FORWARDED");
    assert_eq!(attempt["trigger"], "TRIGGER_MANUAL");
    assert_eq!(attempt["attemptNumber"], 1);
    assert_eq!(attempt["requestId"], request_id);
    assert!(is_proto_duration(&attempt["duration"]), "{attempt}");
    match &event.traceparent {
        Some(tp) => assert_eq!(attempt["traceId"], tp.split('-').nth(1).expect("trace id")),
        None => assert!(attempt.get("traceId").is_none()),
    }
    event
}

#[tokio::test]
async fn a_completed_and_a_failed_event_carry_every_field() {
    let names = unique_names();
    let fake = FakeInfisical::start().await;
    let server = EventsServer::start(env(&fake, &names)).await;
    let mut client = server.client().await;
    let slug = "postgres-credentials";
    let id = fake.rotation_id(slug);

    let rotation = client
        .rotate_secrets(rotate(RotationType::PostgresCredentials, id, "events-ok-1"))
        .await
        .expect("rotation succeeds")
        .into_inner()
        .secret_rotation
        .expect("a rotation");
    fake.fail_next_rotation(id, "connect ECONNREFUSED 10.0.0.7:5432");
    let status = client
        .rotate_secrets(rotate(
            RotationType::PostgresCredentials,
            id,
            "events-fail-1",
        ))
        .await
        .expect_err("the provider fails");
    let info = status.get_details_error_info().expect("ErrorInfo");

    let messages = wait_for_messages(SHARED_NATS, &names.stream, 2, WAIT).await;
    assert_eq!(messages.len(), 2, "one event per attempt");

    let completed = assert_envelope(
        &messages[0],
        &names,
        slug,
        "completed",
        &id.to_string(),
        "events-ok-1",
    );
    let data = &completed.data;
    assert_eq!(keys(data), BTreeSet::from(["attempt"]));
    let attempt = &data["attempt"];
    assert_eq!(
        keys(attempt),
        BTreeSet::from([
            "eventId",
            "time",
            "rotationId",
            "type",
            "name",
            "projectId",
            "environment",
            "folderPath",
            "backend",
            "activeIndex",
            "trigger",
            "attemptNumber",
            "duration",
            "requestId",
        ]),
        "a success carries everything the rotation says, and no upstream reqId or trace id here"
    );
    assert_eq!(attempt["type"], "ROTATION_TYPE_POSTGRES_CREDENTIALS");
    assert_eq!(attempt["name"], rotation.name.as_str());
    assert_eq!(attempt["projectId"], rotation.project_id.as_str());
    let environment = rotation.environment.as_ref().expect("environment");
    assert_eq!(attempt["environment"], environment.slug.as_str());
    let folder = rotation.folder.as_ref().expect("folder");
    assert_eq!(attempt["folderPath"], folder.path.as_str());
    assert_eq!(attempt["activeIndex"], rotation.active_index);

    let failed = assert_envelope(
        &messages[1],
        &names,
        slug,
        "failed",
        &id.to_string(),
        "events-fail-1",
    );
    let data = &failed.data;
    assert_eq!(
        keys(data),
        BTreeSet::from(["attempt", "code", "retryable", "message", "reason"])
    );
    assert_eq!(data["code"], "INTERNAL");
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(data["reason"], info.reason.as_str());
    assert_eq!(data["retryable"], false);
    let message = data["message"].as_str().expect("message");
    assert!(message.contains("ECONNREFUSED 10.0.0.7:5432"), "{message}");
    assert!(message.chars().count() <= 1024);
    let attempt = &data["attempt"];
    assert_eq!(
        attempt["upstreamReqId"].as_str(),
        info.metadata.get("upstream_req_id").map(String::as_str),
        "the upstream reqId the caller saw"
    );
    assert_eq!(attempt["type"], "ROTATION_TYPE_POSTGRES_CREDENTIALS");
    assert!(
        attempt.get("activeIndex").is_none(),
        "unknown after a failure"
    );

    server.shutdown().await;
    delete_stream(SHARED_NATS, &names.stream).await;
}

#[tokio::test]
async fn a_call_rejected_before_any_backend_publishes_nothing() {
    let names = unique_names();
    let fake = FakeInfisical::start().await;
    let server = EventsServer::start(env(&fake, &names)).await;
    let mut client = server.client().await;

    client
        .rotate_secrets(rotate(
            RotationType::PostgresCredentials,
            "not-a-uuid",
            "bad-1",
        ))
        .await
        .expect_err("invalid id");
    client
        .rotate_secrets(rotate(
            RotationType::Unspecified,
            uuid::Uuid::new_v4(),
            "bad-2",
        ))
        .await
        .expect_err("no type");
    let id = fake.rotation_id("redis-credentials");
    client
        .rotate_secrets(rotate(RotationType::RedisCredentials, id, "good-1"))
        .await
        .expect("rotation succeeds");

    // The relay publishes in outbox order, so once the good call's event is in, any event of the
    // rejected calls would be in too.
    let messages = wait_for_messages(SHARED_NATS, &names.stream, 1, WAIT).await;
    let request_ids: Vec<_> = messages
        .iter()
        .map(|m| header(m, "x-request-id").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(request_ids, ["good-1"]);
    server.wait_outbox_drained(WAIT).await;

    server.shutdown().await;
    delete_stream(SHARED_NATS, &names.stream).await;
}

/// The secret values of a generated-credentials body.
fn secrets_of(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for set in body["generatedCredentials"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for key in ["password", "clientSecret", "secretAccessKey"] {
            if let Some(secret) = set[key].as_str() {
                out.push(secret.to_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn no_generated_secret_appears_in_any_published_byte() {
    let names = unique_names();
    let fake = FakeInfisical::start().await;
    let server = EventsServer::start(env(&fake, &names)).await;
    let mut client = server.client().await;

    let mut secrets = BTreeSet::new();
    let mut calls = 0;
    for info in TYPES {
        let id = fake.rotation_id(info.slug);
        secrets.extend(secrets_of(&fake.generated_credentials_json(id)));
        for round in 0..2 {
            client
                .rotate_secrets(rotate(
                    info.rotation_type,
                    id,
                    &format!("{}-{round}", info.slug),
                ))
                .await
                .expect("rotation succeeds");
            calls += 1;
            secrets.extend(secrets_of(&fake.generated_credentials_json(id)));
        }
    }
    // A provider error that echoes a password generated two rotations ago: Infisical no longer
    // knows it, so only rotator's scrubbing stands between it and the subscribers.
    let pg = fake.rotation_id("postgres-credentials");
    let old = secrets_of(&fake.generated_credentials_json(pg));
    for _ in 0..2 {
        client
            .rotate_secrets(rotate(RotationType::PostgresCredentials, pg, "pg-more"))
            .await
            .expect("rotation succeeds");
        calls += 1;
        secrets.extend(secrets_of(&fake.generated_credentials_json(pg)));
    }
    fake.fail_next_rotation(
        pg,
        &format!(
            "password authentication failed: password={} user=app",
            old[0]
        ),
    );
    client
        .rotate_secrets(rotate(RotationType::PostgresCredentials, pg, "pg-fail"))
        .await
        .expect_err("the provider fails");
    calls += 1;
    assert!(secrets.len() >= 2 * TYPES.len(), "secrets were collected");

    let messages = wait_for_messages(SHARED_NATS, &names.stream, calls, WAIT).await;
    assert_eq!(messages.len(), calls);
    for message in &messages {
        let mut bytes = message.subject.as_bytes().to_vec();
        for (name, values) in message.headers.iter() {
            bytes.extend_from_slice(name.as_ref());
            for value in values {
                bytes.extend_from_slice(value.as_str().as_bytes());
            }
        }
        bytes.extend_from_slice(&message.payload);
        let text = String::from_utf8_lossy(&bytes);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a generated secret was published in {}",
                message.subject
            );
        }
    }
    let last = CloudEvent::from_bytes(&messages[calls - 1].payload).expect("event");
    assert!(
        last.data["message"]
            .as_str()
            .is_some_and(|m| m.contains("password=*******************")),
        "the echoed password is masked: {}",
        last.data["message"]
    );
    assert_eq!(
        stream_messages(SHARED_NATS, &names.stream).await.len(),
        calls
    );

    server.shutdown().await;
    delete_stream(SHARED_NATS, &names.stream).await;
}

/// A forwarded rotation whose answer is lost (the connection drops after Infisical rotated) and
/// whose immediate read-back fails ends ROTATION_OUTCOME_UNKNOWN, with its event. Reading back
/// in the background later finds it rotated, and a second event says so, linked to the first;
/// nothing is rotated again.
#[tokio::test]
async fn an_unknown_outcome_is_followed_by_the_event_of_what_happened() {
    let names = unique_names();
    let fake = FakeInfisical::start().await;
    let server = EventsServer::start(env(&fake, &names)).await;
    let mut client = server.client().await;
    let id = fake.rotation_id("postgres-credentials");
    fake.drop_connection_after_apply(id);
    // The read-back right after the lost answer fails (each send of the client's retries).
    for _ in 0..3 {
        fake.inject_next(
            Route::Get,
            503,
            serde_json::json!({"reqId": "req-AAAAAAAAAAAAAA", "statusCode": 503,
                "message": "Service Unavailable", "error": "ServiceUnavailable"}),
            vec![],
        );
    }
    let status = client
        .rotate_secrets(rotate(
            RotationType::PostgresCredentials,
            id,
            "events-unknown-1",
        ))
        .await
        .expect_err("the outcome is unknown at first");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "ROTATION_OUTCOME_UNKNOWN");

    let messages = wait_for_messages(SHARED_NATS, &names.stream, 2, WAIT).await;
    assert_eq!(messages.len(), 2, "the first event and its follow-up");
    let (slug, rotation_id) = ("postgres-credentials", id.to_string());
    let first = assert_envelope(
        &messages[0],
        &names,
        slug,
        "failed",
        &rotation_id,
        "events-unknown-1",
    );
    assert_eq!(first.data["reason"], "ROTATION_OUTCOME_UNKNOWN");
    assert!(first.data["attempt"].get("resolvesEventId").is_none());
    let second = assert_envelope(
        &messages[1],
        &names,
        slug,
        "completed",
        &rotation_id,
        "events-unknown-1",
    );
    assert_eq!(second.data["attempt"]["resolvesEventId"], first.id.as_str());
    assert_eq!(fake.rotate_calls(id), 1, "never rotated again");
    server.shutdown().await;
    delete_stream(SHARED_NATS, &names.stream).await;
}
