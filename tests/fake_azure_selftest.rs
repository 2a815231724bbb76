//! The fake Azure against Microsoft's documented requests and answers: the client-credentials
//! token endpoint and its error body, Graph `addPassword` (the secret shown once),
//! `passwordCredentials`, `removePassword`, Graph error bodies, the password cap, throttling.

use std::time::Duration;

use reqwest::StatusCode;
use rotator_testkit::fake_azure::{Endpoint, FakeAzure, PERSONAL_ACCOUNT_CAP};
use serde_json::{Value, json};

async fn token(
    fake: &FakeAzure,
    tenant: &str,
    client_id: &str,
    secret: &str,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", fake.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn admin_token(fake: &FakeAzure) -> String {
    let (id, secret) = fake.admin();
    let (status, body) = token(fake, &fake.tenant(), id, secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn graph(
    fake: &FakeAzure,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}/v1.0/{path}", fake.url()));
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.expect("graph request");
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn add_body() -> Value {
    json!({"passwordCredential": {"displayName": "Password friendly name", "endDateTime": "2099-01-01T00:00:00Z"}})
}

#[tokio::test]
async fn token_endpoint_answers_and_refuses_as_documented() {
    let fake = FakeAzure::start().await;
    let (id, secret) = fake.admin();
    let (status, body) = token(&fake, &fake.tenant(), id, secret).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0));
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));

    let (status, body) = token(&fake, &fake.tenant(), id, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], json!([7000215]));
    for field in [
        "error_description",
        "timestamp",
        "trace_id",
        "correlation_id",
    ] {
        assert!(body.get(field).is_some(), "{field} in {body}");
    }
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("AADSTS7000215:"))
    );

    let (status, body) = token(
        &fake,
        &fake.tenant(),
        "00000000-0000-0000-0000-000000000000",
        secret,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unauthorized_client");

    let (status, body) = token(&fake, "not-my-tenant", id, secret).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    assert!(fake.token_requests() >= 4);
}

#[tokio::test]
async fn add_password_shows_the_secret_once_and_remove_password_deletes_it() {
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let bearer = admin_token(&fake).await;
    let path = format!("applications/{}", app.object_id);

    let (status, _, body) = graph(
        &fake,
        reqwest::Method::POST,
        &format!("{path}/addPassword"),
        Some(&bearer),
        Some(add_body()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key_id = body["keyId"].as_str().expect("keyId").to_owned();
    let secret = body["secretText"].as_str().expect("secretText").to_owned();
    assert_eq!(body["displayName"], "Password friendly name");
    assert_eq!(body["endDateTime"], "2099-01-01T00:00:00Z");
    assert_eq!(body["hint"].as_str(), Some(&secret[..3]));
    assert!(body["customKeyIdentifier"].is_null());
    assert_eq!(fake.live_secrets(&app.object_id), 1);

    // The new secret logs in as the application.
    let (status, _) = token(&fake, &fake.tenant(), &app.app_id, &secret).await;
    assert_eq!(status, StatusCode::OK);

    // Listed without its text.
    let (status, _, body) = graph(
        &fake,
        reqwest::Method::GET,
        &format!("{path}?$select=passwordCredentials"),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let listed = body["passwordCredentials"]
        .as_array()
        .expect("passwordCredentials");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["keyId"], key_id.as_str());
    assert!(
        listed[0]["secretText"].is_null(),
        "a listed secret is never shown"
    );
    assert!(!body.to_string().contains(&secret));

    let (status, _, _) = graph(
        &fake,
        reqwest::Method::POST,
        &format!("{path}/removePassword"),
        Some(&bearer),
        Some(json!({"keyId": key_id})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(fake.live_secrets(&app.object_id), 0);
    let (status, _) = token(&fake, &fake.tenant(), &app.app_id, &secret).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a removed secret no longer logs in"
    );
    let (status, _, body) = graph(
        &fake,
        reqwest::Method::POST,
        &format!("{path}/removePassword"),
        Some(&bearer),
        Some(json!({"keyId": key_id})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn graph_errors_have_the_documented_shape() {
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let path = format!("applications/{}/addPassword", app.object_id);
    let error = |body: &Value| {
        (
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["error"]["innerError"]["request-id"].is_string(),
        )
    };

    let (status, _, body) =
        graph(&fake, reqwest::Method::POST, &path, None, Some(add_body())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error(&body), ("InvalidAuthenticationToken".into(), true));

    let (status, _, body) = graph(
        &fake,
        reqwest::Method::POST,
        &path,
        Some("forged"),
        Some(add_body()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error(&body).0, "InvalidAuthenticationToken");

    let bearer = admin_token(&fake).await;
    let (status, _, body) = graph(
        &fake,
        reqwest::Method::POST,
        "applications/5f0b0000-0000-4000-8000-000000000000/addPassword",
        Some(&bearer),
        Some(add_body()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&body).0, "Request_ResourceNotFound");

    fake.set_admin_can_write(false);
    let (status, _, body) = graph(
        &fake,
        reqwest::Method::POST,
        &path,
        Some(&bearer),
        Some(add_body()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error(&body).0, "Authorization_RequestDenied");
    fake.set_admin_can_write(true);

    fake.set_cap(Some(PERSONAL_ACCOUNT_CAP));
    for _ in 0..PERSONAL_ACCOUNT_CAP {
        let (status, _, _) = graph(
            &fake,
            reqwest::Method::POST,
            &path,
            Some(&bearer),
            Some(add_body()),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, body) = graph(
        &fake,
        reqwest::Method::POST,
        &path,
        Some(&bearer),
        Some(add_body()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body).0, "TooManyAppPasswords");
    assert_eq!(
        body["error"]["message"],
        "Not allowed to add 3 passwords. You can only add a maximum of 2 passwords."
    );
    assert_eq!(fake.live_secrets(&app.object_id), PERSONAL_ACCOUNT_CAP);

    fake.inject(Endpoint::Graph, 429, Some(7), 1);
    let (status, headers, body) = graph(
        &fake,
        reqwest::Method::POST,
        &path,
        Some(&bearer),
        Some(add_body()),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(error(&body).0, "TooManyRequests");
    fake.inject(Endpoint::Graph, 503, None, 1);
    let (status, _, _) = graph(
        &fake,
        reqwest::Method::GET,
        &format!("applications/{}", app.object_id),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = graph(
        &fake,
        reqwest::Method::GET,
        &format!("applications/{}", app.object_id),
        Some(&bearer),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a fault answers only the calls it was injected for"
    );
}

#[tokio::test]
async fn a_new_secret_can_be_refused_while_it_propagates() {
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    // Far longer than any call takes, however loaded the machine: the refusal is not a race.
    fake.set_propagation_delay(Duration::from_secs(600));
    let (_, secret) = fake.add_password(&app.object_id);
    let (status, _) = token(&fake, &fake.tenant(), &app.app_id, &secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    fake.finish_propagation();
    let (status, _) = token(&fake, &fake.tenant(), &app.app_id, &secret).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_removed_admin_secret_gets_no_new_token() {
    let fake = FakeAzure::start().await;
    let (id, secret) = fake.admin();
    let (id, secret) = (id.to_owned(), secret.to_owned());
    fake.remove_admin_secret();
    let (status, body) = token(&fake, &fake.tenant(), &id, &secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
}
