//! The fake Databricks against Databricks' documented behaviour, with a plain HTTP client:
//! OAuth M2M tokens, the secret shown only at creation, pages, the five-secret cap, the 730-day
//! lifetime, the `{error_code, message}` body, and the rate-limit header.

use reqwest::StatusCode;
use rotator_testkit::fake_databricks::{Failure, FakeDatabricks};
use serde_json::{Value, json};

async fn token(
    fake: &FakeDatabricks,
    path: &str,
    client: &(String, String),
    scope: &str,
) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", fake.base_url()))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .expect("send");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn admin_token(fake: &FakeDatabricks) -> String {
    let (status, body) = token(fake, "/oidc/v1/token", &fake.admin(), "all-apis").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn call(
    fake: &FakeDatabricks,
    bearer: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.base_url()))
        .bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.expect("send");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

#[tokio::test]
async fn m2m_tokens_need_the_client_secret_and_all_apis() {
    let fake = FakeDatabricks::start().await;
    let (status, body) = token(&fake, "/oidc/v1/token", &fake.admin(), "all-apis").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0));

    let account_path = format!("/oidc/accounts/{}/v1/token", fake.account_id());
    let (status, _) = token(&fake, &account_path, &fake.admin(), "all-apis").await;
    assert_eq!(status, StatusCode::OK, "the account endpoint");

    let wrong = (fake.admin().0, "dose-wrong".to_owned());
    let (status, body) = token(&fake, "/oidc/v1/token", &wrong, "all-apis").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");

    let (status, body) = token(&fake, "/oidc/v1/token", &fake.admin(), "sql").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn a_secret_is_shown_once_listed_by_pages_and_deleted() {
    let fake = FakeDatabricks::start().await;
    let (sp, client_id) = fake.create_principal();
    let bearer = admin_token(&fake).await;
    for base in [
        format!("/api/2.0/accounts/servicePrincipals/{sp}/credentials/secrets"),
        format!(
            "/api/2.0/accounts/{}/servicePrincipals/{sp}/credentials/secrets",
            fake.account_id()
        ),
    ] {
        let (status, created) = call(
            &fake,
            &bearer,
            reqwest::Method::POST,
            &base,
            Some(json!({"lifetime": "86400s"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        let secret = created["secret"]
            .as_str()
            .expect("the value, once")
            .to_owned();
        for field in ["secret_hash", "create_time", "expire_time", "status"] {
            assert!(created[field].is_string(), "{field} in {created}");
        }
        assert_eq!(fake.lifetime_of(&sp, &id), Some(86_400));

        // The new secret gets the principal a token.
        let (status, _) = token(
            &fake,
            "/oidc/v1/token",
            &(client_id.clone(), secret),
            "all-apis",
        )
        .await;
        assert_eq!(status, StatusCode::OK);

        let (status, list) = call(&fake, &bearer, reqwest::Method::GET, &base, None).await;
        assert_eq!(status, StatusCode::OK);
        let secrets = list["secrets"].as_array().expect("secrets");
        assert_eq!(secrets.len(), 1);
        assert!(
            secrets[0].get("secret").is_none(),
            "the list holds no values: {list}"
        );

        let one = format!("{base}/{id}");
        let (status, _) = call(&fake, &bearer, reqwest::Method::DELETE, &one, None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call(&fake, &bearer, reqwest::Method::DELETE, &one, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&body, "RESOURCE_DOES_NOT_EXIST");
        assert_eq!(fake.live_secrets(&sp), 0);
    }
}

#[tokio::test]
async fn five_secrets_at_most_730_days_at_most_and_pages() {
    let fake = FakeDatabricks::start().await;
    let (sp, _) = fake.create_principal();
    let bearer = admin_token(&fake).await;
    let base = format!("/api/2.0/accounts/servicePrincipals/{sp}/credentials/secrets");
    let (status, body) = call(
        &fake,
        &bearer,
        reqwest::Method::POST,
        &base,
        Some(json!({"lifetime": "63072001s"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "INVALID_PARAMETER_VALUE");
    for _ in 0..5 {
        let (status, _) = call(
            &fake,
            &bearer,
            reqwest::Method::POST,
            &base,
            Some(json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = call(
        &fake,
        &bearer,
        reqwest::Method::POST,
        &base,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "RESOURCE_LIMIT_EXCEEDED");
    assert_eq!(fake.live_secrets(&sp), 5);

    let mut seen = 0;
    let mut page_token: Option<String> = None;
    loop {
        let path = match &page_token {
            Some(t) => format!("{base}?page_size=2&page_token={t}"),
            None => format!("{base}?page_size=2"),
        };
        let (_, page) = call(&fake, &bearer, reqwest::Method::GET, &path, None).await;
        seen += page["secrets"].as_array().map_or(0, Vec::len);
        page_token = page["next_page_token"].as_str().map(str::to_owned);
        if page_token.is_none() {
            break;
        }
    }
    assert_eq!(seen, 5);
}

#[tokio::test]
async fn callers_are_checked_and_failures_use_databricks_codes() {
    let fake = FakeDatabricks::start().await;
    let (sp, client_id) = fake.create_principal();
    let base = format!("/api/2.0/accounts/servicePrincipals/{sp}/credentials/secrets");

    let (status, body) = call(&fake, "not-a-token", reqwest::Method::GET, &base, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "UNAUTHENTICATED");

    let (_, own_secret) = fake.add_secret(&sp);
    let (_, body) = token(
        &fake,
        "/oidc/v1/token",
        &(client_id, own_secret),
        "all-apis",
    )
    .await;
    let not_admin = body["access_token"].as_str().expect("token").to_owned();
    let (status, body) = call(
        &fake,
        &not_admin,
        reqwest::Method::POST,
        &base,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "PERMISSION_DENIED");

    let bearer = admin_token(&fake).await;
    let (status, body) = call(
        &fake,
        &bearer,
        reqwest::Method::GET,
        "/api/2.0/accounts/servicePrincipals/1/credentials/secrets",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "RESOURCE_DOES_NOT_EXIST");

    fake.fail_next(
        Failure::RateLimited {
            retry_after_secs: 9,
        },
        1,
    );
    let r = reqwest::Client::new()
        .post(format!("{}{base}", fake.base_url()))
        .bearer_auth(&bearer)
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "9");
    assert_error(&r.json().await.expect("json"), "REQUEST_LIMIT_EXCEEDED");

    fake.fail_next(Failure::ServerError(503), 1);
    let (status, body) = call(
        &fake,
        &bearer,
        reqwest::Method::POST,
        &base,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&body, "TEMPORARILY_UNAVAILABLE");
    assert_eq!(fake.live_secrets(&sp), 1, "failed requests change nothing");

    fake.revoke_admin();
    let (status, _) = call(&fake, &bearer, reqwest::Method::GET, &base, None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the revoked admin's tokens die with it"
    );
    let (status, _) = token(&fake, "/oidc/v1/token", &fake.admin(), "all-apis").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
