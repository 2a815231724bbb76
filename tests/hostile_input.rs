//! Hostile input against the real server over TCP, table-driven: every field empty, too long or
//! of the wrong charset, unknown enum numbers, bad and huge metadata, invalid UTF-8 and binary
//! metadata, malformed, deeply nested and oversized protobuf (sent as raw bytes), bad gRPC
//! framing, and a flood beyond the concurrency bound. Each gets a clear status carrying a
//! request id; nothing reaches Infisical; the upstream rotation is unchanged; the server still
//! answers its health check with SERVING.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use rotator::proto::get_secret_rotation_request::Lookup;
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    GetGeneratedCredentialsRequest, GetSecretRotationRequest, ListSecretRotationsRequest,
    RotateSecretsRequest, RotationName, RotationType,
};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical, PROJECT_ID};
use rotator_testkit::secure::{
    SecureServer, Transport, reason_and_request_id, token_hash, with_token,
};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use tower::{Service, ServiceExt};

const ADMIN: &str = "rtr_hostile_admin_token_0123456789abcdef0123";
const PG: i32 = RotationType::PostgresCredentials as i32;
const ROTATE: &str = "/rotator.v1.SecretRotationService/RotateSecrets";
const GET: &str = "/rotator.v1.SecretRotationService/GetSecretRotation";
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const MAX_CALLS: usize = 4;

async fn start(fake: &FakeInfisical) -> SecureServer {
    let env = HashMap::from([
        ("ROTATOR_INFISICAL_URL".to_owned(), fake.base_url()),
        (
            "ROTATOR_INFISICAL_CLIENT_ID".to_owned(),
            CLIENT_ID.to_owned(),
        ),
        (
            "ROTATOR_INFISICAL_CLIENT_SECRET".to_owned(),
            CLIENT_SECRET.to_owned(),
        ),
    ]);
    let toml = format!(
        r#"
        max_concurrent_calls = {MAX_CALLS}
        max_message_bytes = {MAX_MESSAGE_BYTES}
        [[auth.identities]]
        name = "admin"
        token_sha256 = "{}"
        [[auth.identities.permissions]]
        actions = ["rotate", "read", "read-credentials"]
        types = ["*"]
        rotations = ["*"]
        "#,
        token_hash(ADMIN)
    );
    SecureServer::start(&toml, &env).await
}

async fn assert_serving(channel: Channel) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "rotator.v1.SecretRotationService".into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}

// === typed requests: every field, every way wrong ===

fn rotate(t: i32, id: &str) -> tonic::Request<RotateSecretsRequest> {
    with_token(
        RotateSecretsRequest {
            r#type: t,
            rotation_id: id.to_owned(),
        },
        Some(ADMIN),
    )
}

fn credentials(t: i32, id: &str) -> tonic::Request<GetGeneratedCredentialsRequest> {
    with_token(
        GetGeneratedCredentialsRequest {
            r#type: t,
            rotation_id: id.to_owned(),
        },
        Some(ADMIN),
    )
}

fn by_name(
    name: &str,
    project: &str,
    env: &str,
    path: &str,
) -> tonic::Request<GetSecretRotationRequest> {
    with_token(
        GetSecretRotationRequest {
            r#type: PG,
            lookup: Some(Lookup::ByName(RotationName {
                name: name.to_owned(),
                project_id: project.to_owned(),
                environment: env.to_owned(),
                secret_path: path.to_owned(),
            })),
        },
        Some(ADMIN),
    )
}

fn list(t: i32, project: &str) -> tonic::Request<ListSecretRotationsRequest> {
    with_token(
        ListSecretRotationsRequest {
            r#type: t,
            project_id: project.to_owned(),
        },
        Some(ADMIN),
    )
}

type Call = Result<(), Status>;

async fn typed_cases(
    client: &mut SecretRotationServiceClient<Channel>,
    id: &str,
) -> Vec<(&'static str, Call, Code, &'static str)> {
    use Code::{InvalidArgument as Invalid, Unauthenticated};
    let long = "x".repeat(10_000);
    let uuid_upper_fullwidth = "３f0c5a0e-8d4b-4d1e-9a43-2b8f4c1d7e60";
    let mut cases: Vec<(&'static str, Call, Code, &'static str)> = Vec::new();
    macro_rules! case {
        ($name:expr, $call:expr, $code:expr, $reason:expr) => {
            cases.push(($name, $call.await.map(|_| ()), $code, $reason));
        };
    }
    case!(
        "rotate: type unspecified",
        client.rotate_secrets(rotate(0, id)),
        Invalid,
        "INVALID_ROTATION_TYPE"
    );
    case!(
        "rotate: type unknown",
        client.rotate_secrets(rotate(999, id)),
        Invalid,
        "INVALID_ROTATION_TYPE"
    );
    case!(
        "rotate: type negative",
        client.rotate_secrets(rotate(-7, id)),
        Invalid,
        "INVALID_ROTATION_TYPE"
    );
    case!(
        "rotate: type i32::MAX",
        client.rotate_secrets(rotate(i32::MAX, id)),
        Invalid,
        "INVALID_ROTATION_TYPE"
    );
    case!(
        "rotate: id empty",
        client.rotate_secrets(rotate(PG, "")),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "rotate: id 10k",
        client.rotate_secrets(rotate(PG, &long)),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "rotate: id path traversal",
        client.rotate_secrets(rotate(PG, "../../../../etc/passwd")),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "rotate: id 36 chars of junk",
        client.rotate_secrets(rotate(PG, "../../../../../../../../../../../..")),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "rotate: id fullwidth digit",
        client.rotate_secrets(rotate(PG, uuid_upper_fullwidth)),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "rotate: id with NUL",
        client.rotate_secrets(rotate(PG, "3f0c5a0e-8d4b-4d1e-9a43-2b8f4c1d7e6\0")),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "rotate: id braced",
        client.rotate_secrets(rotate(PG, &format!("{{{id}}}"))),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "rotate: id urn",
        client.rotate_secrets(rotate(PG, &format!("urn:uuid:{id}"))),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "rotate: id no hyphens",
        client.rotate_secrets(rotate(PG, &id.replace('-', ""))),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "credentials: type unknown",
        client.get_generated_credentials(credentials(15, id)),
        Invalid,
        "INVALID_ROTATION_TYPE"
    );
    case!(
        "credentials: id empty",
        client.get_generated_credentials(credentials(PG, "")),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "credentials: id unicode",
        client.get_generated_credentials(credentials(PG, "ĳĳĳĳĳĳĳĳ-ĳĳĳĳ-ĳĳĳĳ-ĳĳĳĳ-ĳĳĳĳĳĳĳĳĳĳĳĳ")),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "get: no lookup",
        client.get_secret_rotation(with_token(
            GetSecretRotationRequest {
                r#type: PG,
                lookup: None
            },
            Some(ADMIN)
        )),
        Invalid,
        "INVALID_ROTATION_ID"
    );
    case!(
        "get: name empty",
        client.get_secret_rotation(by_name("", PROJECT_ID, "prod", "/")),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "get: name spaces",
        client.get_secret_rotation(by_name("pg app", PROJECT_ID, "prod", "/")),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "get: name uppercase",
        client.get_secret_rotation(by_name("PG-APP", PROJECT_ID, "prod", "/")),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "get: name traversal",
        client.get_secret_rotation(by_name("../x", PROJECT_ID, "prod", "/")),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "get: name unicode",
        client.get_secret_rotation(by_name("pg-äpp", PROJECT_ID, "prod", "/")),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "get: name 10k",
        client.get_secret_rotation(by_name(&long, PROJECT_ID, "prod", "/")),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "get: project empty",
        client.get_secret_rotation(by_name("pg-app", " ", "prod", "/")),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "get: environment control",
        client.get_secret_rotation(by_name("pg-app", PROJECT_ID, "pr\u{7}od", "/")),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "get: path NUL",
        client.get_secret_rotation(by_name("pg-app", PROJECT_ID, "prod", "/a\0b")),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "get: path 10k",
        client.get_secret_rotation(by_name("pg-app", PROJECT_ID, "prod", &long)),
        Invalid,
        "INVALID_ROTATION_NAME"
    );
    case!(
        "list: project empty",
        client.list_secret_rotations(list(0, "")),
        Invalid,
        "INVALID_PROJECT_ID"
    );
    case!(
        "list: project 10k",
        client.list_secret_rotations(list(0, &long)),
        Invalid,
        "INVALID_PROJECT_ID"
    );
    case!(
        "list: project control",
        client.list_secret_rotations(list(0, "p\u{1b}[2J")),
        Invalid,
        "INVALID_PROJECT_ID"
    );
    case!(
        "list: type unknown",
        client.list_secret_rotations(list(77, PROJECT_ID)),
        Invalid,
        "INVALID_ROTATION_TYPE"
    );

    // Hostile credentials and request ids.
    let mut huge_token = rotate(PG, id);
    huge_token.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", "t".repeat(5000))
            .parse()
            .expect("ascii"),
    );
    case!(
        "auth: 5000-char token",
        client.rotate_secrets(huge_token),
        Unauthenticated,
        "UNAUTHENTICATED"
    );
    let mut two_tokens = rotate(PG, id);
    two_tokens.metadata_mut().append(
        "authorization",
        format!("Bearer {ADMIN}").parse().expect("ascii"),
    );
    case!(
        "auth: two authorization headers",
        client.rotate_secrets(two_tokens),
        Unauthenticated,
        "UNAUTHENTICATED"
    );
    for (name, value) in [
        ("request id: spaces", "has spaces".to_owned()),
        ("request id: 200 chars", "r".repeat(200)),
        ("request id: quotes", "\"';--".to_owned()),
    ] {
        let mut request = rotate(PG, id);
        request
            .metadata_mut()
            .insert("x-request-id", value.parse().expect("ascii"));
        case!(
            name,
            client.rotate_secrets(request),
            Invalid,
            "INVALID_REQUEST_ID"
        );
    }
    let mut big = rotate(PG, id);
    for i in 0..10 {
        let name: tonic::metadata::MetadataKey<_> = format!("x-padding-{i}").parse().expect("key");
        big.metadata_mut()
            .insert(name, "p".repeat(1000).parse().expect("ascii"));
    }
    case!(
        "metadata: 10 KiB",
        client.rotate_secrets(big),
        Invalid,
        "INVALID_METADATA"
    );
    cases
}

// === raw HTTP/2 requests: bytes no typed client would send ===

/// What came back from a raw call.
#[derive(Debug)]
struct RawAnswer {
    status: Option<Status>,
    request_id_header: Option<String>,
}

fn frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

async fn raw_call(
    channel: &Channel,
    path: &str,
    headers: &[(&str, HeaderValue)],
    body: Bytes,
) -> Result<RawAnswer, String> {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if !headers.iter().any(|(name, _)| *name == "authorization") {
        builder = builder.header("authorization", format!("Bearer {ADMIN}"));
    }
    for (name, value) in headers {
        builder = builder.header(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.clone(),
        );
    }
    let request = builder
        .body(tonic::body::Body::new(Full::new(body)))
        .expect("request");
    let mut channel = channel.clone();
    let response = channel
        .ready()
        .await
        .map_err(|e| format!("not ready: {e}"))?
        .call(request)
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| format!("body: {e}"))?;
    let status = Status::from_header_map(&parts.headers)
        .or_else(|| collected.trailers().and_then(Status::from_header_map));
    Ok(RawAnswer {
        status,
        request_id_header: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    })
}

/// A protobuf field: tag, then payload.
fn field(number: u32, wire_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = varint(u64::from(number << 3 | u32::from(wire_type)));
    out.extend_from_slice(payload);
    out
}

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn length_delimited(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = field(number, 2, &varint(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

fn raw_cases(id: &str) -> Vec<RawCase> {
    let valid = {
        let mut m = field(1, 0, &varint(PG as u64));
        m.extend(length_delimited(2, id.as_bytes()));
        m
    };
    // tonic reads the first message of a unary call; this one is invalid, so nothing rotates.
    let unspecified_type = length_delimited(2, id.as_bytes());
    let nested_groups: Vec<u8> = std::iter::repeat_n(field(15, 3, &[]), 200)
        .flatten()
        .chain(std::iter::repeat_n(field(15, 4, &[]), 200).flatten())
        .collect();
    let nested_lookup = {
        // by_name (field 3) holding a by_name-shaped unknown field, 150 levels deep.
        let mut inner = length_delimited(1, b"pg-app");
        for _ in 0..150 {
            inner = length_delimited(9, &inner);
        }
        let mut m = field(1, 0, &varint(PG as u64));
        m.extend(length_delimited(3, &inner));
        m
    };
    let oversized = {
        let mut m = field(1, 0, &varint(PG as u64));
        m.extend(length_delimited(2, &vec![b'a'; MAX_MESSAGE_BYTES + 1]));
        m
    };
    let bad_utf8 = {
        let mut m = field(1, 0, &varint(PG as u64));
        m.extend(length_delimited(2, b"\xff\xfe\xfd"));
        m
    };
    let truncated_length = {
        let mut m = field(2, 2, &varint(1000));
        m.extend_from_slice(b"short");
        m
    };
    let mut compressed_flag = frame(&valid).to_vec();
    compressed_flag[0] = 1;
    let mut lying_frame_length = frame(&valid).to_vec();
    lying_frame_length[1..5].copy_from_slice(&100_000u32.to_be_bytes());
    let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).expect("header value");
    let case = |name, path, headers, body, code, reason| RawCase {
        name,
        path,
        headers,
        body,
        code,
        reason,
    };
    use Code::{InvalidArgument as Invalid, ResourceExhausted, Unauthenticated, Unimplemented};
    vec![
        case(
            "method: unknown",
            "/rotator.v1.SecretRotationService/DeleteEverything",
            vec![],
            frame(&valid),
            Unimplemented,
            "UNSUPPORTED_REQUEST",
        ),
        case(
            "service: unknown",
            "/evil.v1.Admin/Shell",
            vec![],
            frame(&valid),
            Unimplemented,
            "UNSUPPORTED_REQUEST",
        ),
        case(
            "body: truncated varint",
            ROTATE,
            vec![],
            frame(&[0x08]),
            Invalid,
            "MALFORMED_REQUEST",
        ),
        case(
            "body: wire type 7",
            ROTATE,
            vec![],
            frame(&[0x0f, 0x01]),
            Invalid,
            "MALFORMED_REQUEST",
        ),
        case(
            "body: field number 0",
            ROTATE,
            vec![],
            frame(&[0x00, 0x01]),
            Invalid,
            "MALFORMED_REQUEST",
        ),
        case(
            "body: length past the end",
            ROTATE,
            vec![],
            frame(&truncated_length),
            Invalid,
            "MALFORMED_REQUEST",
        ),
        case(
            "body: invalid UTF-8 string",
            ROTATE,
            vec![],
            frame(&bad_utf8),
            Invalid,
            "MALFORMED_REQUEST",
        ),
        case(
            "body: 200 nested groups",
            ROTATE,
            vec![],
            frame(&nested_groups),
            Invalid,
            "MALFORMED_REQUEST",
        ),
        case(
            "body: 150 nested unknown messages",
            GET,
            vec![],
            frame(&nested_lookup),
            Invalid,
            "INVALID_ROTATION_NAME",
        ),
        case(
            "body: oversized message",
            ROTATE,
            vec![],
            frame(&oversized),
            ResourceExhausted,
            "MESSAGE_TOO_LARGE",
        ),
        case(
            "body: compressed flag, no encoding",
            ROTATE,
            vec![],
            Bytes::from(compressed_flag),
            Invalid,
            "MALFORMED_REQUEST",
        ),
        case(
            "body: frame longer than the limit",
            ROTATE,
            vec![],
            Bytes::from(lying_frame_length),
            ResourceExhausted,
            "MESSAGE_TOO_LARGE",
        ),
        case(
            "body: half a frame header",
            ROTATE,
            vec![],
            Bytes::from_static(&[0, 0, 0]),
            Invalid,
            "MALFORMED_REQUEST",
        ),
        case(
            "body: empty",
            ROTATE,
            vec![],
            Bytes::new(),
            Invalid,
            "MALFORMED_REQUEST",
        ),
        case(
            "body: two messages for a unary call",
            ROTATE,
            vec![],
            [frame(&unspecified_type), frame(&valid)].concat().into(),
            Invalid,
            "INVALID_ROTATION_TYPE",
        ),
        case(
            "encoding: unknown",
            ROTATE,
            vec![("grpc-encoding", value(b"snappy"))],
            frame(&valid),
            Unimplemented,
            "UNSUPPORTED_REQUEST",
        ),
        case(
            "request id: invalid UTF-8",
            ROTATE,
            vec![("x-request-id", value(b"\xc3\x28\xff"))],
            frame(&valid),
            Invalid,
            "INVALID_REQUEST_ID",
        ),
        case(
            "request id: Latin-1",
            ROTATE,
            vec![("x-request-id", value(b"caf\xe9"))],
            frame(&valid),
            Invalid,
            "INVALID_REQUEST_ID",
        ),
        case(
            "request id: UTF-8",
            ROTATE,
            vec![("x-request-id", value("café".as_bytes()))],
            frame(&valid),
            Invalid,
            "INVALID_REQUEST_ID",
        ),
        case(
            "request id: binary metadata",
            ROTATE,
            vec![("x-request-id-bin", value(b"3q2+7w=="))],
            frame(&unspecified_type),
            Invalid,
            "INVALID_ROTATION_TYPE",
        ),
        case(
            "metadata: binary junk",
            ROTATE,
            vec![("x-junk-bin", value(b"!!not base64!!"))],
            frame(&unspecified_type),
            Invalid,
            "INVALID_ROTATION_TYPE",
        ),
        case(
            "authorization: invalid UTF-8",
            ROTATE,
            vec![("authorization", value(b"Bearer \xff\xfe"))],
            frame(&valid),
            Unauthenticated,
            "UNAUTHENTICATED",
        ),
        case(
            "authorization: binary",
            ROTATE,
            vec![
                ("authorization", value(b"")),
                ("authorization-bin", value(b"3q2+7w==")),
            ],
            frame(&valid),
            Unauthenticated,
            "UNAUTHENTICATED",
        ),
        case(
            "timeout: garbage",
            ROTATE,
            vec![
                ("grpc-timeout", value(b"soon")),
                ("x-request-id", value(b"bad id")),
            ],
            frame(&valid),
            Invalid,
            "INVALID_REQUEST_ID",
        ),
    ]
}

/// One raw request and the status it must get.
struct RawCase {
    name: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Bytes,
    code: Code,
    reason: &'static str,
}

#[tokio::test]
async fn hostile_requests_get_clear_statuses_and_change_nothing() {
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let before = fake.rotation_json(pg);
    let id = pg.to_string();
    let server = start(&fake).await;
    let channel = server.channel(Transport::Plain).await;
    let mut client = SecretRotationServiceClient::new(channel.clone());

    let mut failures = Vec::new();
    for (name, result, code, reason) in typed_cases(&mut client, &id).await {
        match result {
            Ok(()) => failures.push(format!("{name}: accepted")),
            Err(status) => {
                let (got, request_id) = reason_and_request_id(&status);
                if status.code() != code || got != reason || request_id.is_empty() {
                    failures.push(format!(
                        "{name}: {:?} {got} (want {code:?} {reason})",
                        status.code()
                    ));
                }
            }
        }
    }

    for case in raw_cases(&id) {
        let name = case.name;
        match raw_call(&channel, case.path, &case.headers, case.body).await {
            Err(transport) => failures.push(format!("{name}: no gRPC status ({transport})")),
            Ok(RawAnswer { status: None, .. }) => failures.push(format!("{name}: no grpc-status")),
            Ok(RawAnswer {
                status: Some(status),
                request_id_header,
            }) => {
                let info = status.get_details_error_info();
                let reason = info.as_ref().map(|i| i.reason.as_str());
                let id_in_info = info.as_ref().and_then(|i| i.metadata.get("request_id"));
                let ids_agree =
                    request_id_header.is_some() && id_in_info == request_id_header.as_ref();
                if status.code() != case.code || reason != Some(case.reason) || !ids_agree {
                    failures.push(format!(
                        "{name}: {:?} {reason:?} {:?} header={request_id_header:?} (want {:?} {})",
                        status.code(),
                        status.message(),
                        case.code,
                        case.reason
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "unclear answers:\n{}",
        failures.join("\n")
    );

    assert!(fake.requests().is_empty(), "nothing reached Infisical");
    assert_eq!(fake.rotation_json(pg), before, "the rotation is unchanged");
    assert_serving(server.channel(Transport::Plain).await).await;
    // The same connection still works for a good call.
    client
        .get_secret_rotation(with_token(
            GetSecretRotationRequest {
                r#type: PG,
                lookup: Some(Lookup::RotationId(id.clone())),
            },
            Some(ADMIN),
        ))
        .await
        .expect("a good call after the hostile ones");
    server.shutdown().await;
}

#[tokio::test]
async fn metadata_beyond_the_http2_limit_is_refused_without_harm() {
    let fake = FakeInfisical::start().await;
    let pg = fake.rotation_id("postgres-credentials");
    let server = start(&fake).await;
    let channel = server.channel(Transport::Plain).await;
    let mut request = rotate(PG, &pg.to_string());
    request
        .metadata_mut()
        .insert("x-padding", "p".repeat(64 * 1024).parse().expect("ascii"));
    let result = SecretRotationServiceClient::new(channel)
        .rotate_secrets(request)
        .await;
    let status = result.expect_err("64 KiB of metadata is refused");
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(fake.rotate_calls(pg), 0);
    assert_serving(server.channel(Transport::Plain).await).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_flood_beyond_the_concurrency_bound_is_refused_never_queued() {
    const FLOOD: usize = 40;
    let fake = FakeInfisical::start().await;
    fake.set_rotate_latency(Duration::from_millis(300));
    let ids: Vec<String> = (0..FLOOD)
        .map(|i| {
            fake.add_rotation("postgres-credentials", &format!("flood-{i}"))
                .to_string()
        })
        .collect();
    let server = start(&fake).await;
    let channel = server.channel(Transport::Plain).await;
    let calls = ids.iter().map(|id| {
        let mut client = SecretRotationServiceClient::new(channel.clone());
        let mut request = rotate(PG, id);
        request.set_timeout(Duration::from_secs(30));
        async move { client.rotate_secrets(request).await }
    });
    let answers = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(calls))
        .await
        .expect("every call of the flood is answered, none hangs");
    let mut served = 0;
    let mut refused = 0;
    for answer in answers {
        match answer {
            Ok(_) => served += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                let (reason, _) = reason_and_request_id(&status);
                assert_eq!(reason, "OVERLOADED");
                assert!(
                    status.get_details_retry_info().is_some(),
                    "RetryInfo says when to retry"
                );
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "the bound of {MAX_CALLS} refused some of {FLOOD}"
    );
    assert!(served >= 1 && served <= FLOOD - refused);
    assert_eq!(
        fake.total_rotate_calls(),
        served,
        "refused calls reached no backend"
    );
    assert_serving(server.channel(Transport::Plain).await).await;
    server.shutdown().await;
}
