//! Self-tests of the fake Infisical server (`rotator_testkit::fake_infisical`), over real HTTP.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use rotator_testkit::fake_infisical::*;
use serde_json::{Value, json};
use uuid::Uuid;

// ---- helpers -----------------------------------------------------------------------------------

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json body")
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn login(fake: &FakeInfisical) -> String {
    let r = reply(
        client()
            .post(format!(
                "{}/api/v1/auth/universal-auth/login",
                fake.base_url()
            ))
            .json(&json!({ "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["accessToken"].as_str().unwrap().to_string()
}

fn rotate_url(fake: &FakeInfisical, ty: &str, id: &str) -> String {
    format!(
        "{}/api/v2/secret-rotations/{ty}/{id}/rotate-secrets",
        fake.base_url()
    )
}

async fn rotate(fake: &FakeInfisical, token: &str, ty: &str, id: &str) -> Reply {
    reply(
        client()
            .post(rotate_url(fake, ty, id))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn get(fake: &FakeInfisical, token: &str, path_and_query: &str) -> Reply {
    reply(
        client()
            .get(format!("{}{path_and_query}", fake.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn assert_req_id(body: &Value) {
    let id = body["reqId"].as_str().expect("reqId");
    assert!(id.starts_with("req-") && id.len() == 18, "{id}");
    assert!(id[4..].chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
}

fn assert_error(r: &Reply, status: u16, error: &str, message: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["statusCode"], status);
    assert_eq!(r.body["error"], error, "{}", r.body);
    assert_eq!(r.body["message"], message, "{}", r.body);
    assert_req_id(&r.body);
}

fn assert_no_req_id_header(r: &Reply) {
    for (name, value) in &r.headers {
        assert!(
            !value.to_str().unwrap_or("").starts_with("req-"),
            "header {name} carries a reqId"
        );
    }
}

fn ts(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().expect("timestamp string");
    assert!(
        s.len() == 24 && s.ends_with('Z') && &s[19..20] == ".",
        "not JS ISO-8601: {s}"
    );
    s.parse().expect("rfc3339")
}

// ---- authentication ----------------------------------------------------------------------------

#[tokio::test]
async fn login_returns_the_four_fields_and_the_token_works() {
    let fake = FakeInfisical::start().await;
    let r = reply(
        client()
            .post(format!(
                "{}/api/v1/auth/universal-auth/login",
                fake.base_url()
            ))
            .json(&json!({ "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_object().unwrap().len(), 4);
    assert_eq!(r.body["expiresIn"], 3600);
    assert_eq!(r.body["accessTokenMaxTTL"], 86400);
    assert_eq!(r.body["tokenType"], "Bearer");
    let token = r.body["accessToken"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "JWT-shaped");
    assert_no_req_id_header(&r);
    assert_eq!(fake.login_calls(), 1);

    let listed = get(
        &fake,
        token,
        &format!("/api/v2/secret-rotations?projectId={PROJECT_ID}"),
    )
    .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["secretRotations"].as_array().unwrap().len(), 14);

    // Unknown fields are rejected (the contract says not to send them).
    let r = reply(
        client()
            .post(format!(
                "{}/api/v1/auth/universal-auth/login",
                fake.base_url()
            ))
            .json(&json!({ "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "extra": 1 }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["message"][0]["code"], "unrecognized_keys");
    fake.shutdown().await;
}

#[tokio::test]
async fn ttl_zero_means_never_expires() {
    let fake = FakeInfisical::start_with(FakeConfig {
        access_token_ttl_secs: 0,
        access_token_max_ttl_secs: 0,
        ..Default::default()
    })
    .await;
    let r = reply(
        client()
            .post(format!(
                "{}/api/v1/auth/universal-auth/login",
                fake.base_url()
            ))
            .json(&json!({ "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.body["expiresIn"], 0);
    assert_eq!(r.body["accessTokenMaxTTL"], 0);

    // Periodic tokens: expiresIn is the period and the max TTL is forced to 1e9.
    let fake = FakeInfisical::start_with(FakeConfig {
        access_token_period_secs: 600,
        ..Default::default()
    })
    .await;
    let static_token = fake.issue_token();
    let r = reply(
        client()
            .post(format!("{}/api/v1/auth/token/renew", fake.base_url()))
            .json(&json!({ "accessToken": static_token }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["expiresIn"], 600);
    assert_eq!(r.body["accessTokenMaxTTL"], 1_000_000_000u64);
}

#[tokio::test]
async fn expired_token_is_403_token_error() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let id = fake.rotation_id("postgres-credentials").to_string();
    fake.expire_all_tokens();

    let r = rotate(&fake, &token, "postgres-credentials", &id).await;
    assert_error(
        &r,
        403,
        "TokenError",
        "Your token has expired. Please re-authenticate.",
    );
    assert_eq!(
        fake.rotate_calls(id.parse().unwrap()),
        1,
        "counted even though rejected"
    );
    assert_eq!(
        fake.rotation_json(id.parse().unwrap())["activeIndex"],
        0,
        "nothing rotated"
    );

    // Renewing an expired JWT is a TokenError too; a fresh login works.
    let r = reply(
        client()
            .post(format!("{}/api/v1/auth/token/renew", fake.base_url()))
            .json(&json!({ "accessToken": token }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(
        &r,
        403,
        "TokenError",
        "Your token has expired. Please re-authenticate.",
    );
    let fresh = login(&fake).await;
    assert_eq!(
        rotate(&fake, &fresh, "postgres-credentials", &id)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn missing_malformed_and_revoked_tokens() {
    let fake = FakeInfisical::start().await;
    let path = format!("/api/v2/secret-rotations?projectId={PROJECT_ID}");

    let r = reply(
        client()
            .get(format!("{}{path}", fake.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&r, 401, "UnauthorizedError", "Token missing");

    let r = get(&fake, "garbage", &path).await;
    assert_error(&r, 403, "TokenError", MSG_TOKEN_MALFORMED);

    let token = login(&fake).await;
    fake.revoke_all_tokens();
    let r = get(&fake, &token, &path).await;
    assert_error(
        &r,
        401,
        "UnauthorizedError",
        "No identity access token found",
    );

    // The revoke endpoint.
    let token = login(&fake).await;
    let r = reply(
        client()
            .post(format!("{}/api/v1/auth/token/revoke", fake.base_url()))
            .json(&json!({ "accessToken": token }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({ "message": "Successfully revoked access token" })
    );
    let r = get(&fake, &token, &path).await;
    assert_error(
        &r,
        401,
        "UnauthorizedError",
        "No identity access token found",
    );
}

#[tokio::test]
async fn renew_issues_a_new_token_and_respects_max_ttl() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let r = reply(
        client()
            .post(format!("{}/api/v1/auth/token/renew", fake.base_url()))
            .json(&json!({ "accessToken": token }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let renewed = r.body["accessToken"].as_str().unwrap().to_string();
    assert_ne!(renewed, token);
    assert_eq!(r.body["expiresIn"], 3600);
    assert_eq!(fake.renew_calls(), 1);
    assert_eq!(
        get(&fake, &renewed, "/api/v2/secret-rotations/options")
            .await
            .status,
        200
    );

    let fake = FakeInfisical::start_with(FakeConfig {
        access_token_ttl_secs: 10,
        access_token_max_ttl_secs: 5,
        ..Default::default()
    })
    .await;
    let token = login(&fake).await;
    let r = reply(
        client()
            .post(format!("{}/api/v1/auth/token/renew", fake.base_url()))
            .json(&json!({ "accessToken": token }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(
        &r,
        401,
        "UnauthorizedError",
        "Failed to renew MI access token past its Max TTL expiration",
    );
}

#[tokio::test]
async fn three_bad_secrets_lock_the_identity() {
    let fake = FakeInfisical::start().await;
    let url = format!("{}/api/v1/auth/universal-auth/login", fake.base_url());
    // Unknown client ids never lock anything.
    for _ in 0..5 {
        let r = reply(
            client()
                .post(&url)
                .json(&json!({ "clientId": "nope", "clientSecret": "x" }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(&r, 401, "UnauthorizedError", "Invalid credentials");
    }
    for _ in 0..3 {
        let r = reply(
            client()
                .post(&url)
                .json(&json!({ "clientId": CLIENT_ID, "clientSecret": "wrong" }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(&r, 401, "UnauthorizedError", "Invalid credentials");
    }
    let r = reply(
        client()
            .post(&url)
            .json(&json!({ "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&r, 401, "UnauthorizedError", MSG_LOCKED_OUT);
    assert_eq!(fake.login_calls(), 9);
    fake.reset_lockout();
    login(&fake).await;
}

// ---- requests and errors -----------------------------------------------------------------------

#[tokio::test]
async fn non_uuid_rotation_id_is_422_with_an_issue_array() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    for bad in ["not-a-uuid", "6f1c2b9e3d4a4e5f8a7b9c0d1e2f3a4b"] {
        let r = rotate(&fake, &token, "postgres-credentials", bad).await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.body["error"], "ValidationFailure");
        assert_req_id(&r.body);
        let issues = r.body["message"].as_array().expect("message is an array");
        assert_eq!(issues[0]["path"], json!(["rotationId"]));
        assert_eq!(issues[0]["message"], "Invalid uuid");
    }
    let r = get(
        &fake,
        &token,
        "/api/v2/secret-rotations/postgres-credentials/xyz",
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(fake.total_rotate_calls(), 2);
}

#[tokio::test]
async fn unknown_type_is_fastify_404_without_req_id() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let id = Uuid::new_v4().to_string();
    let r = rotate(&fake, &token, "gcp-iam-service-account-secret", &id).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        json!({
            "message": format!("Route POST:/api/v2/secret-rotations/gcp-iam-service-account-secret/{id}/rotate-secrets not found"),
            "error": "Not Found",
            "statusCode": 404,
        })
    );
    assert_eq!(fake.rotate_calls(id.parse().unwrap()), 1);
}

#[tokio::test]
async fn empty_json_body_is_500_and_rotates_nothing() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let id = fake.rotation_id("redis-credentials");
    let r = reply(
        client()
            .post(rotate_url(&fake, "redis-credentials", &id.to_string()))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&r, 500, "InternalServerError", "Something went wrong");
    assert_eq!(fake.rotation_json(id)["activeIndex"], 0);
    // `{}` with a JSON content type is fine.
    let r = reply(
        client()
            .post(rotate_url(&fake, "redis-credentials", &id.to_string()))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn per_id_checks_run_in_contract_order() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let pg = fake.rotation_id("postgres-credentials");
    let mysql = fake.rotation_id("mysql-credentials");
    let unknown = Uuid::new_v4();

    // 1. Plan gate wins over everything, even for an unknown id.
    fake.set_plan_allows_rotation(false);
    let r = rotate(&fake, &token, "postgres-credentials", &unknown.to_string()).await;
    assert_error(&r, 400, "BadRequest", MSG_PLAN_ROTATE);
    let r = get(
        &fake,
        &token,
        &format!("/api/v2/secret-rotations/postgres-credentials/{pg}"),
    )
    .await;
    assert_error(&r, 400, "BadRequest", MSG_PLAN_READ);
    fake.set_plan_allows_rotation(true);

    // 2. Existence.
    let r = rotate(&fake, &token, "postgres-credentials", &unknown.to_string()).await;
    assert_error(
        &r,
        404,
        "NotFound",
        &format!("Could not find PostgreSQL Credentials Rotation with ID \"{unknown}\""),
    );

    // 3. Permission (before the type check).
    fake.deny_permission(mysql, "rotate-secrets");
    let r = rotate(&fake, &token, "postgres-credentials", &mysql.to_string()).await;
    assert_error(
        &r,
        403,
        "PermissionDenied",
        "You are not allowed to rotate-secrets on secret-rotation",
    );
    let details = r.body["details"].as_array().expect("details array");
    assert_eq!(details[0]["action"], "rotate-secrets");
    assert_eq!(details[0]["subject"], "secret-rotation");
    assert!(details[0]["inverted"].is_boolean() && details[0]["conditions"].is_object());
    fake.allow_permission(mysql, "rotate-secrets");

    // 4. Type/app match.
    let r = rotate(&fake, &token, "postgres-credentials", &mysql.to_string()).await;
    assert_error(
        &r,
        400,
        "BadRequest",
        &format!(
            "Secret Rotation with ID \"{mysql}\" is not configured for PostgreSQL Credentials"
        ),
    );

    // 5. The rotation lock.
    fake.set_lock_held(pg, true);
    let r = rotate(&fake, &token, "postgres-credentials", &pg.to_string()).await;
    assert_error(
        &r,
        400,
        "BadRequest",
        "A rotation is already in progress. Please try again shortly.",
    );
    fake.set_lock_held(pg, false);
    assert_eq!(
        rotate(&fake, &token, "postgres-credentials", &pg.to_string())
            .await
            .status,
        200
    );

    assert_eq!(fake.rotate_calls(pg), 2);
    assert_eq!(fake.rotate_calls(mysql), 2);
    assert_eq!(fake.total_rotate_calls(), 6);
}

#[tokio::test]
async fn write_rate_limit_gives_429_with_retry_after() {
    let fake = FakeInfisical::start_with(FakeConfig {
        rate_limit_cloud: true,
        write_limit_per_minute: 2,
        ..Default::default()
    })
    .await;
    let token = login(&fake).await; // write 1
    let id = fake.rotation_id("okta-client-secret").to_string();
    let ok = rotate(&fake, &token, "okta-client-secret", &id).await; // write 2
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers["x-ratelimit-limit"], "2");
    assert_eq!(ok.headers["x-ratelimit-remaining"], "0");
    let r = rotate(&fake, &token, "okta-client-secret", &id).await; // write 3
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"], "RateLimitExceeded");
    assert_req_id(&r.body);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert_eq!(
        r.body["message"],
        format!("Rate limit exceeded. Please try again in {wait} seconds")
    );
    assert_eq!(fake.rotate_calls(id.parse().unwrap()), 2);
    // Reads are not limited by default, and /api/status never is.
    assert_eq!(
        get(&fake, &token, "/api/v2/secret-rotations/options")
            .await
            .status,
        200
    );
    assert_eq!(
        reply(
            client()
                .get(format!("{}/api/status", fake.base_url()))
                .send()
                .await
                .unwrap()
        )
        .await
        .status,
        200
    );
}

// ---- rotation behaviour ------------------------------------------------------------------------

#[tokio::test]
async fn rotate_flips_active_index_and_fills_the_inactive_slot() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let id = fake.rotation_id("postgres-credentials");
    let before = fake.generated_credentials_json(id);
    assert_eq!(before["generatedCredentials"].as_array().unwrap().len(), 1);
    assert_eq!(before["activeIndex"], 0);
    assert_eq!(
        before["generatedCredentials"][0]["username"],
        "orders_app_1"
    );

    let r = rotate(&fake, &token, "postgres-credentials", &id.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_no_req_id_header(&r);
    let obj = &r.body["secretRotation"];
    assert_eq!(r.body.as_object().unwrap().len(), 1);
    assert_eq!(obj["activeIndex"], 1);
    assert_eq!(obj["rotationStatus"], "success");
    assert_eq!(obj["isLastRotationManual"], true);
    assert_eq!(obj["lastRotationMessage"], Value::Null);
    assert_eq!(obj["lastRotatedAt"], obj["lastRotationAttemptedAt"]);
    assert_eq!(obj["updatedAt"], obj["lastRotatedAt"]);
    let rotated_at = ts(&obj["lastRotatedAt"]);
    assert!((Utc::now() - rotated_at).num_seconds().abs() < 5);
    let expected_next =
        calculate_next_rotation_at(true, false, rotated_at, 30, (2, 0), true, rotated_at).unwrap();
    assert_eq!(ts(&obj["nextRotationAt"]), expected_next);
    assert_eq!(*obj, fake.rotation_json(id));

    // Over HTTP, with the read-generated-credentials route.
    let creds = get(
        &fake,
        &token,
        &format!("/api/v2/secret-rotations/postgres-credentials/{id}/generated-credentials"),
    )
    .await;
    assert_eq!(creds.status, 200);
    assert_eq!(creds.body, fake.generated_credentials_json(id));
    assert_eq!(creds.body["rotationId"], id.to_string());
    assert_eq!(creds.body["type"], "postgres-credentials");
    let sets = creds.body["generatedCredentials"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(sets.len(), 2);
    assert_eq!(
        sets[0], before["generatedCredentials"][0],
        "slot 0 untouched"
    );
    assert_eq!(sets[1]["username"], "orders_app_2");
    let pw = sets[1]["password"].as_str().unwrap();
    assert_eq!(pw.len(), 48);
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));

    // Second rotation overwrites slot 0 and flips back.
    let r = rotate(&fake, &token, "postgres-credentials", &id.to_string()).await;
    assert_eq!(r.body["secretRotation"]["activeIndex"], 0);
    let after = fake.generated_credentials_json(id);
    assert_eq!(after["generatedCredentials"][1], sets[1]);
    assert_eq!(after["generatedCredentials"][0]["username"], "orders_app_1");
    assert_ne!(
        after["generatedCredentials"][0]["password"],
        sets[0]["password"]
    );
    assert_eq!(fake.rotate_calls(id), 2);
}

#[tokio::test]
async fn provider_failure_marks_the_row_failed() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let id = fake.rotation_id("auth0-client-secret");
    let before = fake.rotation_json(id);
    fake.fail_next_rotation(
        id,
        r#"{"statusCode":403,"error":"Forbidden","message":"Insufficient scope"}"#,
    );

    let r = rotate(&fake, &token, "auth0-client-secret", &id.to_string()).await;
    let message = format!(
        "{PROVIDER_FAILURE_PREFIX}{}",
        r#"{"statusCode":403,"error":"Forbidden","message":"Insufficient scope"}"#
    );
    assert_error(&r, 500, "InternalServerError", &message);

    let row = fake.rotation_json(id);
    assert_eq!(row["rotationStatus"], "failed");
    assert_eq!(row["lastRotationMessage"], message.as_str());
    assert_eq!(row["activeIndex"], 0);
    assert_eq!(row["lastRotatedAt"], before["lastRotatedAt"]);
    let attempted = ts(&row["lastRotationAttemptedAt"]);
    assert!(attempted > ts(&before["lastRotationAttemptedAt"]));
    let tomorrow = (attempted.date_naive() + chrono::Days::new(1))
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(ts(&row["nextRotationAt"]), tomorrow);
    assert_eq!(
        fake.generated_credentials_json(id)["generatedCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The next rotation succeeds and clears the failure.
    let r = rotate(&fake, &token, "auth0-client-secret", &id.to_string()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["secretRotation"]["rotationStatus"], "success");
    assert_eq!(r.body["secretRotation"]["lastRotationMessage"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotation_during_latency_is_already_in_progress() {
    let fake = FakeInfisical::start_with(FakeConfig {
        rotate_latency: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let token = login(&fake).await;
    let id = fake.rotation_id("aws-iam-user-secret").to_string();
    let first = {
        let url = rotate_url(&fake, "aws-iam-user-secret", &id);
        let token = token.clone();
        tokio::spawn(async move {
            reply(client().post(url).bearer_auth(token).send().await.unwrap()).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = rotate(&fake, &token, "aws-iam-user-secret", &id).await;
    assert_error(&second, 400, "BadRequest", MSG_IN_PROGRESS);
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.body["secretRotation"]["activeIndex"], 1);
    let creds = fake.generated_credentials_json(id.parse().unwrap());
    let key = &creds["generatedCredentials"][1];
    assert!(key["accessKeyId"].as_str().unwrap().starts_with("AKIA"));
    assert_eq!(key["secretAccessKey"].as_str().unwrap().len(), 40);

    fake.set_rotate_latency(Duration::ZERO);
    assert_eq!(
        rotate(&fake, &token, "aws-iam-user-secret", &id)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn dropped_connection_after_apply_leaves_the_rotation_applied() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let id = fake.rotation_id("ldap-password");
    fake.drop_connection_after_apply(id);
    let result = client()
        .post(rotate_url(&fake, "ldap-password", &id.to_string()))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(
        result.is_err(),
        "expected a transport error, got {:?}",
        result.map(|r| r.status())
    );

    let r = get(
        &fake,
        &token,
        &format!("/api/v2/secret-rotations/ldap-password/{id}"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["secretRotation"]["activeIndex"], 1);
    assert_eq!(r.body["secretRotation"]["rotationStatus"], "success");
    assert_eq!(fake.rotate_calls(id), 1);
}

#[tokio::test]
async fn rotation_completes_after_the_client_times_out() {
    let fake = FakeInfisical::start_with(FakeConfig {
        rotate_latency: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let token = login(&fake).await;
    let id = fake.rotation_id("mongodb-credentials");
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = impatient
        .post(rotate_url(&fake, "mongodb-credentials", &id.to_string()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // Still running: the lock is held, nothing visible yet.
    assert_eq!(fake.rotation_json(id)["activeIndex"], 0);
    let r = rotate(&fake, &token, "mongodb-credentials", &id.to_string()).await;
    assert_error(&r, 400, "BadRequest", MSG_IN_PROGRESS);
    // The server finishes the rotation on its own and releases the lock.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let row = fake.rotation_json(id);
    assert_eq!(row["activeIndex"], 1);
    assert_eq!(row["rotationStatus"], "success");
    fake.set_rotate_latency(Duration::ZERO);
    assert_eq!(
        rotate(&fake, &token, "mongodb-credentials", &id.to_string())
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn inject_next_is_one_shot_and_counted() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let id = fake.rotation_id("databricks-service-principal-secret");
    fake.inject_next(
        Route::Rotate,
        504,
        json!({ "reqId": "req-abcdefghijklmn", "statusCode": 504, "message": "Timeout error", "error": "GatewayTimeoutError" }),
        vec![("x-injected".into(), "yes".into())],
    );
    let r = rotate(
        &fake,
        &token,
        "databricks-service-principal-secret",
        &id.to_string(),
    )
    .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.headers["x-injected"], "yes");
    assert_eq!(fake.rotation_json(id)["activeIndex"], 0);
    let r = rotate(
        &fake,
        &token,
        "databricks-service-principal-secret",
        &id.to_string(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(fake.rotate_calls(id), 2);
}

// ---- other routes and the seeded objects -------------------------------------------------------

#[tokio::test]
async fn get_by_name_lists_options_and_permission_filtering() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let pg = fake.rotation_id("postgres-credentials");
    let base = "/api/v2/secret-rotations/postgres-credentials/rotation-name";

    let r = get(
        &fake,
        &token,
        &format!(
            "{base}/pg-orders-db?projectId={PROJECT_ID}&secretPath=/databases/&environment=prod"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["secretRotation"]["id"], pg.to_string());

    let r = get(
        &fake,
        &token,
        &format!("{base}/pg-orders-db?projectId={PROJECT_ID}&secretPath=/nope&environment=prod"),
    )
    .await;
    assert_error(
        &r,
        400,
        "BadRequest",
        &format!(
            "Could not find folder with path \"/nope\" in environment \"prod\" for project with ID \"{PROJECT_ID}\""
        ),
    );
    let r = get(
        &fake,
        &token,
        &format!("{base}/missing?projectId={PROJECT_ID}&secretPath=/databases&environment=prod"),
    )
    .await;
    assert_error(
        &r,
        404,
        "NotFound",
        "Could not find PostgreSQL Credentials Rotation with name \"missing\"",
    );
    let r = get(&fake, &token, &format!("{base}/pg-orders-db")).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["message"].as_array().unwrap().len(), 3);

    // Lists: filtered by read permission; projectId required.
    fake.deny_permission(pg, "read");
    let r = get(
        &fake,
        &token,
        &format!("/api/v2/secret-rotations?projectId={PROJECT_ID}"),
    )
    .await;
    assert_eq!(r.body["secretRotations"].as_array().unwrap().len(), 13);
    let r = get(
        &fake,
        &token,
        &format!("/api/v2/secret-rotations/postgres-credentials?projectId={PROJECT_ID}"),
    )
    .await;
    assert_eq!(r.body["secretRotations"], json!([]));
    let r = get(
        &fake,
        &token,
        &format!("/api/v2/secret-rotations/mysql-credentials?projectId={PROJECT_ID}"),
    )
    .await;
    assert_eq!(r.body["secretRotations"].as_array().unwrap().len(), 1);
    let r = get(&fake, &token, "/api/v2/secret-rotations/mysql-credentials").await;
    assert_eq!(r.status, 422);
    let r = get(
        &fake,
        &token,
        &format!("/api/v2/secret-rotations/postgres-credentials/{pg}"),
    )
    .await;
    assert_error(
        &r,
        403,
        "PermissionDenied",
        "You are not allowed to read on secret-rotation",
    );

    fake.deny_permission(pg, "read-generated-credentials");
    let r = get(
        &fake,
        &token,
        &format!("/api/v2/secret-rotations/postgres-credentials/{pg}/generated-credentials"),
    )
    .await;
    assert_error(
        &r,
        403,
        "PermissionDenied",
        "You are not allowed to read-generated-credentials on secret-rotation",
    );

    let r = get(&fake, &token, "/api/v2/secret-rotations/options").await;
    let options = r.body["secretRotationOptions"].as_array().unwrap();
    assert_eq!(options.len(), 14);
    let pg_opt = options
        .iter()
        .find(|o| o["type"] == "postgres-credentials")
        .unwrap();
    assert_eq!(pg_opt["name"], "PostgreSQL Credentials");
    assert_eq!(pg_opt["connection"], "postgres");
    assert_eq!(
        pg_opt["template"]["secretsMapping"]["username"],
        "POSTGRES_DB_USERNAME"
    );
    assert!(pg_opt["template"]["rotationStatement"].is_string());
}

#[tokio::test]
async fn seeded_rotations_emit_every_field_with_the_right_shapes() {
    let fake = FakeInfisical::start().await;
    let fields = [
        "id",
        "name",
        "description",
        "isAutoRotationEnabled",
        "activeIndex",
        "folderId",
        "connectionId",
        "createdAt",
        "updatedAt",
        "rotationInterval",
        "rotationStatus",
        "lastRotationAttemptedAt",
        "lastRotatedAt",
        "lastRotationJobId",
        "nextRotationAt",
        "isLastRotationManual",
        "connection",
        "environment",
        "projectId",
        "folder",
        "rotateAtUtc",
        "lastRotationMessage",
        "type",
        "parameters",
        "secretsMapping",
    ];
    let shapes: [(&str, &str, &[&str]); 14] = [
        ("windows-local-account", "smb", &["password", "username"]),
        ("unix-linux-local-account", "ssh", &["password", "username"]),
        ("redis-credentials", "redis", &["password", "username"]),
        (
            "postgres-credentials",
            "postgres",
            &["password", "username"],
        ),
        (
            "oracledb-credentials",
            "oracledb",
            &["password", "username"],
        ),
        (
            "okta-client-secret",
            "okta",
            &["clientId", "clientSecret", "secretId"],
        ),
        ("mysql-credentials", "mysql", &["password", "username"]),
        ("mssql-credentials", "mssql", &["password", "username"]),
        ("mongodb-credentials", "mongodb", &["password", "username"]),
        ("ldap-password", "ldap", &["dn", "password"]),
        (
            "databricks-service-principal-secret",
            "databricks",
            &["clientId", "clientSecret", "secretId"],
        ),
        (
            "azure-client-secret",
            "azure-client-secrets",
            &["clientId", "clientSecret", "keyId"],
        ),
        (
            "aws-iam-user-secret",
            "aws",
            &["accessKeyId", "secretAccessKey"],
        ),
        (
            "auth0-client-secret",
            "auth0",
            &["clientId", "clientSecret"],
        ),
    ];
    let (mut null_descriptions, mut string_descriptions) = (0, 0);
    for (ty, app, cred_keys) in shapes {
        let id = fake.rotation_id(ty);
        let obj = fake.rotation_json(id);
        let mut keys: Vec<&str> = obj
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        let mut expected = fields.to_vec();
        expected.sort();
        assert_eq!(keys, expected, "{ty}");
        assert_eq!(obj["type"], ty);
        assert_eq!(obj["connection"]["app"], app);
        assert_eq!(obj["connectionId"], obj["connection"]["id"]);
        assert_eq!(obj["folderId"], obj["folder"]["id"]);
        assert_eq!(obj["projectId"], PROJECT_ID);
        assert_eq!(obj["lastRotationJobId"], Value::Null);
        assert!(obj["name"].as_str().unwrap().len() <= 32);
        for t in [
            "createdAt",
            "updatedAt",
            "lastRotatedAt",
            "lastRotationAttemptedAt",
        ] {
            ts(&obj[t]);
        }
        if obj["description"].is_null() {
            null_descriptions += 1
        } else {
            string_descriptions += 1
        }
        if ty == "mysql-credentials" {
            assert_eq!(obj["isAutoRotationEnabled"], false);
            assert_eq!(obj["nextRotationAt"], Value::Null);
        } else {
            ts(&obj["nextRotationAt"]);
        }
        let creds = fake.generated_credentials_json(id);
        let set = creds["generatedCredentials"][0].as_object().unwrap();
        let mut got: Vec<&str> = set.keys().map(String::as_str).collect();
        got.sort();
        assert_eq!(got, cred_keys, "{ty}");
    }
    assert!(null_descriptions > 0 && string_descriptions > 0);
    let unix = fake.rotation_json(fake.rotation_id("unix-linux-local-account"));
    assert_eq!(unix["parameters"]["useSudo"], true);
    assert!(unix["parameters"]["passwordRequirements"]["required"]["symbols"].is_number());
}

#[tokio::test]
async fn request_headers_are_recorded_for_propagation_checks() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    client()
        .get(format!(
            "{}/api/v2/secret-rotations/options",
            fake.base_url()
        ))
        .bearer_auth(&token)
        .header("traceparent", traceparent)
        .header("request-id", "rotator-123")
        .send()
        .await
        .unwrap();
    let headers = fake.last_request_headers();
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(find("traceparent").as_deref(), Some(traceparent));
    assert_eq!(find("request-id").as_deref(), Some("rotator-123"));
    assert!(find("authorization").unwrap().starts_with("Bearer "));
}

#[test]
fn next_rotation_at_follows_the_lifecycle_examples() {
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    // Manual at 05:00 with rotateAtUtc 02:00 and interval 7: one extra day.
    assert_eq!(
        calculate_next_rotation_at(
            true,
            false,
            at("2025-01-10T05:00:00Z"),
            7,
            (2, 0),
            true,
            at("2025-01-10T05:00:00Z")
        ),
        Some(at("2025-01-18T02:00:00Z"))
    );
    // Scheduled at 02:00:03: no extra day.
    assert_eq!(
        calculate_next_rotation_at(
            true,
            false,
            at("2025-01-10T02:00:03Z"),
            7,
            (2, 0),
            false,
            at("2025-01-10T02:00:03Z")
        ),
        Some(at("2025-01-17T02:00:00Z"))
    );
    // Failed: next UTC day at rotateAtUtc.
    assert_eq!(
        calculate_next_rotation_at(
            true,
            true,
            at("2025-01-01T00:00:00Z"),
            7,
            (2, 0),
            true,
            at("2025-03-05T23:59:00Z")
        ),
        Some(at("2025-03-06T02:00:00Z"))
    );
    // Disabled: null.
    assert_eq!(
        calculate_next_rotation_at(
            false,
            true,
            at("2025-01-10T05:00:00Z"),
            7,
            (2, 0),
            true,
            Utc::now()
        ),
        None
    );
}

// ---- secrets API (v4) ---------------------------------------------------------------------------

async fn patch_batch(fake: &FakeInfisical, token: Option<&str>, body: Value) -> Reply {
    let mut request = client().patch(format!("{}/api/v4/secrets/batch", fake.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    reply(request.json(&body).send().await.unwrap()).await
}

fn batch(project: &str, env: &str, path: &str, mode: &str, value: &str) -> Value {
    json!({
        "projectId": project, "environment": env, "secretPath": path, "mode": mode,
        "secrets": [{ "secretKey": "DB_PASSWORD", "secretValue": value,
                      "secretMetadata": [{ "key": "rotator-version", "value": "1" }] }],
    })
}

#[tokio::test]
async fn secrets_batch_update_needs_a_token_and_a_known_project_environment_and_folder() {
    let fake = FakeInfisical::start().await;
    let r = patch_batch(&fake, None, batch(PROJECT_ID, "prod", "/", "upsert", "v")).await;
    assert_error(&r, 401, "UnauthorizedError", MSG_TOKEN_MISSING);
    let token = login(&fake).await;
    let r = patch_batch(
        &fake,
        Some(&token),
        batch("nope", "prod", "/", "upsert", "v"),
    )
    .await;
    assert_error(&r, 404, "NotFound", "Project with ID 'nope' not found");
    let r = patch_batch(
        &fake,
        Some(&token),
        batch(PROJECT_ID, "qa", "/", "upsert", "v"),
    )
    .await;
    assert_error(
        &r,
        404,
        "NotFound",
        &format!("Environment with slug 'qa' in project with ID '{PROJECT_ID}' not found"),
    );
    let r = patch_batch(
        &fake,
        Some(&token),
        batch(PROJECT_ID, "prod", "/x", "upsert", "v"),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = patch_batch(
        &fake,
        Some(&token),
        batch(PROJECT_ID, "prod", "/", "failOnNotFound", "v"),
    )
    .await;
    assert_error(
        &r,
        404,
        "NotFound",
        "Secret does not exist: DB_PASSWORD in path /",
    );
    let r = get(
        &fake,
        &token,
        "/api/v4/secrets?projectId=nope&environment=prod",
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(fake.secrets().is_empty());
}

#[tokio::test]
async fn secrets_upsert_creates_then_updates_with_versions_and_lists_without_values() {
    let fake = FakeInfisical::start().await;
    let token = login(&fake).await;
    for (i, value) in ["first-value", "second-value"].iter().enumerate() {
        let r = patch_batch(
            &fake,
            Some(&token),
            batch(PROJECT_ID, "prod", "/", "upsert", value),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["secrets"][0]["version"], i as u64 + 1);
        assert_eq!(r.body["secrets"][0]["secretKey"], "DB_PASSWORD");
    }
    let stored = fake.secret("prod", "/", "DB_PASSWORD").expect("stored");
    assert_eq!(stored.history, ["first-value", "second-value"]);
    assert_eq!(
        stored.metadata,
        [("rotator-version".to_owned(), "1".to_owned())]
    );
    let r = get(
        &fake,
        &token,
        &format!("/api/v4/secrets?projectId={PROJECT_ID}&environment=prod&viewSecretValue=false"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["secrets"][0]["version"], 2);
    assert_eq!(r.body["secrets"][0]["secretValueHidden"], true);
    assert!(!r.body.to_string().contains("second-value"));
    // A failing write injected for the next call only.
    fake.fail_next_secret_writes(1);
    let r = patch_batch(
        &fake,
        Some(&token),
        batch(PROJECT_ID, "prod", "/", "upsert", "third"),
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(
        fake.secret("prod", "/", "DB_PASSWORD")
            .expect("stored")
            .version,
        2
    );
}
