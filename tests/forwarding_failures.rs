//! Every upstream failure maps to the right gRPC status with the rich error details, and no
//! RotateSecrets call ever sends rotate-secrets twice where that could rotate twice.

use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{GetGeneratedCredentialsRequest, RotateSecretsRequest, RotationType};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical, Route};
use rotator_testkit::rotator_server::{TestServer, forwarding_env};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

const PG: RotationType = RotationType::PostgresCredentials;

struct Harness {
    fake: FakeInfisical,
    server: TestServer,
    client: SecretRotationServiceClient<Channel>,
    id: Uuid,
}

async fn harness() -> Harness {
    harness_with(&[]).await
}

async fn harness_with(extra_env: &[(&str, &str)]) -> Harness {
    let fake = FakeInfisical::start().await;
    let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let server = TestServer::start(env).await;
    let client = server.client().await;
    let id = fake.rotation_id("postgres-credentials");
    Harness {
        fake,
        server,
        client,
        id,
    }
}

fn rotate(id: impl ToString) -> RotateSecretsRequest {
    RotateSecretsRequest {
        r#type: PG as i32,
        rotation_id: id.to_string(),
    }
}

/// Asserts the status's code and reason, and that our request id is in every place it belongs.
fn assert_status(status: &tonic::Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo attached");
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "rotator.v1");
    let request_id = status
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id header");
    assert_eq!(
        info.metadata.get("request_id").map(String::as_str),
        Some(request_id)
    );
    let request_info = status
        .get_details_request_info()
        .expect("RequestInfo attached");
    assert_eq!(request_info.request_id, request_id);
    assert!(
        status.message().contains(request_id),
        "the message names the request id"
    );
}

fn upstream_req_id(status: &tonic::Status) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|i| i.metadata.get("upstream_req_id").cloned())
}

fn error_body(status: u16, error: &str, message: serde_json::Value) -> serde_json::Value {
    json!({"reqId": "req-AAAAAAAAAAAAAA", "statusCode": status, "message": message, "error": error})
}

#[tokio::test]
async fn bad_input_is_rejected_before_anything_is_sent_upstream() {
    let mut h = harness().await;
    let cases = [
        (
            RotateSecretsRequest {
                r#type: 0,
                rotation_id: h.id.to_string(),
            },
            "INVALID_ROTATION_TYPE",
        ),
        (
            RotateSecretsRequest {
                r#type: 77,
                rotation_id: h.id.to_string(),
            },
            "INVALID_ROTATION_TYPE",
        ),
        (
            RotateSecretsRequest {
                r#type: PG as i32,
                rotation_id: String::new(),
            },
            "INVALID_ROTATION_ID",
        ),
        (
            RotateSecretsRequest {
                r#type: PG as i32,
                rotation_id: "not-a-uuid".into(),
            },
            "INVALID_ROTATION_ID",
        ),
        (
            RotateSecretsRequest {
                r#type: PG as i32,
                rotation_id: "x".repeat(5000),
            },
            "INVALID_ROTATION_ID",
        ),
    ];
    for (request, reason) in cases {
        let status = h
            .client
            .rotate_secrets(request)
            .await
            .expect_err("rejected");
        assert_status(&status, Code::InvalidArgument, reason);
    }
    let mut request = tonic::Request::new(rotate(h.id));
    request.metadata_mut().insert(
        "x-request-id",
        "spaces are not allowed".parse().expect("ascii"),
    );
    let status = h
        .client
        .rotate_secrets(request)
        .await
        .expect_err("bad request id");
    assert_status(&status, Code::InvalidArgument, "INVALID_REQUEST_ID");
    let mut request = tonic::Request::new(rotate(h.id));
    request
        .metadata_mut()
        .insert("x-padding", "p".repeat(9000).parse().expect("ascii"));
    let status = h
        .client
        .rotate_secrets(request)
        .await
        .expect_err("oversized metadata");
    assert_status(&status, Code::InvalidArgument, "INVALID_METADATA");
    assert_eq!(
        h.fake.total_rotate_calls(),
        0,
        "nothing reached the upstream"
    );
    assert_eq!(h.fake.login_calls(), 0, "not even a login");
    h.server.shutdown().await;
}

#[tokio::test]
async fn upstream_errors_map_to_grpc_codes_with_the_upstream_req_id() {
    let mut h = harness().await;
    // 403 PermissionDenied with details.
    h.fake.deny_permission(h.id, "rotate-secrets");
    let status = h
        .client
        .rotate_secrets(rotate(h.id))
        .await
        .expect_err("denied");
    assert_status(
        &status,
        Code::PermissionDenied,
        "UPSTREAM_PERMISSION_DENIED",
    );
    assert!(
        status.message().contains("rotate-secrets"),
        "{}",
        status.message()
    );
    assert!(upstream_req_id(&status).is_some_and(|r| r.starts_with("req-")));
    h.fake.allow_permission(h.id, "rotate-secrets");

    // 404 unknown rotation.
    let status = h
        .client
        .rotate_secrets(rotate(Uuid::new_v4()))
        .await
        .expect_err("unknown");
    assert_status(&status, Code::NotFound, "ROTATION_NOT_FOUND");

    // 400 already in progress: ABORTED with a RetryInfo.
    h.fake.set_lock_held(h.id, true);
    let status = h
        .client
        .rotate_secrets(rotate(h.id))
        .await
        .expect_err("in progress");
    assert_status(&status, Code::Aborted, "UPSTREAM_ROTATION_IN_PROGRESS");
    assert!(status.get_details_retry_info().is_some());
    h.fake.set_lock_held(h.id, false);

    // 422 with an array message.
    h.fake.inject_next(
        Route::Rotate,
        422,
        error_body(
            422,
            "ValidationFailure",
            json!([{"code": "invalid_string", "path": ["rotationId"], "message": "Invalid uuid"}]),
        ),
        vec![],
    );
    let status = h
        .client
        .rotate_secrets(rotate(h.id))
        .await
        .expect_err("422");
    assert_status(&status, Code::InvalidArgument, "UPSTREAM_VALIDATION_FAILED");
    assert!(
        status.message().contains("rotationId: Invalid uuid"),
        "{}",
        status.message()
    );

    // 500 provider failure: INTERNAL, the prefixed message passes through.
    h.fake
        .fail_next_rotation(h.id, "connection refused by the database");
    let status = h
        .client
        .rotate_secrets(rotate(h.id))
        .await
        .expect_err("provider failure");
    assert_status(&status, Code::Internal, "UPSTREAM_ROTATION_FAILED");
    assert!(
        status.message().contains("Infisical encountered an issue"),
        "{}",
        status.message()
    );
    assert!(upstream_req_id(&status).is_some());

    // 401 that survives the one re-login: UNAUTHENTICATED (rotator's own identity is rejected).
    for _ in 0..2 {
        h.fake.inject_next(
            Route::Rotate,
            401,
            error_body(
                401,
                "UnauthorizedError",
                json!("No identity access token found"),
            ),
            vec![],
        );
    }
    let status = h
        .client
        .rotate_secrets(rotate(h.id))
        .await
        .expect_err("401 twice");
    assert_status(&status, Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED");

    // Plan restriction.
    h.fake.set_plan_allows_rotation(false);
    let status = h
        .client
        .rotate_secrets(rotate(h.id))
        .await
        .expect_err("plan");
    assert_status(
        &status,
        Code::FailedPrecondition,
        "UPSTREAM_PLAN_RESTRICTED",
    );
    h.fake.set_plan_allows_rotation(true);

    // Wrong type for the id.
    let other = h.fake.rotation_id("mysql-credentials");
    let status = h
        .client
        .rotate_secrets(rotate(other))
        .await
        .expect_err("type mismatch");
    assert_status(&status, Code::InvalidArgument, "ROTATION_TYPE_MISMATCH");

    // A read's permission is separate: generated credentials denied.
    h.fake.deny_permission(h.id, "read-generated-credentials");
    let status = h
        .client
        .get_generated_credentials(GetGeneratedCredentialsRequest {
            r#type: PG as i32,
            rotation_id: h.id.to_string(),
        })
        .await
        .expect_err("credentials denied");
    assert_status(
        &status,
        Code::PermissionDenied,
        "UPSTREAM_PERMISSION_DENIED",
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_429_is_retried_once_after_its_wait() {
    let mut h = harness().await;
    let before = h.fake.rotation_json(h.id)["activeIndex"].clone();
    h.fake.inject_next(
        Route::Rotate,
        429,
        error_body(
            429,
            "RateLimitExceeded",
            json!("Rate limit exceeded. Please try again in 1 seconds"),
        ),
        vec![("retry-after".into(), "1".into())],
    );
    h.client
        .rotate_secrets(rotate(h.id))
        .await
        .expect("succeeds after the wait");
    assert_eq!(h.fake.rotate_calls(h.id), 2, "the 429 and one retry");
    assert_ne!(
        h.fake.rotation_json(h.id)["activeIndex"],
        before,
        "rotated once"
    );

    // A wait longer than the caller's deadline is not waited for.
    h.fake.inject_next(
        Route::Rotate,
        429,
        error_body(
            429,
            "RateLimitExceeded",
            json!("Rate limit exceeded. Please try again in 30 seconds"),
        ),
        vec![],
    );
    let mut request = tonic::Request::new(rotate(h.id));
    request.set_timeout(Duration::from_secs(5));
    let status = h
        .client
        .rotate_secrets(request)
        .await
        .expect_err("rate limited");
    assert_status(&status, Code::ResourceExhausted, "UPSTREAM_RATE_LIMITED");
    assert_eq!(
        status.get_details_retry_info().and_then(|r| r.retry_delay),
        Some(Duration::from_secs(30))
    );
    assert_eq!(h.fake.rotate_calls(h.id), 3);
    h.server.shutdown().await;
}

#[tokio::test]
async fn ambiguous_outcomes_are_reconciled_never_retried() {
    let mut h = harness().await;
    // The connection drops after the upstream applied the rotation: reading back proves success.
    let before = h.fake.rotation_json(h.id)["lastRotatedAt"].clone();
    h.fake.drop_connection_after_apply(h.id);
    let rotated = h
        .client
        .rotate_secrets(rotate(h.id))
        .await
        .expect("reconciled as done")
        .into_inner();
    assert_eq!(h.fake.rotate_calls(h.id), 1);
    let after = h.fake.rotation_json(h.id)["lastRotatedAt"].clone();
    assert_ne!(after, before);
    assert!(rotated.secret_rotation.is_some());

    // A 504 without a rotation: the outcome stays unknown and nothing is resent.
    h.fake.inject_next(
        Route::Rotate,
        504,
        error_body(504, "GatewayTimeoutError", json!("Timeout error")),
        vec![],
    );
    let status = h
        .client
        .rotate_secrets(rotate(h.id))
        .await
        .expect_err("unknown");
    assert_status(&status, Code::DeadlineExceeded, "ROTATION_OUTCOME_UNKNOWN");
    assert!(
        status.get_details_retry_info().is_none(),
        "never advise a blind retry"
    );
    assert_eq!(h.fake.rotate_calls(h.id), 2);

    // A 500 "Something went wrong" (DatabaseError) is ambiguous too.
    h.fake.inject_next(
        Route::Rotate,
        500,
        error_body(500, "DatabaseError", json!("Something went wrong")),
        vec![],
    );
    let status = h
        .client
        .rotate_secrets(rotate(h.id))
        .await
        .expect_err("unknown");
    assert_status(&status, Code::Internal, "ROTATION_OUTCOME_UNKNOWN");
    assert_eq!(h.fake.rotate_calls(h.id), 3);
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_slow_upstream_is_bounded_by_the_callers_deadline_and_not_resent() {
    let mut h = harness().await;
    h.fake.set_rotate_latency(Duration::from_secs(3));
    let mut request = tonic::Request::new(rotate(h.id));
    request.set_timeout(Duration::from_millis(400));
    let status = h
        .client
        .rotate_secrets(request)
        .await
        .expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(h.fake.rotate_calls(h.id), 1, "sent once");
    // The attempt is finished in the background (reconciled), still without a resend.
    h.fake.set_rotate_latency(Duration::ZERO);
    h.server.shutdown().await;
    assert_eq!(
        h.fake.rotate_calls(h.id),
        1,
        "never resent, even while draining"
    );
}

#[tokio::test]
async fn calls_beyond_the_concurrency_bound_get_resource_exhausted() {
    let h = harness_with(&[("ROTATOR_MAX_CONCURRENT_CALLS", "2")]).await;
    h.fake.set_rotate_latency(Duration::from_millis(800));
    let ids: Vec<Uuid> = [
        "postgres-credentials",
        "mysql-credentials",
        "redis-credentials",
        "okta-client-secret",
    ]
    .iter()
    .map(|t| h.fake.rotation_id(t))
    .collect();
    let types = [
        PG,
        RotationType::MysqlCredentials,
        RotationType::RedisCredentials,
        RotationType::OktaClientSecret,
    ];
    let calls = ids.iter().zip(types).map(|(id, t)| {
        let mut client = h.client.clone();
        let request = RotateSecretsRequest {
            r#type: t as i32,
            rotation_id: id.to_string(),
        };
        async move { client.rotate_secrets(request).await }
    });
    let results = futures::future::join_all(calls).await;
    let exhausted: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!exhausted.is_empty(), "at most two run at once");
    for status in &exhausted {
        assert_status(status, Code::ResourceExhausted, "OVERLOADED");
        assert!(status.get_details_retry_info().is_some());
    }
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count() + exhausted.len(),
        4
    );
    assert_eq!(
        h.fake.total_rotate_calls(),
        4 - exhausted.len(),
        "refused calls reach no upstream"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_a_call_in_flight() {
    let mut h = harness().await;
    h.fake.set_rotate_latency(Duration::from_millis(700));
    let mut client = h.client.clone();
    let id = h.id;
    let in_flight = tokio::spawn(async move { client.rotate_secrets(rotate(id)).await });
    // Shut down once the upstream has the request (readiness: the fake counted it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.fake.rotate_calls(h.id) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.server.begin_shutdown();
    let answer = in_flight.await.expect("task");
    assert!(answer.is_ok(), "the in-flight call finished: {answer:?}");
    h.server.wait().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_unavailable_and_nothing_is_counted_as_sent() {
    let env = forwarding_env("http://127.0.0.1:9", CLIENT_ID, CLIENT_SECRET);
    let server = TestServer::start(env).await;
    let mut client = server.client().await;
    let status = client
        .rotate_secrets(rotate(Uuid::new_v4()))
        .await
        .expect_err("unreachable");
    assert_status(&status, Code::Unavailable, "UPSTREAM_UNREACHABLE");
    server.shutdown().await;
}
