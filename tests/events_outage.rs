//! NATS outages never cost a rotation or an event: with NATS stopped mid-run, unreachable at
//! start, wrongly configured or not configured at all, RotateSecrets keeps answering, events wait
//! in the outbox, and once NATS is back every event is in the stream exactly once, in order per
//! rotation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator_testkit::events::{
    EventsServer, PrivateNats, header, nats_env, stream_messages, unique_names, wait_for_messages,
};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::rotator_server::forwarding_env;
use tokio::time::Instant;
use tonic::Request;

const WAIT: Duration = Duration::from_secs(60);

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

#[tokio::test]
async fn nats_stopped_during_200_rotations_loses_and_doubles_no_event() {
    let mut nats = PrivateNats::start().await;
    let names = unique_names();
    let fake = FakeInfisical::start().await;
    let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
    env.extend(nats_env(&nats.url(), &names));
    let server = EventsServer::start(env).await;
    let mut client = server.client().await;

    let rotations = [
        ("postgres-credentials", RotationType::PostgresCredentials),
        ("mysql-credentials", RotationType::MysqlCredentials),
        ("redis-credentials", RotationType::RedisCredentials),
        ("ldap-password", RotationType::LdapPassword),
        ("auth0-client-secret", RotationType::Auth0ClientSecret),
    ];
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..200 {
        if i == 50 {
            nats.stop();
        }
        if i == 150 {
            assert!(
                server.outbox_depth().await >= 100,
                "the events of the outage wait in the outbox"
            );
            nats.run().await;
        }
        let (slug, t) = rotations[i % rotations.len()];
        let id = fake.rotation_id(slug);
        let request_id = format!("outage-{i:03}");
        client
            .rotate_secrets(rotate(t, id, &request_id))
            .await
            .unwrap_or_else(|s| panic!("rotation {i} answers while NATS is down: {s:?}"));
        sent.entry(id.to_string()).or_default().push(request_id);
    }

    wait_for_messages(&nats.url(), &names.stream, 200, WAIT).await;
    server.wait_outbox_drained(WAIT).await;
    let messages = stream_messages(&nats.url(), &names.stream).await;
    assert_eq!(messages.len(), 200, "every event exactly once");
    let ids: BTreeSet<_> = messages
        .iter()
        .map(|m| header(m, "Nats-Msg-Id").expect("Nats-Msg-Id").to_owned())
        .collect();
    assert_eq!(ids.len(), 200, "no event id twice");
    let mut published: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in &messages {
        let event = rotator::events::cloudevent::CloudEvent::from_bytes(&message.payload)
            .expect("a CloudEvent");
        published
            .entry(event.subject)
            .or_default()
            .push(event.requestid);
    }
    assert_eq!(
        published, sent,
        "every rotation's events, in its call order"
    );

    server.shutdown().await;
}

#[tokio::test]
async fn nats_unreachable_at_start_delays_events_but_not_rotations() {
    let mut nats = PrivateNats::reserve();
    let names = unique_names();
    let fake = FakeInfisical::start().await;
    let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
    env.extend(nats_env(&nats.url(), &names));
    let server = EventsServer::start(env).await;
    let mut client = server.client().await;
    let id = fake.rotation_id("mongodb-credentials");
    for i in 0..3 {
        client
            .rotate_secrets(rotate(
                RotationType::MongodbCredentials,
                id,
                &format!("late-{i}"),
            ))
            .await
            .expect("RotateSecrets answers without NATS");
    }
    assert_eq!(server.outbox_depth().await, 3);

    nats.run().await;
    let messages = wait_for_messages(&nats.url(), &names.stream, 3, WAIT).await;
    let request_ids: Vec<_> = messages
        .iter()
        .map(|m| header(m, "x-request-id").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(request_ids, ["late-0", "late-1", "late-2"]);
    server.wait_outbox_drained(WAIT).await;

    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_nats_url_or_no_nats_leaves_rotate_secrets_working() {
    let fake = FakeInfisical::start().await;
    let id = fake.rotation_id("okta-client-secret");
    let wrong = HashMap::from([
        (
            "ROTATOR_NATS_URL".to_owned(),
            "nats://127.0.0.1:1".to_owned(),
        ),
        ("ROTATOR_NATS_STREAM_NAME".to_owned(), unique_names().stream),
    ]);
    for nats in [Some(wrong), None] {
        let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
        env.extend(nats.clone().unwrap_or_default());
        let server = EventsServer::start(env).await;
        let mut client = server.client().await;
        let rotation = client
            .rotate_secrets(rotate(RotationType::OktaClientSecret, id, "no-nats"))
            .await
            .unwrap_or_else(|s| panic!("RotateSecrets answers (nats: {:?}): {s:?}", nats.is_some()))
            .into_inner()
            .secret_rotation
            .expect("a rotation");
        assert_eq!(rotation.id, id.to_string());
        assert_eq!(
            server.outbox_depth().await,
            1,
            "the event waits in the outbox"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn without_nats_the_outbox_keeps_only_the_newest_events_and_counts_the_rest() {
    let fake = FakeInfisical::start().await;
    let id = fake.rotation_id("okta-client-secret");
    let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
    env.insert(
        "ROTATOR_EVENTS_UNPUBLISHED_CAP_WITHOUT_NATS".to_owned(),
        "2".to_owned(),
    );
    let server = EventsServer::start(env).await;
    let mut client = server.client().await;
    for n in 0..5 {
        client
            .rotate_secrets(rotate(
                RotationType::OktaClientSecret,
                id,
                &format!("cap-{n}"),
            ))
            .await
            .expect("RotateSecrets answers without NATS");
    }
    let deadline = Instant::now() + WAIT;
    while server.outbox_depth().await > 2 {
        assert!(
            Instant::now() < deadline,
            "the outbox was never trimmed to 2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.outbox_depth().await, 2, "the newest two stay");
    let metrics = rotator::telemetry::metrics::global().render_prometheus();
    assert!(
        metrics.contains("rotator_events_discarded_total 3"),
        "three events counted as discarded:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("discarded"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.shutdown().await;
}
