//! RotateSecrets, Get, List and GetGeneratedCredentials forwarded to a fake Infisical, through a
//! real gRPC client over TCP: every field of all 14 types, token handling, health, reflection.

use std::time::Duration;

use rotator::proto::{
    GetGeneratedCredentialsRequest, GetSecretRotationRequest, ListSecretRotationsRequest,
    RotateSecretsRequest, RotationName, RotationType, get_secret_rotation_request::Lookup,
};
use rotator::rotation::{TYPES, json};
use rotator_testkit::fake_infisical;
use rotator_testkit::fake_infisical::{
    CLIENT_ID, CLIENT_SECRET, FakeConfig, FakeInfisical, PROJECT_ID,
};
use rotator_testkit::rotator_server::{TestServer, forwarding_env};
use serde_json::Value;

async fn forwarding_to(fake: &FakeInfisical) -> TestServer {
    TestServer::start(forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET)).await
}

/// Upstream omits absent optional parameters; rotator writes them as null. Compare without nulls.
fn without_nulls(mut value: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(|_, x| !x.is_null());
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

fn rotate_request(t: RotationType, id: impl ToString) -> RotateSecretsRequest {
    RotateSecretsRequest {
        r#type: t as i32,
        rotation_id: id.to_string(),
    }
}

#[tokio::test]
async fn all_fourteen_types_round_trip_every_field() {
    let fake = FakeInfisical::start().await;
    let server = forwarding_to(&fake).await;
    let mut client = server.client().await;
    for info in TYPES {
        let id = fake.rotation_id(info.slug);
        let before = fake.rotation_json(id);
        let rotated = client
            .rotate_secrets(rotate_request(info.rotation_type, id))
            .await
            .unwrap_or_else(|s| panic!("{}: {s:?}", info.slug))
            .into_inner()
            .secret_rotation
            .expect("rotation in the answer");
        let upstream = fake.rotation_json(id);
        assert_ne!(
            upstream["activeIndex"], before["activeIndex"],
            "{}: the fake rotated",
            info.slug
        );
        assert_eq!(
            without_nulls(json::rotation_to_json(&rotated)),
            without_nulls(upstream.clone()),
            "{}",
            info.slug
        );
        assert_eq!(rotated.backend(), rotator::proto::Backend::Forwarded);

        let got = client
            .get_secret_rotation(GetSecretRotationRequest {
                r#type: info.rotation_type as i32,
                lookup: Some(Lookup::RotationId(id.to_string())),
            })
            .await
            .expect("get")
            .into_inner()
            .secret_rotation
            .expect("rotation");
        assert_eq!(got, rotated, "{}: get equals the rotate answer", info.slug);

        let credentials = client
            .get_generated_credentials(GetGeneratedCredentialsRequest {
                r#type: info.rotation_type as i32,
                rotation_id: id.to_string(),
            })
            .await
            .expect("credentials")
            .into_inner();
        assert_eq!(
            credentials.generated_credentials.len(),
            2,
            "{}: two sets after a rotation",
            info.slug
        );
        assert_eq!(
            json::generated_credentials_to_json(&credentials),
            fake.generated_credentials_json(id),
            "{}: typed credentials carry every field",
            info.slug
        );
    }
    assert_eq!(fake.total_rotate_calls(), 14);
    server.shutdown().await;
}

#[tokio::test]
async fn list_by_type_across_types_and_get_by_name() {
    let fake = FakeInfisical::start().await;
    let server = forwarding_to(&fake).await;
    let mut client = server.client().await;
    let all = client
        .list_secret_rotations(ListSecretRotationsRequest {
            r#type: 0,
            project_id: PROJECT_ID.into(),
        })
        .await
        .expect("list all")
        .into_inner()
        .secret_rotations;
    assert_eq!(all.len(), 14);
    let postgres = client
        .list_secret_rotations(ListSecretRotationsRequest {
            r#type: RotationType::PostgresCredentials as i32,
            project_id: PROJECT_ID.into(),
        })
        .await
        .expect("list postgres")
        .into_inner()
        .secret_rotations;
    assert_eq!(postgres.len(), 1);
    let upstream = fake.rotation_json(fake.rotation_id("postgres-credentials"));
    let by_name = RotationName {
        name: upstream["name"].as_str().expect("name").into(),
        project_id: PROJECT_ID.into(),
        environment: upstream["environment"]["slug"]
            .as_str()
            .expect("env")
            .into(),
        secret_path: upstream["folder"]["path"].as_str().expect("path").into(),
    };
    let found = client
        .get_secret_rotation(GetSecretRotationRequest {
            r#type: RotationType::PostgresCredentials as i32,
            lookup: Some(Lookup::ByName(by_name)),
        })
        .await
        .expect("get by name")
        .into_inner()
        .secret_rotation
        .expect("rotation");
    assert_eq!(found, postgres[0]);
    server.shutdown().await;
}

#[tokio::test]
async fn the_request_id_is_honoured_and_returned() {
    let fake = FakeInfisical::start().await;
    let server = forwarding_to(&fake).await;
    let mut client = server.client().await;
    let id = fake.rotation_id("auth0-client-secret");
    let mut request = tonic::Request::new(rotate_request(RotationType::Auth0ClientSecret, id));
    request
        .metadata_mut()
        .insert("x-request-id", "caller-chosen-42".parse().expect("ascii"));
    let response = client.rotate_secrets(request).await.expect("rotate");
    assert_eq!(
        response
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("caller-chosen-42")
    );
    let upstream_headers = fake.last_request_headers();
    assert!(
        upstream_headers
            .iter()
            .any(|(k, v)| k == "request-id" && v == "caller-chosen-42"),
        "{upstream_headers:?}"
    );

    let response = client
        .rotate_secrets(rotate_request(RotationType::Auth0ClientSecret, id))
        .await
        .expect("rotate");
    let generated = response
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("generated id");
    assert!(uuid::Uuid::parse_str(generated).is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn one_login_serves_many_calls_and_a_renewal_comes_before_expiry() {
    let fake = FakeInfisical::start_with(FakeConfig {
        access_token_ttl_secs: 6,
        access_token_max_ttl_secs: 3600,
        ..FakeConfig::default()
    })
    .await;
    let server = forwarding_to(&fake).await;
    let mut client = server.client().await;
    let id = fake.rotation_id("okta-client-secret");
    let get = || GetSecretRotationRequest {
        r#type: RotationType::OktaClientSecret as i32,
        lookup: Some(Lookup::RotationId(id.to_string())),
    };
    // The first calls within a TTL reuse one token (a 6 s TTL is refreshed 5 s before expiry).
    client.get_secret_rotation(get()).await.expect("first");
    assert_eq!((fake.login_calls(), fake.renew_calls()), (1, 0));
    // Let the token age past its refresh point: the next call renews instead of logging in.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .get_secret_rotation(get())
        .await
        .expect("after refresh point");
    assert_eq!((fake.login_calls(), fake.renew_calls()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn an_expired_or_revoked_token_triggers_one_relogin_and_one_retry() {
    let fake = FakeInfisical::start().await;
    let server = forwarding_to(&fake).await;
    let mut client = server.client().await;
    let id = fake.rotation_id("postgres-credentials");
    client
        .rotate_secrets(rotate_request(RotationType::PostgresCredentials, id))
        .await
        .expect("first rotate");
    let active = fake.rotation_json(id)["activeIndex"].clone();

    fake.expire_all_tokens();
    client
        .rotate_secrets(rotate_request(RotationType::PostgresCredentials, id))
        .await
        .expect("rotate after expiry");
    assert_eq!(fake.login_calls(), 2, "one re-login");
    assert_ne!(
        fake.rotation_json(id)["activeIndex"],
        active,
        "rotated exactly once more"
    );

    fake.revoke_all_tokens();
    let get = GetSecretRotationRequest {
        r#type: RotationType::PostgresCredentials as i32,
        lookup: Some(Lookup::RotationId(id.to_string())),
    };
    client
        .get_secret_rotation(get)
        .await
        .expect("get after revocation");
    assert_eq!(fake.login_calls(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn a_static_token_is_sent_as_is() {
    let fake = FakeInfisical::start().await;
    let token = fake.issue_token();
    let env = [
        ("ROTATOR_INFISICAL_URL", fake.base_url()),
        ("ROTATOR_INFISICAL_TOKEN", token),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let server = TestServer::start(env).await;
    let mut client = server.client().await;
    let id = fake.rotation_id("redis-credentials");
    client
        .rotate_secrets(rotate_request(RotationType::RedisCredentials, id))
        .await
        .expect("rotate with a static token");
    assert_eq!(fake.login_calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_both_reflection_versions_answer() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let fake = FakeInfisical::start().await;
    let server = forwarding_to(&fake).await;
    let channel = server.channel().await;
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "rotator.v1.SecretRotationService".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let answer = stream
        .message()
        .await
        .expect("message")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("services expected")
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "rotator.v1.SecretRotationService"),
        "{list:?}"
    );

    use tonic_reflection::pb::v1alpha as alpha;
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut stream = alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    assert!(stream.message().await.expect("message").is_some());
    server.shutdown().await;
}

/// grpcurl printed rotator's error details as base64: `google.rpc.ErrorInfo` and its siblings
/// were missing from the reflection descriptors. Each detail type resolves by symbol, and the
/// file it is in resolves its import (`google/protobuf/duration.proto`) by name.
#[tokio::test]
async fn error_detail_types_resolve_by_reflection() {
    use prost::Message as _;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let fake = FakeInfisical::start().await;
    let server = forwarding_to(&fake).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let mut ask = async |message: MessageRequest| {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message),
        };
        let answer = client
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .expect("reflection v1")
            .into_inner()
            .message()
            .await
            .expect("message")
            .expect("one answer");
        match answer.message_response {
            Some(MessageResponse::FileDescriptorResponse(files)) => files
                .file_descriptor_proto
                .iter()
                .map(|raw| {
                    prost_types::FileDescriptorProto::decode(raw.as_slice()).expect("descriptor")
                })
                .collect::<Vec<_>>(),
            other => panic!("a file descriptor expected, got {other:?}"),
        }
    };
    for symbol in [
        "google.rpc.ErrorInfo",
        "google.rpc.RequestInfo",
        "google.rpc.RetryInfo",
        "google.rpc.Status",
    ] {
        let files = ask(MessageRequest::FileContainingSymbol(symbol.into())).await;
        let (_, name) = symbol.rsplit_once('.').expect("qualified");
        let file = files
            .iter()
            .find(|f| f.message_type.iter().any(|m| m.name() == name))
            .unwrap_or_else(|| panic!("{symbol} not in {files:?}"));
        for dependency in &file.dependency {
            let found = ask(MessageRequest::FileByFilename(dependency.clone())).await;
            assert!(
                found.iter().any(|f| f.name() == dependency),
                "{dependency} of {symbol} does not resolve"
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_first_calls_share_one_login() {
    let fake = FakeInfisical::start().await;
    let server = forwarding_to(&fake).await;
    let client = server.client().await;
    let calls = TYPES.iter().map(|info| {
        let mut client = client.clone();
        let id = fake.rotation_id(info.slug).to_string();
        let t = info.rotation_type as i32;
        async move {
            client
                .get_secret_rotation(GetSecretRotationRequest {
                    r#type: t,
                    lookup: Some(Lookup::RotationId(id)),
                })
                .await
        }
    });
    for result in futures::future::join_all(calls).await {
        result.expect("get");
    }
    assert_eq!(fake.login_calls(), 1, "single-flight login");
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_client_secret_is_not_retried_in_a_loop() {
    let fake = FakeInfisical::start().await;
    let server =
        TestServer::start(forwarding_env(&fake.base_url(), CLIENT_ID, "wrong-secret")).await;
    let mut client = server.client().await;
    let id = fake.rotation_id("postgres-credentials");
    let first = client
        .rotate_secrets(rotate_request(RotationType::PostgresCredentials, id))
        .await
        .expect_err("login fails");
    assert_eq!(first.code(), tonic::Code::Unauthenticated, "{first:?}");
    let second = client
        .rotate_secrets(rotate_request(RotationType::PostgresCredentials, id))
        .await
        .expect_err("backing off");
    assert_eq!(second.code(), tonic::Code::Unavailable, "{second:?}");
    assert_eq!(
        fake.login_calls(),
        1,
        "the second call did not log in again (lockout after three)"
    );
    assert_eq!(fake.total_rotate_calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_renewal_falls_back_to_login() {
    let fake = FakeInfisical::start_with(FakeConfig {
        access_token_ttl_secs: 6,
        ..FakeConfig::default()
    })
    .await;
    let server = forwarding_to(&fake).await;
    let mut client = server.client().await;
    let id = fake.rotation_id("ldap-password");
    let get = || GetSecretRotationRequest {
        r#type: RotationType::LdapPassword as i32,
        lookup: Some(Lookup::RotationId(id.to_string())),
    };
    client.get_secret_rotation(get()).await.expect("first");
    fake.inject_next(
        fake_infisical::Route::Renew,
        401,
        serde_json::json!({"reqId": "req-AAAAAAAAAAAAAA", "statusCode": 401, "error": "UnauthorizedError", "message": "Failed to renew MI access token due to TTL expiration"}),
        vec![],
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .get_secret_rotation(get())
        .await
        .expect("after a failed renewal");
    assert_eq!((fake.renew_calls(), fake.login_calls()), (1, 2));
    server.shutdown().await;
}
