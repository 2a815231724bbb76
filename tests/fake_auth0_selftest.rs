//! The fake Auth0 against Auth0's documented requests and answers: `/oauth/token` (client
//! credentials, form or JSON, `{error, error_description}`), `PATCH /api/v2/clients/{id}`,
//! `POST /api/v2/clients/{id}/rotate-secret` (the secret shown once), Management API error
//! bodies `{statusCode, error, message, errorCode}`, throttling.

use reqwest::StatusCode;
use rotator_testkit::fake_auth0::{AUDIENCE, Endpoint, FakeAuth0};
use serde_json::{Value, json};

async fn token(
    fake: &FakeAuth0,
    client_id: &str,
    secret: &str,
    audience: &str,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/oauth/token", fake.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("audience", audience),
        ])
        .send()
        .await
        .expect("token request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn admin_token(fake: &FakeAuth0) -> String {
    let (id, secret) = fake.admin();
    let (status, body) = token(fake, &id, &secret, AUDIENCE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

async fn management(
    fake: &FakeAuth0,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request =
        reqwest::Client::new().request(method, format!("{}/api/v2/{path}", fake.url()));
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.expect("management request");
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn assert_management_error(body: &Value, status: u16, code: Option<&str>) {
    assert_eq!(body["statusCode"], status, "{body}");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    if let Some(code) = code {
        assert_eq!(body["errorCode"], code, "{body}");
    }
}

#[tokio::test]
async fn oauth_token_answers_and_refuses_as_documented() {
    let fake = FakeAuth0::start().await;
    let (id, secret) = fake.admin();
    let (status, body) = token(&fake, &id, &secret, AUDIENCE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 86400);
    assert_eq!(body["scope"], "read:clients update:client_keys");

    // JSON bodies are accepted too.
    let response = reqwest::Client::new()
        .post(format!("{}/oauth/token", fake.url()))
        .json(&json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret, "audience": AUDIENCE}))
        .send()
        .await
        .expect("json token request");
    assert_eq!(response.status(), StatusCode::OK);

    let (status, body) = token(&fake, &id, "wrong", AUDIENCE).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"error": "access_denied", "error_description": "Unauthorized"})
    );

    let (status, body) = token(&fake, &id, &secret, "https://elsewhere/api/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "access_denied");

    // An app without a grant for the audience authenticates but is refused with 403.
    let app = fake.add_client();
    let app_secret = fake.secret_of(&app).expect("secret");
    let (status, body) = token(&fake, &app, &app_secret, AUDIENCE).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "access_denied");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Client is not authorized"))
    );
}

#[tokio::test]
async fn patch_sets_the_secret_and_rotate_secret_shows_a_new_one_once() {
    let fake = FakeAuth0::start().await;
    let app = fake.add_client();
    let bearer = admin_token(&fake).await;
    let old = fake.secret_of(&app).expect("secret");
    let chosen = "A".repeat(24) + &"b1".repeat(12);

    let (status, _, body) = management(
        &fake,
        reqwest::Method::PATCH,
        &format!("clients/{app}"),
        Some(&bearer),
        Some(json!({"client_secret": chosen})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], app.as_str());
    assert!(
        body.get("client_secret").is_none(),
        "PATCH does not echo the secret"
    );
    assert!(fake.secret_works(&app, &chosen));
    assert!(!fake.secret_works(&app, &old));
    assert_eq!(fake.live_secrets(&app), 1);
    // The same PATCH again changes nothing.
    let (status, _, _) = management(
        &fake,
        reqwest::Method::PATCH,
        &format!("clients/{app}"),
        Some(&bearer),
        Some(json!({"client_secret": chosen})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(fake.secret_works(&app, &chosen));

    let (status, _, body) = management(
        &fake,
        reqwest::Method::POST,
        &format!("clients/{app}/rotate-secret"),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rotated = body["client_secret"]
        .as_str()
        .expect("rotate-secret shows the new secret")
        .to_owned();
    assert!(fake.secret_works(&app, &rotated));
    assert!(!fake.secret_works(&app, &chosen));
    assert_eq!(fake.changes(&app), (2, 1));

    let (status, _, body) = management(
        &fake,
        reqwest::Method::GET,
        &format!("clients/{app}"),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !body.to_string().contains(&rotated),
        "a read never shows the secret"
    );
}

#[tokio::test]
async fn management_errors_have_the_documented_shape() {
    let fake = FakeAuth0::start().await;
    let app = fake.add_client();
    let path = format!("clients/{app}");
    let body = || Some(json!({"client_secret": "x".repeat(48)}));

    let (status, _, b) = management(&fake, reqwest::Method::PATCH, &path, None, body()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_management_error(&b, 401, None);
    let (status, _, b) =
        management(&fake, reqwest::Method::PATCH, &path, Some("forged"), body()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_management_error(&b, 401, Some("invalid_token"));

    let bearer = admin_token(&fake).await;
    let (status, _, b) = management(
        &fake,
        reqwest::Method::PATCH,
        "clients/nosuchclient",
        Some(&bearer),
        body(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_management_error(&b, 404, Some("inexistent_client"));
    let (status, _, b) = management(
        &fake,
        reqwest::Method::PATCH,
        &path,
        Some(&bearer),
        Some(json!({"client_secret": ""})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_management_error(&b, 400, Some("invalid_body"));

    fake.inject(Endpoint::Management, 429, Some(2), 1);
    let (status, headers, b) =
        management(&fake, reqwest::Method::PATCH, &path, Some(&bearer), body()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert_management_error(&b, 429, Some("too_many_requests"));
    fake.inject(Endpoint::Management, 503, None, 1);
    let (status, _, _) =
        management(&fake, reqwest::Method::PATCH, &path, Some(&bearer), body()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    fake.set_admin_scopes(&["read:clients"]);
    let bearer = admin_token(&fake).await;
    let (status, _, b) = management(
        &fake,
        reqwest::Method::POST,
        &format!("{path}/rotate-secret"),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_management_error(&b, 403, Some("insufficient_scope"));
    assert_eq!(
        fake.changes(&app),
        (0, 0),
        "no refused call changed anything"
    );
}
