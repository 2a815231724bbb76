//! Caller authentication and authorization against a real server over TCP, forwarding to the
//! fake Infisical: bearer tokens, server TLS, mutual TLS (certificates made by rcgen), per-identity
//! permissions by action, type and rotation pattern, gated health and reflection, and the CLI.
//! Every denial carries the request id and reaches no backend.

use std::collections::HashMap;

use rotator::config::Env;
use rotator::proto::get_secret_rotation_request::Lookup;
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    GetGeneratedCredentialsRequest, GetSecretRotationRequest, ListSecretRotationsRequest,
    RotateSecretsRequest, RotationName, RotationType,
};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical, PROJECT_ID};
use rotator_testkit::log_capture;
use rotator_testkit::secure::{
    Pki, SecureServer, Transport, reason_and_request_id, token_hash, with_token,
};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

const DEPLOYER: &str = "rtr_deployer_token_0123456789abcdef0123456789";
const READER: &str = "rtr_reader_token_0123456789abcdef0123456789ab";
const VAULT: &str = "rtr_vault_token_0123456789abcdef0123456789abc";
const NAMED: &str = "rtr_named_token_0123456789abcdef0123456789abc";
const SPIFFE: &str = "spiffe://rotator.test/ns/apps/sa/svc";

fn forwarding_env(fake: &FakeInfisical) -> Env {
    HashMap::from([
        ("ROTATOR_INFISICAL_URL".to_owned(), fake.base_url()),
        (
            "ROTATOR_INFISICAL_CLIENT_ID".to_owned(),
            CLIENT_ID.to_owned(),
        ),
        (
            "ROTATOR_INFISICAL_CLIENT_SECRET".to_owned(),
            CLIENT_SECRET.to_owned(),
        ),
    ])
}

/// The identities of these tests. `vault_rotation` is the one rotation "vault" may read
/// credentials of.
fn identities(vault_rotation: Uuid, with_certs: bool) -> String {
    let mut toml = format!(
        r#"
        [[auth.identities]]
        name = "deployer"
        token_sha256 = "{deployer}"
        [[auth.identities.permissions]]
        actions = ["rotate", "read"]
        types = ["postgres-credentials"]
        rotations = ["*"]

        [[auth.identities]]
        name = "reader"
        token_sha256 = "{reader}"
        [[auth.identities.permissions]]
        actions = ["read"]
        types = ["*"]
        rotations = ["*"]

        [[auth.identities]]
        name = "vault"
        token_sha256 = "{vault}"
        [[auth.identities.permissions]]
        actions = ["read-credentials"]
        types = ["postgres-credentials"]
        rotations = ["{vault_rotation}"]

        [[auth.identities]]
        name = "named"
        token_sha256 = "{named}"
        [[auth.identities.permissions]]
        actions = ["read"]
        types = ["*"]
        rotations = ["pg-*"]
        "#,
        deployer = token_hash(DEPLOYER),
        reader = token_hash(READER),
        vault = token_hash(VAULT),
        named = token_hash(NAMED),
    );
    if with_certs {
        toml.push_str(&format!(
            r#"
            [[auth.identities]]
            name = "svc"
            cert_identity = "{SPIFFE}"
            [[auth.identities.permissions]]
            actions = ["rotate", "read"]
            types = ["*"]
            rotations = ["*"]

            [[auth.identities]]
            name = "cn-only"
            cert_identity = "cn-only-client"
            [[auth.identities.permissions]]
            actions = ["read"]
            types = ["*"]
            rotations = ["*"]
            "#
        ));
    }
    toml
}

fn rotate(t: RotationType, id: Uuid) -> RotateSecretsRequest {
    RotateSecretsRequest {
        r#type: t as i32,
        rotation_id: id.to_string(),
    }
}

fn get(t: RotationType, id: Uuid) -> GetSecretRotationRequest {
    GetSecretRotationRequest {
        r#type: t as i32,
        lookup: Some(Lookup::RotationId(id.to_string())),
    }
}

fn get_by_name(
    t: RotationType,
    name: &str,
    fake: &FakeInfisical,
    id: Uuid,
) -> GetSecretRotationRequest {
    let json = fake.rotation_json(id);
    GetSecretRotationRequest {
        r#type: t as i32,
        lookup: Some(Lookup::ByName(RotationName {
            name: name.to_owned(),
            project_id: PROJECT_ID.to_owned(),
            environment: json["environment"]["slug"]
                .as_str()
                .expect("env slug")
                .to_owned(),
            secret_path: json["folder"]["path"].as_str().expect("path").to_owned(),
        })),
    }
}

fn credentials(t: RotationType, id: Uuid) -> GetGeneratedCredentialsRequest {
    GetGeneratedCredentialsRequest {
        r#type: t as i32,
        rotation_id: id.to_string(),
    }
}

fn list(t: RotationType) -> ListSecretRotationsRequest {
    ListSecretRotationsRequest {
        r#type: t as i32,
        project_id: PROJECT_ID.to_owned(),
    }
}

#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, reason: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    let (got, request_id) = reason_and_request_id(&status);
    assert_eq!(got, reason);
    assert!(!request_id.is_empty());
    assert!(status.message().contains(&request_id), "{status:?}");
}

const PG: RotationType = RotationType::PostgresCredentials;
const MYSQL: RotationType = RotationType::MysqlCredentials;

#[tokio::test]
async fn tokens_and_grants_decide_every_rotation_call_before_any_backend() {
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let mysql = fake.rotation_id("mysql-credentials");
    let pg_app = fake.add_rotation("postgres-credentials", "pg-app");
    fake.add_rotation("postgres-credentials", "replica-db");
    let server = SecureServer::start(&identities(pg, false), &forwarding_env(&fake)).await;
    let mut client = server.client(Transport::Plain).await;

    // No identity, or a wrong one: nothing reaches Infisical.
    assert_refused(
        client
            .rotate_secrets(with_token(rotate(PG, pg), None))
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert_refused(
        client
            .rotate_secrets(with_token(
                rotate(PG, pg),
                Some("rtr_not_a_configured_token_000000000000"),
            ))
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    let mut basic = with_token(get(PG, pg), None);
    basic.metadata_mut().insert(
        "authorization",
        "Basic dXNlcjpwYXNz".parse().expect("ascii"),
    );
    assert_refused(
        client.get_secret_rotation(basic).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert!(
        fake.requests().is_empty(),
        "no upstream call for an unauthenticated caller"
    );

    // A reader reads but neither rotates nor sees credentials.
    assert_refused(
        client
            .rotate_secrets(with_token(rotate(PG, pg), Some(READER)))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_refused(
        client
            .get_generated_credentials(with_token(credentials(PG, pg), Some(READER)))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert!(
        fake.requests().is_empty(),
        "no upstream call for a denied caller"
    );
    client
        .get_secret_rotation(with_token(get(MYSQL, mysql), Some(READER)))
        .await
        .expect("reader reads any type");

    // The deployer rotates postgres rotations only.
    assert_refused(
        client
            .rotate_secrets(with_token(rotate(MYSQL, mysql), Some(DEPLOYER)))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_eq!(fake.rotate_calls(mysql), 0);
    client
        .rotate_secrets(with_token(rotate(PG, pg), Some(DEPLOYER)))
        .await
        .expect("deployer rotates postgres");
    assert_eq!(fake.rotate_calls(pg), 1);

    // Vault reads the credentials of its one rotation.
    client
        .get_generated_credentials(with_token(credentials(PG, pg), Some(VAULT)))
        .await
        .expect("vault reads its rotation's credentials");
    assert_refused(
        client
            .get_generated_credentials(with_token(credentials(PG, pg_app), Some(VAULT)))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_refused(
        client
            .get_secret_rotation(with_token(get(PG, pg), Some(VAULT)))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // Name patterns: by-name lookups and list results.
    client
        .get_secret_rotation(with_token(
            get_by_name(PG, "pg-app", &fake, pg_app),
            Some(NAMED),
        ))
        .await
        .expect("named reads pg-app by name");
    let seeded_name = fake.rotation_json(mysql)["name"]
        .as_str()
        .expect("name")
        .to_owned();
    assert_refused(
        client
            .get_secret_rotation(with_token(
                get_by_name(MYSQL, &seeded_name, &fake, mysql),
                Some(NAMED),
            ))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // Lists are filtered to what the caller may read; no read grant at all is a denial.
    let everything = client
        .list_secret_rotations(with_token(list(RotationType::Unspecified), Some(READER)))
        .await
        .expect("reader lists")
        .into_inner()
        .secret_rotations;
    assert!(everything.len() > 2);
    let postgres_only = client
        .list_secret_rotations(with_token(list(RotationType::Unspecified), Some(DEPLOYER)))
        .await
        .expect("deployer lists")
        .into_inner()
        .secret_rotations;
    assert!(postgres_only.len() >= 2);
    assert!(postgres_only.iter().all(|r| r.r#type() == PG));
    let by_name = client
        .list_secret_rotations(with_token(list(PG), Some(NAMED)))
        .await
        .expect("named lists")
        .into_inner()
        .secret_rotations;
    let mut names: Vec<_> = by_name.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["pg-app", "pg-orders-db"],
        "replica-db is filtered out"
    );
    let all_pg = client
        .list_secret_rotations(with_token(list(PG), Some(READER)))
        .await
        .expect("reader lists postgres")
        .into_inner()
        .secret_rotations;
    assert!(all_pg.iter().any(|r| r.name == "replica-db"));
    let before = fake.requests().len();
    assert_refused(
        client
            .list_secret_rotations(with_token(list(PG), Some(VAULT)))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_refused(
        client
            .list_secret_rotations(with_token(list(MYSQL), Some(DEPLOYER)))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_eq!(
        fake.requests().len(),
        before,
        "a denied list reaches no backend"
    );

    // The caller's request id comes back on a denial.
    let mut request = with_token(rotate(MYSQL, mysql), Some(DEPLOYER));
    request
        .metadata_mut()
        .insert("x-request-id", "deny-me-42".parse().expect("ascii"));
    let status = client.rotate_secrets(request).await.expect_err("denied");
    assert_eq!(reason_and_request_id(&status).1, "deny-me-42");

    server.shutdown().await;
}

async fn health(channel: Channel, token: Option<&str>) -> Result<i32, tonic::Status> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let request = with_token(
        HealthCheckRequest {
            service: String::new(),
        },
        token,
    );
    HealthClient::new(channel)
        .check(request)
        .await
        .map(|r| r.into_inner().status)
}

async fn list_services(
    channel: Channel,
    token: Option<&str>,
) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let request = with_token(tokio_stream_once(request), token);
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(request)
        .await?
        .into_inner();
    let answer = stream.message().await?.expect("one answer");
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

fn tokio_stream_once<T: Send + 'static>(
    item: T,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::iter([item])
}

#[tokio::test]
async fn health_and_reflection_are_open_by_default_and_closable() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let env = forwarding_env(&fake);

    let open = SecureServer::start(&identities(pg, false), &env).await;
    let channel = open.channel(Transport::Plain).await;
    assert_eq!(
        health(channel.clone(), None).await.expect("open health"),
        ServingStatus::Serving as i32
    );
    let services = list_services(channel, None).await.expect("open reflection");
    assert!(
        services
            .iter()
            .any(|s| s == "rotator.v1.SecretRotationService"),
        "{services:?}"
    );
    open.shutdown().await;

    let toml = format!(
        "[auth]\nopen_health = false\nopen_reflection = false\n{}",
        identities(pg, false)
    );
    let closed = SecureServer::start(&toml, &env).await;
    let channel = closed.channel(Transport::Plain).await;
    let status = health(channel.clone(), None)
        .await
        .expect_err("closed health");
    assert_eq!(status.code(), Code::Unauthenticated);
    reason_and_request_id(&status);
    assert_eq!(
        health(channel.clone(), Some(VAULT))
            .await
            .expect("any identity"),
        ServingStatus::Serving as i32
    );
    let status = list_services(channel.clone(), None)
        .await
        .expect_err("closed reflection");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(list_services(channel, Some(READER)).await.is_ok());
    closed.shutdown().await;
}

#[tokio::test]
async fn server_tls_carries_tokens_and_refuses_plaintext() {
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let pki = Pki::new("tls");
    let toml = format!("{}\n{}", pki.tls_toml(false, false), identities(pg, false));
    let server = SecureServer::start(&toml, &forwarding_env(&fake)).await;
    let mut client = server
        .client(Transport::Tls {
            ca_pem: &pki.ca_pem,
        })
        .await;
    client
        .rotate_secrets(with_token(rotate(PG, pg), Some(DEPLOYER)))
        .await
        .expect("rotate over TLS with a token");
    assert_refused(
        client
            .rotate_secrets(with_token(rotate(PG, pg), None))
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );

    // Plaintext HTTP/2 to a TLS port never becomes a call.
    let plain = server.try_channel(Transport::Plain).await;
    if let Ok(channel) = plain {
        let result = SecretRotationServiceClient::new(channel)
            .rotate_secrets(with_token(rotate(PG, pg), Some(DEPLOYER)))
            .await;
        assert!(result.is_err(), "plaintext reached a TLS server");
    }
    // A client that does not trust the server's CA refuses it.
    let stranger = Pki::new("stranger");
    let untrusted = server
        .try_channel(Transport::Tls {
            ca_pem: &stranger.ca_pem,
        })
        .await;
    assert!(
        untrusted.is_err(),
        "an unknown server certificate was trusted"
    );
    assert_eq!(fake.rotate_calls(pg), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_names_callers_by_san_uri_or_subject_cn() {
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let pki = Pki::new("mtls");
    let toml = format!("{}\n{}", pki.tls_toml(true, true), identities(pg, true));
    let server = SecureServer::start(&toml, &forwarding_env(&fake)).await;
    let ca = pki.ca_pem.as_str();

    let svc = pki.client("svc", "ignored-cn", &[SPIFFE, "svc.rotator.test"]);
    let mut client = server
        .client(Transport::Mutual {
            ca_pem: ca,
            client: &svc,
        })
        .await;
    client
        .rotate_secrets(with_token(
            rotate(MYSQL, fake.rotation_id("mysql-credentials")),
            None,
        ))
        .await
        .expect("svc rotates by its SAN URI");
    // The certificate and a token of another identity contradict each other.
    assert_refused(
        client
            .get_secret_rotation(with_token(get(PG, pg), Some(READER)))
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );

    let cn_only = pki.client("cn", "cn-only-client", &[]);
    let mut client = server
        .client(Transport::Mutual {
            ca_pem: ca,
            client: &cn_only,
        })
        .await;
    client
        .get_secret_rotation(with_token(get(PG, pg), None))
        .await
        .expect("cn-only reads");
    assert_refused(
        client
            .rotate_secrets(with_token(rotate(PG, pg), None))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    let nobody = pki.client("nobody", "nobody", &["spiffe://rotator.test/ns/other/sa/x"]);
    let mut client = server
        .client(Transport::Mutual {
            ca_pem: ca,
            client: &nobody,
        })
        .await;
    assert_refused(
        client
            .get_secret_rotation(with_token(get(PG, pg), None))
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    // ...but a valid token still identifies a caller whose certificate names nobody.
    client
        .get_secret_rotation(with_token(get(PG, pg), Some(READER)))
        .await
        .expect("token beside an anonymous certificate");

    // Optional client auth: no certificate, a token.
    let mut client = server.client(Transport::Tls { ca_pem: ca }).await;
    client
        .rotate_secrets(with_token(rotate(PG, pg), Some(DEPLOYER)))
        .await
        .expect("token without a certificate");

    // A certificate from a CA the server does not trust never gets a call through.
    let rogue_pki = Pki::new("rogue");
    let rogue = rogue_pki.client("rogue", "svc", &[SPIFFE]);
    match server
        .try_channel(Transport::Mutual {
            ca_pem: ca,
            client: &rogue,
        })
        .await
    {
        Err(_) => {}
        Ok(channel) => {
            let result = SecretRotationServiceClient::new(channel)
                .rotate_secrets(with_token(rotate(PG, pg), None))
                .await;
            assert!(result.is_err(), "a rogue certificate was accepted");
        }
    }
    assert_eq!(
        fake.rotate_calls(pg),
        1,
        "only the deployer's rotate reached Infisical"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn required_client_certificates_stop_certificateless_clients_at_the_handshake() {
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let pki = Pki::new("required");
    let toml = format!("{}\n{}", pki.tls_toml(true, false), identities(pg, true));
    let server = SecureServer::start(&toml, &forwarding_env(&fake)).await;
    match server
        .try_channel(Transport::Tls {
            ca_pem: &pki.ca_pem,
        })
        .await
    {
        Err(_) => {}
        Ok(channel) => {
            let status = SecretRotationServiceClient::new(channel)
                .rotate_secrets(with_token(rotate(PG, pg), Some(DEPLOYER)))
                .await
                .expect_err("no certificate, no call");
            assert_ne!(status.code(), Code::PermissionDenied);
        }
    }
    let svc = pki.client("svc", "svc", &[SPIFFE]);
    server
        .client(Transport::Mutual {
            ca_pem: &pki.ca_pem,
            client: &svc,
        })
        .await
        .rotate_secrets(with_token(rotate(PG, pg), None))
        .await
        .expect("with a certificate");
    assert_eq!(fake.rotate_calls(pg), 1);
    server.shutdown().await;
}

async fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"))
        .args(args)
        .env_remove("ROTATOR_TOKEN")
        .env_remove("ROTATOR_SERVER")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run the rotator binary")
}

#[tokio::test]
async fn the_cli_speaks_tls_mutual_tls_and_tokens() {
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let pki = Pki::new("cli");
    let toml = format!("{}\n{}", pki.tls_toml(true, true), identities(pg, true));
    let server = SecureServer::start(&toml, &forwarding_env(&fake)).await;
    let url = server.url(true);
    let ca = pki.ca_file.display().to_string();
    let id = pg.to_string();
    let svc = pki.client("svc", "svc", &[SPIFFE]);
    let (cert, key) = (
        svc.cert_file.display().to_string(),
        svc.key_file.display().to_string(),
    );

    let out = cli(
        &[
            "rotate",
            "postgres-credentials",
            &id,
            "--server",
            &url,
            "--ca-file",
            &ca,
            "--cert-file",
            &cert,
            "--key-file",
            &key,
        ],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "mTLS rotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let token_file = pki.dir.path().join("token");
    std::fs::write(&token_file, format!("{DEPLOYER}\n")).expect("write token file");
    let token_file = token_file.display().to_string();
    let out = cli(
        &[
            "rotate",
            "postgres-credentials",
            &id,
            "--server",
            &url,
            "--ca-file",
            &ca,
            "--token-file",
            &token_file,
        ],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "token-file rotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = cli(
        &[
            "credentials",
            "postgres-credentials",
            &id,
            "--server",
            &url,
            "--ca-file",
            &ca,
        ],
        &[("ROTATOR_TOKEN", READER)],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");
    assert!(!stderr.contains(READER), "the CLI printed the token");

    let out = cli(
        &[
            "get",
            "postgres-credentials",
            &id,
            "--server",
            &url,
            "--ca-file",
            &ca,
        ],
        &[("ROTATOR_TOKEN", "rtr_wrong_token_000000000000000000000000")],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UNAUTHENTICATED"), "{stderr}");
    assert!(
        !stderr.contains("rtr_wrong_token"),
        "the CLI printed the token"
    );

    let out = cli(
        &[
            "get",
            "postgres-credentials",
            &id,
            "--server",
            &server.url(false),
            "--ca-file",
            &ca,
        ],
        &[],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "--ca-file with http:// is a usage error"
    );

    assert_eq!(fake.rotate_calls(pg), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn the_embedded_defaults_serve_open_on_loopback_and_say_so_loudly() {
    // current_thread runtime: the server task runs on this thread and sees this subscriber.
    let capture = log_capture::Capture::default();
    let _guard = tracing::subscriber::set_default(capture.subscriber());
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let server = SecureServer::start("", &forwarding_env(&fake)).await;
    server
        .client(Transport::Plain)
        .await
        .rotate_secrets(with_token(rotate(PG, pg), None))
        .await
        .expect("open mode asks nobody");
    server.shutdown().await;
    let logs = capture.text();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("AUTHENTICATION IS OFF")),
        "{logs}"
    );
}
