//! Upstream safety: `network.deny_private_addresses` refuses loopback/private targets (checked
//! on the resolved addresses), while the default lets the tests' loopback fake through.

use std::collections::HashMap;

use rotator::config::{Config, Env};
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator::server::ServeError;
use rotator::upstream::infisical::BuildError;
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::secure::{SecureServer, Transport, reason_and_request_id};

fn env(url: &str, deny: bool) -> Env {
    HashMap::from([
        ("ROTATOR_INFISICAL_URL".to_owned(), url.to_owned()),
        (
            "ROTATOR_INFISICAL_CLIENT_ID".to_owned(),
            CLIENT_ID.to_owned(),
        ),
        (
            "ROTATOR_INFISICAL_CLIENT_SECRET".to_owned(),
            CLIENT_SECRET.to_owned(),
        ),
        (
            "ROTATOR_NETWORK_DENY_PRIVATE_ADDRESSES".to_owned(),
            deny.to_string(),
        ),
    ])
}

#[tokio::test]
async fn a_private_ip_literal_is_refused_when_building_the_upstream() {
    let fake = FakeInfisical::start().await;
    let config = Config::from_toml_str("", &env(&fake.base_url(), true)).expect("valid");
    let error = rotator::server::build_engine(&config, None).expect_err("refused");
    assert!(
        matches!(error, ServeError::Upstream(BuildError::Address(_))),
        "{error:?}"
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_connect_and_nothing_is_sent() {
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let by_name = fake.base_url().replace("127.0.0.1", "localhost");
    let request = || RotateSecretsRequest {
        r#type: RotationType::PostgresCredentials as i32,
        rotation_id: pg.to_string(),
    };

    let denying = SecureServer::start("", &env(&by_name, true)).await;
    let status = denying
        .client(Transport::Plain)
        .await
        .rotate_secrets(request())
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(reason_and_request_id(&status).0, "UPSTREAM_UNREACHABLE");
    assert!(
        fake.requests().is_empty(),
        "nothing reached the private target"
    );
    denying.shutdown().await;

    // The default (off, as in every other test) lets the loopback fake through.
    let allowing = SecureServer::start("", &env(&by_name, false)).await;
    allowing
        .client(Transport::Plain)
        .await
        .rotate_secrets(request())
        .await
        .expect("allowed by default");
    assert_eq!(fake.rotate_calls(pg), 1);
    allowing.shutdown().await;
}
