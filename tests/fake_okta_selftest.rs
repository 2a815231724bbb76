//! The fake Okta against Okta's documented behaviour, with a plain HTTP client: the secret
//! object and its lifecycle, the two-secret cap, only an inactive secret deleted, the error
//! body and codes, the rate-limit headers, and the token endpoint's client authentication.

use reqwest::StatusCode;
use rotator_testkit::fake_okta::{Failure, FakeOkta};
use serde_json::{Value, json};

struct Api<'a> {
    fake: &'a FakeOkta,
    http: reqwest::Client,
    token: String,
}

impl<'a> Api<'a> {
    fn new(fake: &'a FakeOkta) -> Self {
        Self {
            fake,
            http: reqwest::Client::new(),
            token: fake.api_token(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.fake.base_url()))
            .header("Authorization", format!("SSWS {}", self.token))
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }
}

fn assert_okta_error(body: &Value, code: &str) {
    assert_eq!(body["errorCode"], code, "{body}");
    for field in ["errorSummary", "errorLink", "errorId"] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
    assert!(body["errorCauses"].is_array(), "{body}");
}

#[tokio::test]
async fn secrets_are_created_listed_deactivated_and_deleted_as_documented() {
    let fake = FakeOkta::start().await;
    let app = fake.create_app();
    let api = Api::new(&fake);
    let base = format!("/api/v1/apps/{app}/credentials/secrets");

    let (status, first) = api
        .call(reqwest::Method::POST, &base, Some(json!({})))
        .await;
    assert!(status.is_success(), "{status} {first}");
    assert_eq!(first["status"], "ACTIVE");
    let id = first["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("ocs"), "{id}");
    for field in ["client_secret", "secret_hash", "created", "lastUpdated"] {
        assert!(first[field].is_string(), "{field} in {first}");
    }
    assert!(first["_links"]["deactivate"].is_object());

    // Bring your own secret.
    let chosen = "a-chosen-secret-of-32-characters!";
    let (status, second) = api
        .call(
            reqwest::Method::POST,
            &base,
            Some(json!({ "client_secret": chosen })),
        )
        .await;
    assert!(status.is_success());
    assert_eq!(second["client_secret"], chosen);

    // Two is the maximum.
    let (status, third) = api
        .call(reqwest::Method::POST, &base, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_okta_error(&third, "E0000001");
    assert_eq!(fake.live_secrets(), 2);

    let (status, list) = api.call(reqwest::Method::GET, &base, None).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    assert!(
        list.iter().all(|s| s["client_secret"].is_string()),
        "Okta lists values"
    );

    // Only an inactive secret can be deleted.
    let one = format!("{base}/{id}");
    let (status, refused) = api.call(reqwest::Method::DELETE, &one, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_okta_error(&refused, "E0000001");
    let (status, inactive) = api
        .call(
            reqwest::Method::POST,
            &format!("{one}/lifecycle/deactivate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(inactive["status"], "INACTIVE");
    let (status, _) = api.call(reqwest::Method::DELETE, &one, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = api.call(reqwest::Method::GET, &one, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_okta_error(&gone, "E0000007");
    assert_eq!(fake.live_secrets(), 1);

    let (status, unknown_app) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/apps/0oanosuchapp/credentials/secrets",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_okta_error(&unknown_app, "E0000007");
}

#[tokio::test]
async fn the_api_token_is_checked() {
    let fake = FakeOkta::start().await;
    let app = fake.create_app();
    let base = format!("/api/v1/apps/{app}/credentials/secrets");
    let mut api = Api::new(&fake);

    api.token = "00notatokenatall0000000000000000000000000000".into();
    let (status, body) = api.call(reqwest::Method::GET, &base, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_okta_error(&body, "E0000011");

    api.token = fake.new_api_token(false);
    let (status, _) = api.call(reqwest::Method::GET, &base, None).await;
    assert_eq!(status, StatusCode::OK, "a read-only token reads");
    let (status, body) = api
        .call(reqwest::Method::POST, &base, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_okta_error(&body, "E0000006");

    let token = fake.api_token();
    fake.revoke_api_token(&token);
    api.token = token;
    let (status, body) = api.call(reqwest::Method::GET, &base, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_okta_error(&body, "E0000011");
    assert_eq!(fake.live_secrets(), 0);
}

#[tokio::test]
async fn injected_failures_use_okta_codes_and_headers_and_change_nothing() {
    let fake = FakeOkta::start().await;
    let app = fake.create_app();
    let base = format!("/api/v1/apps/{app}/credentials/secrets");
    let api = Api::new(&fake);

    fake.fail_next(
        Failure::RateLimited {
            retry_after_secs: 30,
        },
        1,
    );
    let response = api
        .http
        .post(format!("{}{base}", fake.base_url()))
        .header("Authorization", format!("SSWS {}", api.token))
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    for header in [
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ] {
        assert!(response.headers().contains_key(header), "{header}");
    }
    let body: Value = response.json().await.expect("json");
    assert_okta_error(&body, "E0000047");

    fake.fail_next(Failure::ServerError(500), 1);
    let (status, body) = api
        .call(reqwest::Method::POST, &base, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_okta_error(&body, "E0000009");
    assert_eq!(fake.live_secrets(), 0, "a failed request changes nothing");
}

#[tokio::test]
async fn the_token_endpoint_authenticates_the_client_before_the_scope() {
    let fake = FakeOkta::start().await;
    let app = fake.create_app();
    let (_, secret) = fake.add_secret(&app);
    let http = reqwest::Client::new();
    let token =
        |path: &'static str, user: String, password: String, scope: Option<&'static str>| {
            let mut form = vec![("grant_type", "client_credentials")];
            if let Some(scope) = scope {
                form.push(("scope", scope));
            }
            http.post(format!("{}{path}", fake.base_url()))
                .basic_auth(user, Some(password))
                .form(&form)
                .send()
        };

    let r = token("/oauth2/v1/token", app.clone(), secret.clone(), None)
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "invalid_scope");

    fake.grant_scope(&app, "okta.apps.read");
    let r = token(
        "/oauth2/v1/token",
        app.clone(),
        secret.clone(),
        Some("okta.apps.read"),
    )
    .await
    .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].is_string() && body["expires_in"].is_number());

    let r = token(
        "/oauth2/default/v1/token",
        app.clone(),
        "wrong-secret".into(),
        None,
    )
    .await
    .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");

    // client_secret_post is accepted as well.
    let r = http
        .post(format!("{}/oauth2/v1/token", fake.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "okta.apps.read"),
            ("client_id", app.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
}
